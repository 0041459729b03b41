"""Shared fixtures. The servers come from scripts/test.sh; tests never mock them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio


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
