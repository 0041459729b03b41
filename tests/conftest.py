"""Shared fixtures. The servers come from scripts/test.sh; tests never mock them."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.store.db import make_engine, upgrade


def _require_env(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(
            f"{name} is not set: run the tests with scripts/test.sh, which starts throw-away "
            "PostgreSQL/PostGIS and Redis servers (or set SIGUEME_TEST_POSTGRES_DSN and "
            "SIGUEME_TEST_REDIS_URL to servers of your own)",
            pytrace=False,
        )
    return value


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """DSN of the PostgreSQL + PostGIS test database (asyncpg/libpq form)."""
    return _require_env("SIGUEME_TEST_POSTGRES_DSN")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the Redis test server."""
    return _require_env("SIGUEME_TEST_REDIS_URL")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def pg(postgres_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg connection pool to the test database, shared by the session."""
    pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=5)
    try:
        yield pool
    finally:
        await pool.close()


# -- fresh, migrated databases on both backends ------------------------------------------

BACKENDS = ("sqlite", "postgis")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgis_template(postgres_dsn: str) -> AsyncIterator[str]:
    """A PostGIS database migrated to head once; each test gets a copy (CREATE DATABASE
    ... TEMPLATE), dropped afterwards."""
    name = f"sigueme_tmpl_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(upgrade, _async_url(postgres_dsn, name))
        yield name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _async_url(dsn: str, database: str) -> str:
    """The SQLAlchemy asyncpg URL of ``database`` on the server of ``dsn``."""
    base = dsn.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base}/{database}"


@pytest_asyncio.fixture(params=BACKENDS, loop_scope="session")
async def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_dsn: str,
    sqlite_template: Path,
    postgis_template: str,
) -> AsyncIterator[str]:
    """A fresh database at the current schema: a SQLite file, or a PostGIS database."""
    if request.param == "sqlite":
        path = tmp_path / "sigueme.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"sigueme_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis_template}"')
        yield _async_url(postgres_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url)
    try:
        yield eng
    finally:
        await eng.dispose()
