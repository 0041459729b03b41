"""Fixtures of the fuzz tests: the app under fuzzing on the test's database (started on
the test's event loop, so websockets and HTTP are driven in process), a client, the
people of :data:`fuzz_world.PEOPLE`, and Ana's trip in progress.

The schemathesis test runs its own app on schemathesis's transport instead."""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

# The in-process websocket client of the API tests, shared rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from fuzz_world import ROUTE, Fuzzed, add_people, fuzz_app, fuzz_settings

from sigueme.geo import Route, TripPlan
from sigueme.store import trips as store


@pytest_asyncio.fixture(loop_scope="session")
async def fuzzed(database_url: str, tmp_path: Path) -> AsyncIterator[Fuzzed]:
    app = fuzz_app(fuzz_settings(database_url, tmp_path / "evidence"))
    async with app.router.lifespan_context(app):
        engine: AsyncEngine = app.state.engine
        people = await add_people(engine)
        now = time.time()
        plan = TripPlan(route=Route(ROUTE), departure=now - 60, arrival=now + 3600)
        async with app.state.sessions() as session:
            trip = await store.create_trip(
                session, owner_id=people["ana"].id, plan=plan, overrides={}, label="Al mitin"
            )
            await session.commit()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sigueme.test") as c:
            yield Fuzzed(app, c, engine, people, trip.id)
