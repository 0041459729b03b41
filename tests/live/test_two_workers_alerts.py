"""Two real `sigueme serve` workers on one PostGIS database and Redis, both running the
watchdog every 100 ms: silent trips still get exactly one ``signal_lost`` alert each,
escalations are not doubled, and every alert change reaches the police stream."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from sigueme.bench.live import Worker, add_admin, start_worker, stop_worker

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100]]
ESCALATE_AFTER_S = 1.5


@pytest_asyncio.fixture(loop_scope="session")
async def database(postgres_dsn: str, postgis_template: str) -> AsyncIterator[tuple[str, str]]:
    name = f"sigueme_wd_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    base = postgres_dsn.split("://", 1)[1].rsplit("/", 1)[0]
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis_template}"')
        yield f"postgresql+asyncpg://{base}/{name}", postgres_dsn.rsplit("/", 1)[0] + "/" + name
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def stream() -> str:
    return f"test:police:{uuid.uuid4().hex}"


@pytest.fixture
def workers(
    database: tuple[str, str], redis_url: str, stream: str
) -> Iterator[tuple[Worker, Worker, str]]:
    url, _ = database
    token = add_admin(url)
    settings = {
        "SIGUEME_WATCHDOG_INTERVAL_S": "0.1",
        "SIGUEME_ESCALATE_AFTER_S": str(ESCALATE_AFTER_S),
        "SIGUEME_POLICE_STREAM": stream,
    }
    started: list[Worker] = []
    try:
        started.append(start_worker(url, redis_url, settings=settings))
        started.append(start_worker(url, redis_url, settings=settings))
        yield started[0], started[1], token
    finally:
        logs = [stop_worker(w) for w in started]
    for log in logs:
        assert "Traceback" not in log, log


def _file_trips(http: str, admin_token: str, n: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=http, timeout=30) as client:
        for i in range(n):
            user = client.post(
                "/v1/users",
                headers={"Authorization": f"Bearer {admin_token}"},
                json={"name": f"viajera-{i}-{uuid.uuid4().hex[:4]}", "role": "traveller"},
            )
            assert user.status_code == 201, user.text
            trip = client.post(
                "/v1/trips",
                headers={"Authorization": f"Bearer {user.json()['token']}"},
                json={
                    "route": {"type": "LineString", "coordinates": ROUTE},
                    "departure": datetime.now(UTC).isoformat(),
                    "duration_min": 60,
                },
            )
            assert trip.status_code == 201, trip.text
            ids.append(trip.json()["id"])
    return ids


async def test_two_watchdogs_raise_each_silence_once_and_escalate_once_per_period(
    workers: tuple[Worker, Worker, str], database: tuple[str, str], redis_url: str, stream: str
) -> None:
    a, _b, token = workers
    _, dsn = database
    trips = _file_trips(a.http, token, 8)
    conn = await asyncpg.connect(dsn)
    try:
        # Silent in a second (the API's minimum timeout is a minute).
        await conn.execute(
            "UPDATE trips SET silence_deadline = now() + interval '1 second' WHERE id = ANY($1)",
            trips,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            raised = await conn.fetchval(
                "SELECT count(*) FROM alerts WHERE kind = 'signal_lost' AND escalations >= 2"
            )
            if raised == len(trips):
                break
            await asyncio.sleep(0.2)
        rows = await conn.fetch(
            "SELECT id, trip_id, count, escalations FROM alerts WHERE kind = 'signal_lost'"
        )
        history = await conn.fetch(
            "SELECT alert_id, action, at FROM alert_history ORDER BY alert_id, at"
        )
        unpublished = await conn.fetchval(
            "SELECT count(*) FROM alert_outbox WHERE published_at IS NULL"
        )
    finally:
        await conn.close()

    # One alert per trip, raised once, though both workers looked ten times a second.
    assert sorted(r["trip_id"] for r in rows) == sorted(trips)
    assert all(r["count"] == 1 for r in rows)
    for alert in rows:
        mine = [h for h in history if h["alert_id"] == alert["id"]]
        assert [h["action"] for h in mine].count("raised") == 1
        escalations = [h["at"] for h in mine if h["action"] == "escalated"]
        assert len(escalations) == alert["escalations"] >= 2
        # Never two escalations of one alert within a period (two workers, one step).
        gaps = [b - a for a, b in itertools.pairwise(escalations)]
        assert all(g >= timedelta(seconds=ESCALATE_AFTER_S * 0.9) for g in gaps), gaps

    # On the police stream: every change, at least once.
    assert unpublished <= len(trips)  # the newest escalations may still be on their way
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = await redis.xrange(stream)
    finally:
        await redis.aclose()
    raised_on_stream = {f["alert_id"] for _, f in entries if f["event"] == "raised"}
    assert raised_on_stream == {r["id"] for r in rows}
