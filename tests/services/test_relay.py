"""The outbox relay, on both databases and on a real Redis: every committed alert change
reaches the police queue (at least once, with its ids), also when Redis was down when
it was raised; watchers hear of it; police-only changes stay with the police."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sigueme.alerts.lifecycle import Action
from sigueme.bus.live import LocalLiveBus
from sigueme.bus.queue import DatabaseQueue, QueueUnavailable, RedisStreamQueue
from sigueme.geo import Route, TripPlan
from sigueme.services.alerts import act
from sigueme.services.relay import relay_forever, relay_once
from sigueme.services.traveller import cancel_with_pin, raise_sos
from sigueme.store import trips as store
from sigueme.store.db import sessionmaker
from sigueme.store.models import AlertOutbox, Role, User
from sigueme.store.pins import set_pins
from sigueme.store.users import add_user

ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100]]
T0 = datetime(2026, 5, 28, 14, tzinfo=UTC)
URL = "https://sigueme.example.mx"


@pytest_asyncio.fixture(loop_scope="session")
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    yield sessionmaker(engine)


async def _trip(sessions: async_sessionmaker[AsyncSession], name: str = "ana") -> tuple[int, str]:
    async with sessions() as session:
        user, _ = await add_user(session, name, Role.TRAVELLER, display_name="Ana Díaz")
        plan = TripPlan(route=Route(ROUTE), departure=T0.timestamp(), arrival=T0.timestamp() + 1800)
        trip = await store.create_trip(
            session, owner_id=user.id, plan=plan, overrides={}, label=None
        )
        await session.commit()
        return user.id, trip.id


async def _unpublished(sessions: async_sessionmaker[AsyncSession]) -> list[AlertOutbox]:
    async with sessions() as session:
        rows = await session.scalars(
            select(AlertOutbox).where(AlertOutbox.published_at.is_(None)).order_by(AlertOutbox.id)
        )
        return list(rows.all())


async def test_a_raised_alert_reaches_the_database_queue_and_the_watchers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, trip_id = await _trip(sessions)
    queue = DatabaseQueue(sessions)
    async with LocalLiveBus() as bus:
        sub = await bus.subscribe([trip_id])
        sos = await raise_sos(sessions, trip_id, source="api", now=T0)

        published = await relay_once(sessions, queue, public_url=URL, live=bus)

        assert [(r.alert_id, r.event) for r in published] == [(sos.alert_id, "raised")]
        [entry] = await queue.read("consola-1", count=10)
        assert entry.fields["alert_id"] == sos.alert_id
        assert (entry.fields["event"], entry.fields["kind"], entry.fields["severity"]) == (
            "raised",
            "sos",
            "4",
        )
        alert = json.loads(entry.fields["alert"])
        assert alert["traveller"]["name"] == "Ana Díaz"
        assert alert["map_url"] == f"{URL}/map/trips/{trip_id}"
        update = sub.get_nowait()
        assert update is not None
        assert update.data["properties"]["kind"] == "alert"
        assert update.data["properties"]["alert"]["id"] == sos.alert_id
    # Published once: the next pass has nothing, and the outbox says so.
    assert await relay_once(sessions, queue, public_url=URL) == []
    assert await _unpublished(sessions) == []


async def test_every_step_goes_out_in_order(sessions: async_sessionmaker[AsyncSession]) -> None:
    _, trip_id = await _trip(sessions)
    async with sessions() as session:
        police, _ = await add_user(session, "despacho", Role.DISPATCHER)
        await session.commit()
    queue = DatabaseQueue(sessions)
    sos = await raise_sos(sessions, trip_id, source="api", now=T0)
    await act(sessions, sos.alert_id, Action.ACKNOWLEDGED, actor_id=police.id, now=T0)
    await act(sessions, sos.alert_id, Action.DISPATCHED, actor_id=police.id, now=T0, unit="M-1")
    await relay_once(sessions, queue, public_url=URL)
    entries = await queue.read("consola", count=10)
    assert [e.fields["event"] for e in entries] == ["raised", "acknowledged", "dispatched"]
    outbox_ids = [int(e.fields["outbox_id"]) for e in entries]
    assert outbox_ids == sorted(set(outbox_ids))


async def test_alerts_raised_while_redis_is_down_reach_the_stream_when_it_is_back(
    sessions: async_sessionmaker[AsyncSession], redis_url: str
) -> None:
    _, trip_id = await _trip(sessions)
    stream = f"test:police:{uuid.uuid4().hex}"
    down = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    up = Redis.from_url(redis_url)
    try:
        sos = await raise_sos(sessions, trip_id, source="api", now=T0)
        with pytest.raises(QueueUnavailable):
            await relay_once(sessions, RedisStreamQueue(down, stream=stream), public_url=URL)
        [waiting] = await _unpublished(sessions)
        assert waiting.alert_id == sos.alert_id
        assert waiting.last_error
        assert waiting.lease_until is None  # free for the next pass at once

        queue = RedisStreamQueue(up, stream=stream)
        published = await relay_once(sessions, queue, public_url=URL)
        assert [r.alert_id for r in published] == [sos.alert_id]
        [entry] = await queue.read("sistema-policia", count=10)
        assert entry.fields["alert_id"] == sos.alert_id
        assert await queue.ack([entry.id]) == 1
        assert await _unpublished(sessions) == []
    finally:
        await up.delete(stream)
        await up.aclose()
        await down.aclose()


async def test_concurrent_relays_publish_each_change_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    trips = [(await _trip(sessions, f"u{i}"))[1] for i in range(20)]
    for trip_id in trips:
        await raise_sos(sessions, trip_id, source="api", now=T0)
    queue = DatabaseQueue(sessions)
    results = await asyncio.gather(
        *(relay_once(sessions, queue, public_url=URL, limit=7) for _ in range(4))
    )
    while more := await relay_once(sessions, queue, public_url=URL):
        results.append(more)
    published = [r.outbox_id for batch in results for r in batch]
    assert len(published) == len(set(published)) == 20
    entries = await queue.read("c", count=100)
    assert len(entries) == 20


async def test_the_duress_change_is_not_told_to_watchers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    owner, trip_id = await _trip(sessions)
    async with sessions() as session:
        user = await session.get(User, owner)
        assert user is not None
        set_pins(user, "1111", "2222")
        await session.commit()
    queue = DatabaseQueue(sessions)
    await raise_sos(sessions, trip_id, source="api", now=T0)
    await relay_once(sessions, queue, public_url=URL)
    async with LocalLiveBus() as bus:
        sub = await bus.subscribe([trip_id])
        await cancel_with_pin(sessions, trip_id, user_id=owner, pin="2222")
        published = await relay_once(sessions, queue, public_url=URL, live=bus)
        assert [r.event for r in published] == ["duress"]
        assert sub.get_nowait() is None
    entries = await queue.read("c", count=10)
    [duress] = [e for e in entries if e.fields["event"] == "duress"]
    assert json.loads(duress.fields["alert"])["details"]["duress"] is True


async def test_the_relay_loop_publishes_when_woken_and_survives_a_failing_queue(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    _, trip_id = await _trip(sessions)

    class Flaky(DatabaseQueue):
        failures = 2

        async def publish(self, fields: dict[str, str]) -> str:  # type: ignore[override]
            if self.failures:
                self.failures -= 1
                raise QueueUnavailable("down for the test")
            return await super().publish(fields)

    queue = Flaky(sessions)
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        relay_forever(
            sessions,
            queue,
            stop,
            public_url=URL,
            wake=wake,
            interval_s=0.05,
            max_backoff_s=0.2,
        )
    )
    try:
        sos = await raise_sos(sessions, trip_id, source="api", now=T0)
        wake.set()
        deadline = asyncio.get_running_loop().time() + 10
        entries = []
        while not entries and asyncio.get_running_loop().time() < deadline:
            entries = await queue.read("c", count=10, block_ms=100)
        assert [e.fields["alert_id"] for e in entries] == [sos.alert_id]
        assert queue.failures == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert await _unpublished(sessions) == []
