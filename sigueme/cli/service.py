"""Running the service: ``sigueme serve``, ``sigueme migrate`` and ``sigueme users``.

All of them read the database from ``SIGUEME_DATABASE_URL`` (default: the SQLite file
``./sigueme.db``), the same setting the server uses. On the embedded default (SQLite)
the schema is brought to the code's revision on the spot, so a fresh machine needs
nothing but ``sigueme serve``; a PostgreSQL database is only ever changed by ``sigueme
migrate``, and the other commands refuse one that is out of date.

Tokens are printed once, alone on stdout (so ``TOKEN=$(sigueme users add ...)``
works), with the explanation on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sigueme import __version__
from sigueme.errors import SiguemeError
from sigueme.settings import Settings
from sigueme.store import users as store
from sigueme.store.db import (
    check_schema,
    current_revision,
    head_revision,
    make_engine,
    sessionmaker,
    upgrade_async,
)
from sigueme.store.models import Role, User

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

USAGE_ERROR = 2
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
FIRST_ADMIN_COMMAND = "sigueme users add NAME --role admin"

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Print a user error on stderr and exit with status 2 (as ``sigueme.cli.main``)."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def note(message: str) -> None:
    typer.echo(message, err=True)


# -- the database --------------------------------------------------------------------------


def load_settings() -> Settings:
    """The settings from the environment, or a clean error naming the bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "SIGUEME_" + str(first["loc"][0]).upper() if first["loc"] else "SIGUEME_*"
        fail(f"{name}: {first['msg']}")


SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def database_url(settings: Settings) -> str:
    """The configured database URL, or a clean error unless it names a driver the
    service runs on."""
    url = settings.database_url.get_secret_value()
    try:
        parsed = make_url(url)
        driver = parsed.drivername
        _ = parsed.port  # a port that is not a number fails here, not in the driver
    except (ArgumentError, ValueError):
        driver = None
    if driver not in SUPPORTED_DRIVERS:
        fail(
            "SIGUEME_DATABASE_URL: expected sqlite+aiosqlite:///FILE or "
            "postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    return url


def is_embedded(url: str) -> bool:
    return url.startswith("sqlite")


def shown_url(url: str) -> str:
    """The database as a person may see it: a SQLite path, or a URL without password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(unreadable SIGUEME_DATABASE_URL)"
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite {parsed.database or '(in memory)'}"
    return parsed.render_as_string(hide_password=True)


def _unreachable(url: str, exc: BaseException) -> str:
    # The driver's own reason (refused, unknown database, bad password), without the
    # SQL dump SQLAlchemy appends; never the password.
    orig = getattr(exc, "orig", None) or exc
    reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return f"cannot use the database {shown_url(url)}: {reason}"


def run_async(url: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` on a fresh event loop, turning database trouble and domain errors
    into one ``Error:`` line."""
    try:
        return asyncio.run(work())
    except SiguemeError as exc:
        fail(str(exc))
    except (OSError, SQLAlchemyError) as exc:
        fail(_unreachable(url, exc))
    except Exception as exc:
        # Drivers raise their own errors too (asyncpg's PostgresError at connect).
        if type(exc).__module__.startswith(("asyncpg", "sqlite3", "aiosqlite")):
            fail(_unreachable(url, exc))
        raise


async def prepare_database(url: str, engine: AsyncEngine) -> tuple[str | None, str] | None:
    """Make sure the database is at the code's schema.

    On SQLite (embedded) it migrates as needed and returns ``(from, to)`` when it did;
    on PostgreSQL it raises :class:`~sigueme.errors.SchemaOutOfDate` (which says to run
    ``sigueme migrate``) instead of touching it. ``None``: nothing to do."""
    if not is_embedded(url):
        await check_schema(engine)
        return None
    before = await current_revision(engine)
    head = head_revision()
    if before == head:
        return None
    await upgrade_async(url)
    await check_schema(engine)
    return before, head


def report_migration(url: str, done: tuple[str | None, str] | None) -> None:
    if done is not None:
        before, head = done
        what = f"upgraded from revision {before}" if before else "created"
        note(f"Database {shown_url(url)}: {what} at revision {head}")


def with_session(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction on the configured database (prepared
    as :func:`prepare_database` says)."""
    url = database_url(settings)

    async def main() -> T:
        engine = make_engine(url)
        try:
            report_migration(url, await prepare_database(url, engine))
            async with sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return run_async(url, main)


# -- serve ---------------------------------------------------------------------------------


def _check_port(host: str, port: int) -> None:
    """Fail cleanly now rather than in uvicorn's traceback when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # uvicorn binds with SO_REUSEADDR too: only a live listener makes this fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"cannot listen on {host}:{port}: the port is in use (try --port)")
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def serve_command(
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    log_level: Annotated[
        str,
        typer.Option(metavar="LEVEL", help="Server log level: debug, info, warning, error."),
    ] = "info",
) -> None:
    """Run the Sígueme HTTP service.

    With no configuration it keeps its data in the SQLite file ./sigueme.db (created
    and migrated on start). Set SIGUEME_DATABASE_URL to a postgresql+asyncpg:// URL
    for PostGIS; that database must first be brought up to date with `sigueme migrate`.
    """
    # Imported here: the web stack is heavy, and the other commands do not need it.
    import uvicorn

    from sigueme.api.app import create_app
    from sigueme.api.phone_protocol import MAX_FRAME_BYTES

    if log_level not in ("critical", "error", "warning", "info", "debug", "trace"):
        fail(f"--log-level {log_level!r}: one of debug, info, warning, error")
    settings = load_settings()
    url = database_url(settings)

    async def prepare() -> int:
        engine = make_engine(url)
        try:
            report_migration(url, await prepare_database(url, engine))
            async with sessionmaker(engine)() as session:
                count = await session.scalar(select(func.count()).select_from(User))
                return int(count or 0)
        finally:
            await engine.dispose()

    users = run_async(url, prepare)
    _check_port(host, port)
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    typer.echo(f"Sígueme {__version__} listening on {address} (API docs: {address}/docs)")
    typer.echo(f"Database: {shown_url(url)}")
    if users == 0:
        typer.echo(
            "No users yet. Create the first admin and get their API token with "
            "(same SIGUEME_DATABASE_URL):\n"
            f"    {FIRST_ADMIN_COMMAND}"
        )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Access lines carry paths and query strings (trip ids, link tokens in the
        # future): the request metrics at /metrics count traffic without them.
        access_log=False,
        # Websocket keep-alive: a ping every 20 s, and a connection whose pong has not
        # come 20 s later is dead (a phone in a tunnel, a NAT that forgot it) and closed.
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # Bigger frames are closed with 1009 before they are read into memory.
        ws_max_size=MAX_FRAME_BYTES,
        # Without a bound, one client that stops reading (its socket never drains, so
        # it never closes) would hold the shutdown for ever.
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
    )
    server = _server(config, app)
    # uvicorn re-raises the signal that stopped it once it has shut down, so that a
    # SIGTERM would end the process "killed by SIGTERM" (exit status 143) however
    # cleanly it stopped. A do-nothing handler in place before it starts (uvicorn puts
    # its own in while it runs, and restores this one after) makes a graceful stop
    # exit 0, as supervisors expect of a clean stop.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stopped_by_signal)
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run does
        server.run()
    if not server.started:
        raise typer.Exit(STARTUP_FAILURE)


STARTUP_FAILURE = 3
"""The exit status of a server that did not start (uvicorn's)."""
PHONE_DRAIN_S = 5.0
"""At shutdown, how long phone sockets get to finish the frame they are handling (store
it and send its ack) and close with 1012 and a reason, before the rest of the shutdown."""
GRACEFUL_SHUTDOWN_S = 5.0
"""Then how long uvicorn waits for the other connections (watchers) and requests to
finish before cancelling them; the lifespan (background tasks, pools) is closed after."""


def _stopped_by_signal(_sig: int, _frame: object) -> None:
    """Installed while uvicorn is not running: the signal it re-raises after a graceful
    stop lands here and the command returns normally."""


def _server(config: uvicorn.Config, app: FastAPI) -> uvicorn.Server:
    """uvicorn's server, with the phones told first at shutdown.

    uvicorn's own shutdown closes every websocket at once with 1012 and no reason,
    whatever its handler is doing: a phone cannot tell whether the fix it had just sent
    was stored, and the handler's acknowledgement fails. Here the listening sockets
    close first (no new connections), then each phone socket finishes the frame in hand
    (stored and acknowledged, or refused) and is closed with 1012 "server shutting down:
    reconnect" (:func:`sigueme.api.live.drain_phones`); only then does uvicorn's
    shutdown run (watchers and requests, then the lifespan: background tasks, pools)."""
    import uvicorn

    from sigueme.api.live import drain_phones

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for listener in getattr(self, "servers", []):
                listener.close()
            left = await drain_phones(app.state, timeout_s=PHONE_DRAIN_S)
            if left:
                note(f"{left} phone connection(s) still busy after {PHONE_DRAIN_S:g} s")
            await super().shutdown(sockets)

    return Server(config)


# -- migrate -------------------------------------------------------------------------------


def migrate_command() -> None:
    """Bring the database (SIGUEME_DATABASE_URL) up to this version's schema.

    Run it after installing a new version and before starting the service on it;
    on an up-to-date database it changes nothing.
    """
    settings = load_settings()
    url = database_url(settings)

    async def main() -> tuple[str | None, str]:
        engine = make_engine(url)
        try:
            before = await current_revision(engine)
            head = head_revision()
            if before != head:
                await upgrade_async(url)
                await check_schema(engine)
            return before, head
        finally:
            await engine.dispose()

    before, head = run_async(url, main)
    if before == head:
        typer.echo(f"Database {shown_url(url)} is already at revision {head}: nothing to do")
    else:
        typer.echo(
            f"Database {shown_url(url)} migrated from {before or 'empty'} to revision {head}"
        )


# -- users ---------------------------------------------------------------------------------

users_app = typer.Typer(
    help="Enrol people and manage their API tokens.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

Name = Annotated[str, typer.Argument(metavar="NAME", help="The user's login name.")]


def _print_token(token: str, intro: str) -> None:
    note(intro)
    note("Their API token is below. It is shown this once and will not be shown again:")
    note("store it now, or issue a new one with `sigueme users token NAME`.")
    typer.echo(token)


@users_app.command("add", short_help="Add a user and print their first API token.")
def users_add(
    name: Name,
    role: Annotated[Role, typer.Option(help="What they may do.", case_sensitive=False)],
    display_name: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Full name, as dispatchers see it.")
    ] = None,
    contact: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Phone or other contact, for dispatchers.")
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT", help="Who they are for the police: candidate, campaign, citizen, ..."
        ),
    ] = None,
    label: Annotated[
        str | None, typer.Option(metavar="TEXT", help="A note on the token, e.g. the device.")
    ] = None,
) -> None:
    """Add a user and print their first API token (once).

    Roles: traveller (files and streams trips), monitor (watches trips shared with
    them), dispatcher (works the alert queue), admin (manages users and risk zones).
    """
    settings = load_settings()

    async def work(session: AsyncSession) -> tuple[str, str]:
        user, token = await store.add_user(
            session,
            name,
            role,
            display_name=display_name,
            contact=contact,
            profile=profile,
            token_label=label,
        )
        return user.role, token

    user_role, token = with_session(settings, work)
    _print_token(token, f"Added user {name} ({user_role}).")


@users_app.command("list", short_help="List users, their roles and tokens.")
def users_list() -> None:
    """List every user: name, role, whether disabled, active tokens, profile, full name."""
    settings = load_settings()

    async def work(session: AsyncSession) -> list[tuple[str, ...]]:
        counts = await store.active_token_counts(session)
        return [
            (
                u.name,
                u.role,
                "disabled" if u.disabled else "active",
                str(counts.get(u.id, 0)),
                u.profile or "-",
                u.display_name or "-",
            )
            for u in await store.list_users(session)
        ]

    rows = with_session(settings, work)
    if not rows:
        note(f"No users yet. Add the first admin with: {FIRST_ADMIN_COMMAND}")
        return
    header = ("NAME", "ROLE", "STATUS", "TOKENS", "PROFILE", "DISPLAY NAME")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip())


@users_app.command("disable", short_help="Disable a user; their tokens stop working.")
def users_disable(name: Name) -> None:
    """Disable a user and revoke all their API tokens. There is no undo: add them again
    under another name if needed."""
    settings = load_settings()

    async def work(session: AsyncSession) -> int:
        _user, revoked = await store.disable_user(session, name)
        return revoked

    revoked = with_session(settings, work)
    typer.echo(f"Disabled user {name}; revoked {revoked} token{'s' if revoked != 1 else ''}.")


@users_app.command("token", short_help="Issue a new API token for a user.")
def users_token(
    name: Name,
    label: Annotated[
        str | None, typer.Option(metavar="TEXT", help="A note on the token, e.g. the device.")
    ] = None,
) -> None:
    """Issue a new API token for a user and print it (once). Their other tokens keep
    working; `sigueme users revoke NAME` revokes them all."""
    settings = load_settings()

    async def work(session: AsyncSession) -> str:
        return await store.issue_token(session, await store.get_user(session, name), label)

    token = with_session(settings, work)
    _print_token(token, f"New token for {name}.")


@users_app.command("revoke", short_help="Revoke all of a user's API tokens.")
def users_revoke(name: Name) -> None:
    """Revoke every API token of a user (a lost phone); the user stays enabled and can
    get a new one with `sigueme users token NAME`."""
    settings = load_settings()

    async def work(session: AsyncSession) -> int:
        return await store.revoke_tokens(session, await store.get_user(session, name))

    revoked = with_session(settings, work)
    typer.echo(f"Revoked {revoked} token{'s' if revoked != 1 else ''} of {name}.")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``migrate`` and ``users`` to the ``sigueme`` command."""
    app.command("serve", short_help="Run the HTTP service.")(serve_command)
    app.command("migrate", short_help="Bring the database up to this version's schema.")(
        migrate_command
    )
    app.add_typer(users_app, name="users", short_help="Enrol people and manage their tokens.")
