"""Fixtures of the fault tests: a fresh migrated PostGIS database on the shared test
server (for the faults that kill workers, not the database), and a scratch directory
for servers a test starts, kills and restarts itself."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from fault_world import scratch


@pytest_asyncio.fixture(loop_scope="session")
async def database(postgres_dsn: str, postgis_template: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh, migrated PostGIS database: (SQLAlchemy URL, asyncpg DSN)."""
    name = f"sigueme_fault_{uuid.uuid4().hex[:12]}"
    base = postgres_dsn.split("://", 1)[1].rsplit("/", 1)[0]
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis_template}"')
        yield f"postgresql+asyncpg://{base}/{name}", postgres_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def scratch_root() -> Iterator[Path]:
    """A directory for this test's own servers (removed afterwards)."""
    with scratch() as root:
        yield root


@pytest.fixture
def police_stream() -> str:
    return f"test:police:{uuid.uuid4().hex}"
