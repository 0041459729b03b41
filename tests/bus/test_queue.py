"""The police queue as its consumers see it, on the real Redis (a Stream with a consumer
group) and on both databases: each entry to one consumer, in order, held until
acknowledged, reclaimed when left idle, and a Redis that is gone or down either
recovered from or reported at once."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.bus.queue import (
    DEFAULT_GROUP,
    DatabaseQueue,
    PoliceQueue,
    QueueEntry,
    QueueUnavailable,
    RedisStreamQueue,
    make_police_queue,
)
from sigueme.store.db import make_engine, sessionmaker
from sigueme.store.models import PoliceQueueEntry


def change(n: int) -> dict[str, str]:
    """The fields of one alert change, as the relay would queue it."""
    return {
        "outbox_id": str(n),
        "alert_id": f"alert-{n}",
        "event": "raised",
        "kind": "off_route",
        "severity": "3",
        "trip_id": "trip-ñ",
    }


async def drain(queue: PoliceQueue, consumer: str, *, count: int = 7) -> list[QueueEntry]:
    """Everything ``consumer`` gets, reading until there is nothing left."""
    got: list[QueueEntry] = []
    while batch := await queue.read(consumer, count=count):
        got.extend(batch)
        await asyncio.sleep(0)  # let the other reader in between reads
    return got


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class QueueContract:
    """What every queue promises; subclasses provide ``queue``."""

    async def test_publish_read_ack(self, queue: PoliceQueue) -> None:
        ids = [await queue.publish(change(n)) for n in range(3)]
        assert await queue.pending() == 0

        got = await queue.read("cad-1", count=10)

        assert [e.id for e in got] == ids
        assert [e.fields for e in got] == [change(n) for n in range(3)]
        assert [e.deliveries for e in got] == [1, 1, 1]
        assert await queue.pending() == 3
        assert await queue.read("cad-1") == []
        assert await queue.read("cad-2") == []

        assert await queue.ack(ids[:2]) == 2
        assert await queue.pending() == 1
        assert await queue.ack(ids[:2]) == 0, "acknowledged twice"
        assert await queue.ack(ids[2:]) == 1
        assert await queue.pending() == 0

    async def test_entries_come_in_order(self, queue: PoliceQueue) -> None:
        ids = [await queue.publish(change(n)) for n in range(20)]

        got = [e for _ in range(4) for e in await queue.read("cad-1", count=5)]

        assert [e.id for e in got] == ids
        assert [e.fields["outbox_id"] for e in got] == [str(n) for n in range(20)]
        assert await queue.read("cad-1", count=5) == []

    async def test_each_entry_goes_to_exactly_one_of_two_concurrent_consumers(
        self, queue: PoliceQueue
    ) -> None:
        ids = [await queue.publish(change(n)) for n in range(150)]

        a, b = await asyncio.gather(drain(queue, "cad-a"), drain(queue, "cad-b"))

        got_a, got_b = [e.id for e in a], [e.id for e in b]
        assert not set(got_a) & set(got_b)
        assert sorted(got_a + got_b, key=ids.index) == ids
        assert len(got_a) + len(got_b) == len(ids)
        # Each consumer sees its share in queue order.
        assert got_a == sorted(got_a, key=ids.index)
        assert got_b == sorted(got_b, key=ids.index)
        assert await queue.pending() == len(ids)

    async def test_unacknowledged_entries_are_reclaimed_by_another_consumer(
        self, queue: PoliceQueue
    ) -> None:
        first, second, third = [await queue.publish(change(n)) for n in range(3)]
        assert [e.id for e in await queue.read("crashed", count=3)] == [first, second, third]
        assert await queue.ack([second]) == 1

        # Not idle long enough yet: nobody takes them.
        assert await queue.claim_stale("cad-2", min_idle_ms=60_000) == []
        await asyncio.sleep(0.15)
        claimed = await queue.claim_stale("cad-2", min_idle_ms=100, count=10)

        assert [e.id for e in claimed] == [first, third]
        assert [e.fields for e in claimed] == [change(0), change(2)]
        assert [e.deliveries for e in claimed] == [2, 2]
        assert await queue.pending() == 2
        # Held by cad-2 now, idle again from the claim.
        assert await queue.claim_stale("cad-3", min_idle_ms=60_000) == []
        # Never new again: a fresh read does not hand them out.
        assert await queue.read("cad-3") == []

        await asyncio.sleep(0.15)
        again = await queue.claim_stale("cad-3", min_idle_ms=100, count=1)
        assert [(e.id, e.deliveries) for e in again] == [(first, 3)]

        assert await queue.ack([first, third]) == 2
        assert await queue.pending() == 0
        await asyncio.sleep(0.15)
        assert await queue.claim_stale("cad-4", min_idle_ms=100) == []
        assert await queue.read("cad-4") == []

    async def test_claim_takes_at_most_count(self, queue: PoliceQueue) -> None:
        ids = [await queue.publish(change(n)) for n in range(12)]
        await queue.read("crashed", count=12)
        await asyncio.sleep(0.15)

        got = await queue.claim_stale("cad-2", min_idle_ms=100, count=5)
        rest = await queue.claim_stale("cad-3", min_idle_ms=100, count=100)

        assert [e.id for e in got] == ids[:5]
        assert [e.id for e in rest] == ids[5:]

    async def test_a_blocking_read_returns_when_an_entry_arrives(self, queue: PoliceQueue) -> None:
        started = time.monotonic()
        reader = asyncio.create_task(queue.read("cad-1", block_ms=10_000))
        await asyncio.sleep(0.2)
        assert not reader.done()
        entry_id = await queue.publish(change(1))

        got = await asyncio.wait_for(reader, 10)

        assert [e.id for e in got] == [entry_id]
        assert time.monotonic() - started < 8, "waited for the whole block_ms"

    async def test_a_blocking_read_returns_nothing_after_its_time(self, queue: PoliceQueue) -> None:
        started = time.monotonic()
        assert await queue.read("cad-1", block_ms=300) == []
        assert time.monotonic() - started >= 0.25
        # block_ms 0 (or None) does not wait at all (unlike Redis' BLOCK 0).
        assert await asyncio.wait_for(queue.read("cad-1", block_ms=0), 5) == []

    async def test_unknown_and_malformed_ids_acknowledge_nothing(self, queue: PoliceQueue) -> None:
        entry_id = await queue.publish(change(1))
        assert await queue.ack([entry_id]) == 0, "never read: not pending"
        await queue.read("cad-1")
        assert await queue.ack(["999999999", "nonsense", "", "1-2-3"]) == 0
        assert await queue.ack([]) == 0
        assert await queue.pending() == 1

    async def test_bad_arguments_are_refused(self, queue: PoliceQueue) -> None:
        with pytest.raises(ValueError, match="field"):
            await queue.publish({})
        with pytest.raises(ValueError, match="count"):
            await queue.read("cad-1", count=0)
        with pytest.raises(ValueError, match="consumer"):
            await queue.read("")
        with pytest.raises(ValueError, match="consumer"):
            await queue.claim_stale("x" * 101, min_idle_ms=1000)


# -- Redis ---------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def stream() -> str:
    """A stream key of this test's own: tests share one Redis."""
    return f"sigueme:test:police:{uuid.uuid4().hex}"


@pytest.mark.redis
class TestRedisStreamQueue(QueueContract):
    @pytest_asyncio.fixture(loop_scope="session")
    async def queue(self, redis: Redis, stream: str) -> AsyncIterator[RedisStreamQueue]:
        try:
            yield RedisStreamQueue(redis, stream=stream)
        finally:
            await redis.delete(stream)

    async def test_it_is_a_stream_with_a_consumer_group(
        self, queue: RedisStreamQueue, redis: Redis, stream: str
    ) -> None:
        entry_id = await queue.publish(change(1))
        await queue.read("cad-1")

        groups = await redis.xinfo_groups(stream)
        assert [(g["name"], g["pending"]) for g in groups] == [(DEFAULT_GROUP.encode(), 1)]
        [(raw_id, fields)] = await redis.xrange(stream)
        assert raw_id.decode() == entry_id
        assert fields[b"trip_id"].decode() == "trip-ñ"

    async def test_a_group_created_after_entries_exist_still_gets_them(
        self, redis: Redis, stream: str, queue: RedisStreamQueue
    ) -> None:
        early = [(await redis.xadd(stream, change(n))).decode() for n in range(3)]
        assert await redis.xinfo_groups(stream) == []

        got = await queue.read("cad-1", count=10)

        assert [e.id for e in got] == early

    async def test_a_deleted_stream_is_recreated(
        self, queue: RedisStreamQueue, redis: Redis, stream: str
    ) -> None:
        await queue.publish(change(1))
        assert len(await queue.read("cad-1")) == 1

        await redis.delete(stream)  # what FLUSHALL or a restart without persistence does

        assert await queue.pending() == 0
        assert await queue.read("cad-1") == []
        assert await queue.claim_stale("cad-1", min_idle_ms=0) == []
        entry_id = await queue.publish(change(2))
        got = await queue.read("cad-1")
        assert [(e.id, e.fields) for e in got] == [(entry_id, change(2))]
        assert await queue.ack([entry_id]) == 1

    async def test_a_stream_recreated_by_another_publisher_gets_its_group_back(
        self, queue: RedisStreamQueue, redis: Redis, stream: str
    ) -> None:
        await queue.publish(change(1))
        await redis.delete(stream)
        other = RedisStreamQueue(redis, stream=stream)  # another worker, group known to it
        other_id = await queue.publish(change(2))
        entry_id = await other.publish(change(3))

        got = await queue.read("cad-1", count=10)

        assert [e.id for e in got] == [other_id, entry_id]

    async def test_a_destroyed_group_is_recreated_and_redelivers(
        self, queue: RedisStreamQueue, redis: Redis, stream: str
    ) -> None:
        ids = [await queue.publish(change(n)) for n in range(2)]
        assert len(await queue.read("cad-1", count=10)) == 2

        await redis.xgroup_destroy(stream, DEFAULT_GROUP)

        # At least once: what the stream still holds comes again.
        assert [e.id for e in await queue.read("cad-1", count=10)] == ids

    async def test_a_reader_blocked_while_the_stream_is_deleted_goes_on(
        self, queue: RedisStreamQueue, redis: Redis, stream: str
    ) -> None:
        await queue.publish(change(0))
        await queue.read("cad-1")
        reader = asyncio.create_task(queue.read("cad-1", block_ms=5_000))
        await asyncio.sleep(0.2)
        await redis.delete(stream)
        await asyncio.sleep(0.1)
        entry_id = await queue.publish(change(1))

        got = await asyncio.wait_for(reader, 10)

        assert [e.id for e in got] == [entry_id]

    async def test_trimming_keeps_pending_and_unread_entries(
        self, redis: Redis, stream: str
    ) -> None:
        queue = RedisStreamQueue(redis, stream=stream, maxlen=10, trim_every=1_000_000)
        ids = [await queue.publish(change(n)) for n in range(300)]
        held = await queue.read("crashed", count=300)
        assert await queue.ack([e.id for e in held[:250]]) == 250
        unread = [await queue.publish(change(n)) for n in range(300, 600)]

        await queue._trim()

        left = {raw.decode() for raw, _ in await redis.xrange(stream)}
        assert len(left) < 600, "nothing was trimmed"
        assert set(ids[250:]) <= left, "pending entries were trimmed"
        assert set(unread) <= left, "unread entries were trimmed"
        await asyncio.sleep(0.15)
        claimed = await queue.claim_stale("cad-2", min_idle_ms=100, count=100)
        assert [e.id for e in claimed] == ids[250:]
        assert [e.id for e in await queue.read("cad-2", count=1000)] == unread

    async def test_publishing_trims_to_about_maxlen(self, redis: Redis, stream: str) -> None:
        queue = RedisStreamQueue(redis, stream=stream, maxlen=100, trim_every=50)
        for n in range(1000):
            await queue.publish(change(n))
            for entry in await queue.read("cad-1", count=10):
                await queue.ack([entry.id])

        # Approximate: whole nodes of up to 100 entries, checked every 50 publishes.
        assert await redis.xlen(stream) <= 100 + 100 + 50

    async def test_an_unreachable_redis_raises_queue_unavailable_quickly(self) -> None:
        client = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")
        queue = RedisStreamQueue(client, stream="sigueme:test:unreachable", timeout_s=2.0)
        try:
            for op in (
                queue.publish(change(1)),
                queue.read("cad-1", block_ms=100),
                queue.ack(["1-0"]),
                queue.claim_stale("cad-1", min_idle_ms=1000),
                queue.pending(),
            ):
                started = time.monotonic()
                with pytest.raises(QueueUnavailable, match="Redis"):
                    await asyncio.wait_for(op, 10)
                assert time.monotonic() - started < 5
        finally:
            await client.aclose()

    async def test_a_redis_that_does_not_answer_raises_after_the_timeout(self) -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Redis.from_url(f"redis://127.0.0.1:{port}/0")
        queue = RedisStreamQueue(client, stream="sigueme:test:silent", timeout_s=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(QueueUnavailable, match="no answer in time"):
                await asyncio.wait_for(queue.read("cad-1", block_ms=200), 10)
            assert time.monotonic() - started < 5
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()


# -- the database ----------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database_url)
    try:
        yield sessionmaker(engine)
    finally:
        await engine.dispose()


class TestDatabaseQueue(QueueContract):
    @pytest.fixture
    def queue(self, sessions: async_sessionmaker[AsyncSession]) -> DatabaseQueue:
        return DatabaseQueue(sessions)

    async def test_four_readers_at_once_never_share_an_entry(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        queues = [DatabaseQueue(sessions) for _ in range(4)]
        ids = [await queues[0].publish(change(n)) for n in range(200)]

        got = await asyncio.gather(*(drain(q, f"cad-{i}", count=3) for i, q in enumerate(queues)))

        every = [e.id for batch in got for e in batch]
        assert len(every) == len(set(every)) == len(ids)
        assert set(every) == set(ids)

    async def test_ids_are_row_ids(
        self, queue: DatabaseQueue, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        entry_id = await queue.publish(change(1))
        async with sessions() as session:
            row = await session.get(PoliceQueueEntry, int(entry_id))
        assert row is not None
        assert row.fields == change(1)
        assert row.consumer is None
        assert row.deliveries == 0

    async def test_trimming_drops_old_acknowledged_rows_only(
        self, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        queue = DatabaseQueue(sessions, maxlen=5, trim_every=1_000_000)
        ids = [await queue.publish(change(n)) for n in range(10)]
        held = await queue.read("cad-1", count=4)
        await queue.ack([held[0].id, held[1].id])
        ids.append(await queue.publish(change(10)))

        await queue._trim()

        async with sessions() as session:
            left = set((await session.execute(select(PoliceQueueEntry.id))).scalars())
        assert left == {int(i) for i in ids[2:]}
        assert await queue.pending() == 2
        assert [e.id for e in await queue.read("cad-2", count=100)] == ids[4:]

    async def test_a_database_that_is_down_raises_queue_unavailable(self) -> None:
        engine = make_engine(f"postgresql+asyncpg://nobody:x@127.0.0.1:{closed_port()}/none")
        queue = DatabaseQueue(sessionmaker(engine))
        try:
            with pytest.raises(QueueUnavailable, match="database"):
                await queue.publish(change(1))
            with pytest.raises(QueueUnavailable, match="database"):
                await queue.read("cad-1", block_ms=100)
            with pytest.raises(QueueUnavailable, match="database"):
                await queue.pending()
        finally:
            await engine.dispose()


# -- choosing one ------------------------------------------------------------------------------


@pytest.mark.redis
async def test_make_police_queue_picks_redis_when_there_is_a_client(
    redis: Redis, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert isinstance(make_police_queue(redis, sessions), RedisStreamQueue)
    assert isinstance(make_police_queue(None, sessions), DatabaseQueue)
