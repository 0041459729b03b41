"""The live bus, in process and on the real Redis: who gets which update, bounded
queues that overflow, and a Redis that is down costing updates, never a publisher."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from sigueme.bus.live import (
    LiveBus,
    LiveMetrics,
    LocalLiveBus,
    RedisLiveBus,
    SubscriberTooSlow,
    Subscription,
    Update,
)

WAIT_S = 5.0


class Bus:
    def __init__(self, bus: LiveBus, registry: CollectorRegistry) -> None:
        self.bus = bus
        self.registry = registry

    def count(self, name: str) -> float:
        return self.registry.get_sample_value(f"sigueme_live_{name}_total") or 0.0


@pytest_asyncio.fixture(params=["local", "redis"], loop_scope="session")
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    registry = CollectorRegistry()
    metrics = LiveMetrics(registry)
    if request.param == "local":
        async with LocalLiveBus(metrics=metrics) as local:
            yield Bus(local, registry)
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    try:
        async with RedisLiveBus(client, metrics=metrics) as remote:
            yield Bus(remote, registry)
    finally:
        await client.aclose()


def trip_ids(n: int) -> list[str]:
    """Fresh trip ids: tests share one Redis."""
    return [str(uuid.uuid4()) for _ in range(n)]


async def next_update(sub: Subscription) -> Update:
    return await asyncio.wait_for(sub.get(), WAIT_S)


def feature(trip_id: str, n: int) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [-99.23, 18.92]},
        "properties": {"kind": "position", "trip_id": trip_id, "n": n, "label": "Mamá 🚗"},
    }


async def test_fan_out_to_the_trip_and_to_all_trips(bus: Bus) -> None:
    a, b = trip_ids(2)
    async with (
        await bus.bus.subscribe([a]) as on_a,
        await bus.bus.subscribe([a]) as on_a_too,
        await bus.bus.subscribe([b]) as on_b,
        await bus.bus.subscribe(all_trips=True) as on_all,
        await bus.bus.subscribe([a], all_trips=True) as on_a_and_all,
    ):
        await bus.bus.publish(a, feature(a, 1))
        await bus.bus.publish(b, feature(b, 2))

        for sub in (on_a, on_a_too):
            update = await next_update(sub)
            assert (update.trip_id, update.data) == (a, feature(a, 1))
        assert (await next_update(on_b)).data == feature(b, 2)
        assert [(await next_update(on_all)).data for _ in range(2)] == [
            feature(a, 1),
            feature(b, 2),
        ]
        # Following a trip and all trips gets each update once.
        assert [(await next_update(on_a_and_all)).data for _ in range(2)] == [
            feature(a, 1),
            feature(b, 2),
        ]
        await bus.bus.publish(a, feature(a, 3))
        assert (await next_update(on_a)).data == feature(a, 3)
        assert (await next_update(on_a_and_all)).data == feature(a, 3)
        await asyncio.sleep(0.05)
        # Nothing else was delivered: b's subscriber never saw a's updates.
        assert on_b.get_nowait() is None
        assert on_a_and_all.get_nowait() is None
        assert '"label":"Mamá 🚗"' in update.text


async def test_changing_what_a_subscription_follows(bus: Bus) -> None:
    a, b, c = trip_ids(3)
    async with await bus.bus.subscribe([a]) as sub, await bus.bus.subscribe([c]) as marker:
        await sub.add([b])
        await sub.remove([a])
        for trip_id in (a, b, c):
            await bus.bus.publish(trip_id, feature(trip_id, 0))
        assert (await next_update(sub)).trip_id == b
        assert (await next_update(marker)).trip_id == c  # published last: a came before
        assert sub.get_nowait() is None

        await sub.follow_all()
        await bus.bus.publish(c, feature(c, 1))
        assert (await next_update(sub)).trip_id == c
        await sub.follow_all(False)
        await bus.bus.publish(c, feature(c, 2))
        await bus.bus.publish(b, feature(b, 3))
        assert (await next_update(sub)).data == feature(b, 3)


async def test_a_subscriber_that_falls_behind_is_dropped_alone(bus: Bus) -> None:
    [a] = trip_ids(1)
    async with (
        await bus.bus.subscribe([a], maxsize=3) as slow,
        await bus.bus.subscribe([a]) as fine,
    ):
        for n in range(5):
            await bus.bus.publish(a, feature(a, n))
        assert [(await next_update(fine)).data for _ in range(5)] == [
            feature(a, n) for n in range(5)
        ]
        await asyncio.wait_for(slow.dropped.wait(), WAIT_S)
        with pytest.raises(SubscriberTooSlow):
            await slow.get()
        assert bus.count("subscribers_dropped") == 1
        assert bus.count("published") == 5


async def test_a_subscription_under_its_bound_keeps_everything(bus: Bus) -> None:
    [a] = trip_ids(1)
    async with await bus.bus.subscribe([a], maxsize=5) as sub:
        for n in range(5):
            await bus.bus.publish(a, feature(a, n))
        assert [(await next_update(sub)).data["properties"] for _ in range(5)] == [
            feature(a, n)["properties"] for n in range(5)
        ]
        assert not sub.dropped.is_set()


@pytest.mark.redis
async def test_redis_carries_updates_between_two_buses(redis_url: str) -> None:
    [a] = trip_ids(1)
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        async with (
            RedisLiveBus(one) as publisher,
            RedisLiveBus(two) as other,
            await other.subscribe([a]) as sub,
            await other.subscribe(all_trips=True) as everything,
        ):
            await publisher.publish(a, feature(a, 7))
            assert (await next_update(sub)).data == feature(a, 7)
            assert (await next_update(everything)).data == feature(a, 7)
    finally:
        await one.aclose()
        await two.aclose()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.redis
async def test_a_redis_that_is_down_never_blocks_nor_fails_the_publisher() -> None:
    registry = CollectorRegistry()
    client = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")
    try:
        async with RedisLiveBus(client, metrics=LiveMetrics(registry), retry_s=0.05) as bus:
            [a] = trip_ids(1)
            # Subscribing does not fail either (it is retried in the background).
            async with await bus.subscribe([a]) as sub:
                for n in range(100):
                    await asyncio.wait_for(bus.publish(a, feature(a, n)), 0.01)
                for _ in range(250):
                    if registry.get_sample_value("sigueme_live_publish_failures_total") == 100:
                        break
                    await asyncio.sleep(0.02)
                assert registry.get_sample_value("sigueme_live_publish_failures_total") == 100
                assert sub.get_nowait() is None
    finally:
        await client.aclose()
