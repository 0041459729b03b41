"""`sigueme serve`, `migrate` and `users` as an operator runs them: what they print,
what the printed tokens open, and how they refuse (exit status 2, one `Error:` line).

The commands run in a worker thread (they start event loops of their own) against the
test's database, and their effect is checked through the API itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest_asyncio
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from sigueme.api.app import create_app
from sigueme.cli.main import app as cli
from sigueme.settings import Settings
from sigueme.store.db import check_schema, head_revision, make_engine

SIGUEME = Path(sys.executable).with_name("sigueme")


async def sigueme(url: str, *args: str) -> Result:
    """Run ``sigueme ARGS`` with SIGUEME_DATABASE_URL=url, off the event loop."""
    runner = CliRunner()
    env = {"SIGUEME_DATABASE_URL": url}
    return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)


def assert_ok(result: Result) -> None:
    assert result.exit_code == 0, (result.output, result.exception)


def assert_user_error(result: Result, *needles: str) -> None:
    """Exit status 2, an ``Error:`` line naming the problem, and no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Error:" in result.stderr
    for needle in needles:
        assert needle in result.stderr


async def whoami(url: str, token: str) -> httpx.Response:
    """GET /v1/me with ``token`` on an app serving ``url``."""
    app = create_app(Settings(database_url=SecretStr(url)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})


def printed_token(result: Result) -> str:
    """The token: alone on stdout, so ``TOKEN=$(sigueme users add ...)`` works."""
    token = result.stdout.strip()
    assert token.startswith("sgm_"), result.stdout
    assert "\n" not in token
    return token


# -- users ---------------------------------------------------------------------------------


async def test_users_add_prints_a_token_that_authenticates(database_url: str) -> None:
    result = await sigueme(
        database_url,
        "users", "add", "ana", "--role", "admin",
        "--display-name", "Ana López", "--contact", "+52 777 123 4567", "--profile", "official",
    )  # fmt: skip
    assert_ok(result)
    token = printed_token(result)
    assert "will not be shown again" in result.stderr
    assert "Added user ana (admin)" in result.stderr
    response = await whoami(database_url, token)
    assert response.status_code == 200
    me = response.json()
    assert (me["name"], me["role"], me["display_name"]) == ("ana", "admin", "Ana López")


async def test_users_list_disable_token_and_revoke(database_url: str) -> None:
    ana = printed_token(await sigueme(database_url, "users", "add", "ana", "--role", "admin"))
    beto = printed_token(
        await sigueme(database_url, "users", "add", "beto", "--role", "traveller",
                      "--profile", "candidate")
    )  # fmt: skip

    result = await sigueme(database_url, "users", "list")
    assert_ok(result)
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0][:5] == ["NAME", "ROLE", "STATUS", "TOKENS", "PROFILE"]
    assert rows[1][:5] == ["ana", "admin", "active", "1", "-"]
    assert rows[2][:5] == ["beto", "traveller", "active", "1", "candidate"]

    # A second token works beside the first.
    result = await sigueme(database_url, "users", "token", "beto", "--label", "tablet")
    assert_ok(result)
    beto2 = printed_token(result)
    assert "will not be shown again" in result.stderr
    assert beto2 != beto
    for token in (beto, beto2):
        assert (await whoami(database_url, token)).status_code == 200

    result = await sigueme(database_url, "users", "disable", "beto")
    assert_ok(result)
    assert result.stdout.strip() == "Disabled user beto; revoked 2 tokens."
    for token in (beto, beto2):
        assert (await whoami(database_url, token)).status_code == 401
    assert (await whoami(database_url, ana)).status_code == 200
    rows = [
        line.split() for line in (await sigueme(database_url, "users", "list")).stdout.split("\n")
    ]
    assert rows[2][:4] == ["beto", "traveller", "disabled", "0"]

    result = await sigueme(database_url, "users", "revoke", "ana")
    assert_ok(result)
    assert result.stdout.strip() == "Revoked 1 token of ana."
    assert (await whoami(database_url, ana)).status_code == 401
    # ... and a new one lets her back in.
    ana2 = printed_token(await sigueme(database_url, "users", "token", "ana"))
    assert (await whoami(database_url, ana2)).status_code == 200


async def test_users_errors_are_one_line_and_exit_2(database_url: str) -> None:
    assert_ok(await sigueme(database_url, "users", "add", "ana", "--role", "traveller"))
    assert_user_error(
        await sigueme(database_url, "users", "add", "ana", "--role", "monitor"),
        "a user named 'ana' already exists",
    )
    assert_user_error(
        await sigueme(database_url, "users", "add", "ana lopez", "--role", "monitor"), "name:"
    )
    assert_user_error(await sigueme(database_url, "users", "add", "x", "--role", "boss"), "boss")
    assert_user_error(await sigueme(database_url, "users", "disable", "nadie"), "no user named")
    assert_user_error(await sigueme(database_url, "users", "token", "nadie"), "no user named")
    assert_ok(await sigueme(database_url, "users", "disable", "ana"))
    assert_user_error(await sigueme(database_url, "users", "token", "ana"), "disabled")


async def test_users_list_on_an_empty_database_says_how_to_start(database_url: str) -> None:
    result = await sigueme(database_url, "users", "list")
    assert_ok(result)
    assert result.stdout == ""
    assert "sigueme users add NAME --role admin" in result.stderr


# -- migrate and serve's schema check ------------------------------------------------------


async def test_migrate_a_fresh_sqlite_file_then_the_schema_check_passes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fresh.db"
    result = await sigueme(url, "migrate")
    assert_ok(result)
    assert result.stdout.strip() == (
        f"Database SQLite {tmp_path}/fresh.db migrated from empty to revision {head_revision()}"
    )
    engine = make_engine(url)
    try:
        await check_schema(engine)  # what the app checks when it starts
    finally:
        await engine.dispose()
    result = await sigueme(url, "migrate")
    assert_ok(result)
    assert "already at revision" in result.stdout
    assert "nothing to do" in result.stdout


@pytest_asyncio.fixture(loop_scope="session")
async def empty_postgres(postgres_dsn: str) -> AsyncIterator[str]:
    """A PostgreSQL database with nothing in it (no Sígueme tables)."""
    name = f"sigueme_empty_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = postgres_dsn.split("://", 1)[1].rsplit("/", 1)[0]
        yield f"postgresql+asyncpg://{base}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_serve_refuses_an_empty_postgres_and_says_to_migrate(empty_postgres: str) -> None:
    assert_user_error(await sigueme(empty_postgres, "serve"), "run `sigueme migrate`")
    # The users commands refuse it too; neither touched it.
    assert_user_error(await sigueme(empty_postgres, "users", "list"), "run `sigueme migrate`")
    result = await sigueme(empty_postgres, "migrate")
    assert_ok(result)
    assert f"migrated from empty to revision {head_revision()}" in result.stdout
    assert "postgresql+asyncpg://" in result.stdout
    engine = make_engine(empty_postgres)
    try:
        await check_schema(engine)
    finally:
        await engine.dispose()


async def test_database_trouble_is_an_error_line(tmp_path: Path) -> None:
    assert_user_error(
        await sigueme("sqlite:///plain.db", "migrate"),
        "SIGUEME_DATABASE_URL: expected sqlite+aiosqlite:///FILE",
    )
    port = _free_port()
    result = await sigueme(f"postgresql+asyncpg://sigueme:s3cr3t@127.0.0.1:{port}/x", "migrate")
    assert_user_error(result, "cannot use the database", f"127.0.0.1:{port}")
    assert "s3cr3t" not in result.output


async def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        url = f"sqlite+aiosqlite:///{tmp_path}/s.db"
        result = await sigueme(url, "serve", "--port", str(port))
    assert_user_error(result, f"127.0.0.1:{port}", "in use")


# -- the real thing ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_on_a_fresh_machine(tmp_path: Path) -> None:
    """`sigueme serve` with no configuration: SQLite in the working directory, created on
    start; it says how to get a first token, and that token works on it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}
    port = _free_port()
    server = subprocess.Popen(
        [str(SIGUEME), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /healthz in 60 s"
            time.sleep(0.2)
        assert (tmp_path / "sigueme.db").exists()
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200

        added = subprocess.run(
            [str(SIGUEME), "users", "add", "primera", "--role", "admin"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip()
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200
        assert me.json()["name"] == "primera"
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"listening on {base}" in out
    assert "sigueme users add NAME --role admin" in out
    assert token not in out + err  # the server never logs tokens
