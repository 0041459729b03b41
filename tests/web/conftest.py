"""Browser-test fixtures: one real ``sigueme serve`` worker on a throw-away PostGIS
database and Redis for the module, and Debian's headless Chromium driven by Playwright
(``executable_path``: Playwright never downloads a browser here)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright
from web_harness import CHROMIUM_ARGS, Service, chromium_or_fail, start_service

from sigueme.bench.live import add_admin, stop_worker


def _async_url(dsn: str, database: str) -> str:
    base = dsn.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base}/{database}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(
    postgres_dsn: str, postgis_template: str, redis_url: str
) -> AsyncIterator[Service]:
    """A worker on a fresh PostGIS database (from the migrated template) and Redis, with
    no base-map tiles (the tests run offline), reports' evidence in a throw-away
    directory, and an admin's token. The worker must not log a traceback."""
    name = f"sigueme_web_{uuid.uuid4().hex[:12]}"
    evidence = tempfile.mkdtemp(prefix="sigueme-web-evidence-")
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis_template}"')
    url = _async_url(postgres_dsn, name)
    worker = None
    try:
        token = await asyncio.to_thread(add_admin, url, "web-admin")
        worker = await asyncio.to_thread(
            start_service,
            url,
            redis_url,
            tile_url="",
            evidence_dir=evidence,
            # Its own police stream: other tests may share the Redis server.
            police_stream=f"sigueme:web:{uuid.uuid4().hex[:8]}",
        )
        yield Service(worker, url, token)
    finally:
        log = await asyncio.to_thread(stop_worker, worker) if worker is not None else ""
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(evidence, ignore_errors=True)
    assert "Traceback" not in log, log


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless. Missing, it fails the tests (scripts/setup.sh installs
    it): they are never skipped."""
    try:
        executable = chromium_or_fail()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()
