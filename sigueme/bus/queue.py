"""The Policía Morelos queue: alert changes, in order, for dispatcher consoles and the
force's own systems.

With Redis, it is a Redis Stream (default key ``sigueme:police``) with one consumer group
(default ``policia-morelos``): consumers read with ``XREADGROUP``, acknowledge with
``XACK``, and entries a crashed consumer left pending are reclaimed with ``XAUTOCLAIM``
(:class:`RedisStreamQueue`). In the embedded default the same interface runs on the
database (:class:`DatabaseQueue`, table ``police_queue``). :func:`make_police_queue`
picks one.

Delivery is at least once: the outbox relay (:mod:`sigueme.services.relay`) may put an
alert change on the queue twice (a crash between ``XADD`` and marking it published), and
an entry a consumer read but did not acknowledge is handed again to whoever reclaims it.
Every entry carries ``outbox_id`` (unique per change) and ``alert_id``: consumers tell
duplicates apart with them.

Entry fields (all strings, as a Redis Stream holds them):

``outbox_id``, ``alert_id``, ``event`` (raised, repeated, escalated, acknowledged,
dispatched, resolved, cancelled, duress, condition_ended), ``kind``, ``severity``
(1-4), ``status``, ``trip_id``, ``opened_at`` (ISO 8601), ``alert`` (the alert as JSON,
as ``GET /v1/alerts/{id}`` returns it).

Both implementations keep about ``maxlen`` entries: older ones are dropped once
acknowledged, never while unread or pending (see :class:`RedisStreamQueue` for how, and
for what that costs).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError
from redis.typing import EncodableT, FieldT
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from sigueme.store.models import PoliceQueueEntry, utcnow

log = logging.getLogger(__name__)

DEFAULT_STREAM: Final = "sigueme:police"
DEFAULT_GROUP: Final = "policia-morelos"
DEFAULT_MAXLEN: Final = 100_000
"""Entries a queue keeps (about): acknowledged ones past that are dropped."""
TRIM_EVERY: Final = 100
"""Publishes (by one queue object) between two checks of the queue's length."""
MAX_CONSUMER: Final = 100
"""Longest consumer name (the database column's size)."""

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: str
    """The entry's id: a Redis Stream id (``1764284400000-0``), or the row id on the
    database."""
    fields: dict[str, str]
    deliveries: int = 1
    """How many times it was handed to a consumer (more than one: reclaimed)."""


class QueueUnavailable(Exception):
    """The queue's backend cannot be reached (Redis down): try again later."""


class PoliceQueue(Protocol):
    """One queue with one consumer group: every entry goes to one consumer of the group
    at a time, and stays pending (reclaimable) until acknowledged."""

    @property
    def backend(self) -> str:
        """``"redis"`` or ``"database"``."""
        ...

    @property
    def stream(self) -> str:
        """The Redis Stream's key, or the table's name on the database."""
        ...

    @property
    def group(self) -> str:
        """The consumer group (on the database, the one implicit group's name)."""
        ...

    async def publish(self, fields: Mapping[str, str]) -> str:
        """Append an entry (at least one field); its id. :class:`QueueUnavailable` when
        the backend is down."""
        ...

    async def read(
        self, consumer: str, *, count: int = 10, block_ms: int | None = None
    ) -> list[QueueEntry]:
        """Entries never delivered to the group, oldest first, now held by ``consumer``
        until it acknowledges them (``XREADGROUP GROUP g consumer COUNT n BLOCK ms
        STREAMS s >``); each is handed to one consumer only. ``block_ms``: wait up to
        that long for one when there is none (``None`` or 0: do not wait, unlike Redis'
        ``BLOCK 0``). :class:`QueueUnavailable` when the backend is down, after at most
        about ``block_ms`` and the backend's timeout."""
        ...

    async def ack(self, ids: Sequence[str]) -> int:
        """Acknowledge entries (``XACK``), whichever consumer holds them; how many were
        pending. Ids that are unknown, already acknowledged or malformed count 0."""
        ...

    async def claim_stale(
        self, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[QueueEntry]:
        """Entries read by some consumer but not acknowledged for ``min_idle_ms``, oldest
        first, now held by ``consumer`` (``XAUTOCLAIM``) and idle again from now; their
        ``deliveries`` count this one."""
        ...

    async def pending(self) -> int:
        """Entries delivered and not acknowledged."""
        ...


def _check_consumer(consumer: str) -> None:
    if not consumer or len(consumer) > MAX_CONSUMER:
        raise ValueError(f"a consumer name has 1 to {MAX_CONSUMER} characters")


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError("count must be at least 1")


def _check_fields(fields: Mapping[str, str]) -> dict[str, str]:
    if not fields:
        raise ValueError("a queue entry needs at least one field")
    return {str(k): str(v) for k, v in fields.items()}


# -- Redis ---------------------------------------------------------------------------------

_STREAM_ID = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX_U64: Final = 2**64 - 1
_MAX_SCANS: Final = 100
"""Most ``XAUTOCLAIM`` calls in one :meth:`RedisStreamQueue.claim_stale`."""
_TRIM_SCAN: Final = 1_000
"""Most entries one trim looks at (``XRANGE`` brings their fields too); a longer excess
is trimmed over several checks."""


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _parse_id(value: object) -> tuple[int, int] | None:
    match = _STREAM_ID.match(_text(value))
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2] or 0)
    return (ms, seq) if ms <= _MAX_U64 and seq <= _MAX_U64 else None


def _format_id(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def _next_id(value: tuple[int, int]) -> tuple[int, int]:
    ms, seq = value
    return (ms, seq + 1) if seq < _MAX_U64 else (ms + 1, 0)


def _entries(raw: object) -> list[tuple[str, dict[str, str]]]:
    """``[(id, {field: value}), ...]`` from a stream reply, without the entries Redis
    reports as deleted (``None`` fields)."""
    out: list[tuple[str, dict[str, str]]] = []
    for item in raw if isinstance(raw, list) else ():
        entry_id, fields = item[0], item[1]
        if entry_id is None or fields is None:
            continue
        out.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
    return out


def _stream_reply(raw: object) -> object:
    """The entries of the only stream in an ``XREADGROUP`` reply (RESP2 or RESP3)."""
    if isinstance(raw, dict):
        for value in raw.values():
            # RESP3 with redis-py: {stream: [entries]} (or [[entries]] in older versions).
            if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
                return value[0]
            return value
        return []
    if isinstance(raw, list) and raw:
        return raw[0][1]
    return []


def _unavailable(exc: BaseException) -> QueueUnavailable:
    if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
        reason = "no answer in time"
    else:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return QueueUnavailable(f"the police queue's Redis is unavailable ({reason})")


class RedisStreamQueue:
    """The queue on a Redis Stream with a consumer group.

    The group is created on first use (``XGROUP CREATE stream group 0 MKSTREAM``: from
    the start of the stream, so entries published before it existed are delivered), and
    again, transparently, whenever Redis says it is gone (``NOGROUP``: the key was
    deleted, or Redis restarted without persistence). A recreated group delivers every
    entry still in the stream again: at least once, as always.

    Every call is bounded by ``timeout_s`` (plus ``block_ms`` for a blocking read):
    a Redis that is down, unreachable or too slow raises :class:`QueueUnavailable`.

    Trimming: ``XADD`` does not trim (``MAXLEN ~`` would drop the oldest entries even
    if they are pending or were never read, and Redis 7 has no option to keep them).
    Instead, on its first publish and every ``trim_every`` (:data:`TRIM_EVERY`) after,
    a queue object that finds more than ``maxlen`` entries trims the oldest of those
    below every group's oldest pending entry and last delivered entry (``XTRIM MINID
    ~``: whole macro nodes only, so cheap and approximate). The cost: a stream whose
    consumers stopped reading (or acknowledging) grows past ``maxlen``, in Redis'
    memory, instead of losing alerts; it shrinks once they catch up. Between checks it
    may exceed ``maxlen`` by about ``trim_every`` per publishing worker, plus a macro
    node. ``maxlen=None``: never trim.
    """

    backend: Final = "redis"

    def __init__(
        self,
        redis: Redis,
        *,
        stream: str = DEFAULT_STREAM,
        group: str = DEFAULT_GROUP,
        maxlen: int | None = DEFAULT_MAXLEN,
        timeout_s: float = 2.0,
        trim_every: int = TRIM_EVERY,
    ) -> None:
        if maxlen is not None and maxlen < 1:
            raise ValueError("maxlen must be at least 1 (or None: never trim)")
        self._redis = redis
        self.stream = stream
        self.group = group
        self.maxlen = maxlen
        self._timeout_s = timeout_s
        self._trim_every = max(1, trim_every)
        self._published = 0
        self._group_ready = False

    # -- plumbing ---------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._group_ready = True

    async def _run(self, op: Callable[[], Awaitable[_T]], *, block_ms: int = 0) -> _T:
        """``op`` with the group in place, within ``timeout_s`` plus ``block_ms``; a group
        that vanished is recreated and ``op`` run once more (so a blocking read that
        found it gone may wait twice its ``block_ms``)."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self._timeout_s + block_ms / 1000):
                    await self._ensure_group()
                    return await op()
            except ResponseError as exc:
                message = str(exc)
                # NOGROUP: the key or the group is gone. UNBLOCKED: the key was deleted
                # while we were blocked reading it.
                if attempt == 1 and message.startswith(("NOGROUP", "UNBLOCKED")):
                    self._group_ready = False
                    log.warning(
                        "police queue: consumer group %s of %s was gone; recreating it",
                        self.group,
                        self.stream,
                    )
                    continue
                raise _unavailable(exc) from exc
            except (RedisError, OSError, TimeoutError) as exc:
                raise _unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the interface ----------------------------------------------------------------------

    async def publish(self, fields: Mapping[str, str]) -> str:
        values = _check_fields(fields)

        entry: dict[FieldT, EncodableT] = dict(values.items())

        async def _xadd() -> str:
            return _text(await self._redis.xadd(self.stream, entry))

        entry_id = await self._run(_xadd)
        self._published += 1
        # The first publish checks too: a restarted service finds a long stream at once.
        if self.maxlen is not None and (self._published - 1) % self._trim_every == 0:
            try:
                await self._run(self._trim)
            except Exception:
                # The entry is in: trimming is housekeeping and waits for the next check
                # (failing the publish now would only make the relay queue it twice).
                log.warning("police queue: could not trim %s", self.stream, exc_info=True)
        return entry_id

    async def read(
        self, consumer: str, *, count: int = 10, block_ms: int | None = None
    ) -> list[QueueEntry]:
        _check_consumer(consumer)
        _check_count(count)
        if block_ms is not None and block_ms < 0:
            raise ValueError("block_ms must not be negative")
        block = block_ms or 0

        async def _xreadgroup() -> list[QueueEntry]:
            raw = await self._redis.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=count, block=block or None
            )
            return [QueueEntry(i, f, 1) for i, f in _entries(_stream_reply(raw))]

        return await self._run(_xreadgroup, block_ms=block)

    async def ack(self, ids: Sequence[str]) -> int:
        valid = [_format_id(p) for p in map(_parse_id, ids) if p is not None]
        if not valid:
            return 0

        async def _xack() -> int:
            return int(await self._redis.xack(self.stream, self.group, *valid))

        return await self._run(_xack)

    async def claim_stale(
        self, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[QueueEntry]:
        _check_consumer(consumer)
        _check_count(count)
        if min_idle_ms < 0:
            raise ValueError("min_idle_ms must not be negative")

        async def _xautoclaim() -> list[QueueEntry]:
            claimed: list[tuple[str, dict[str, str]]] = []
            cursor = "0-0"
            for _ in range(_MAX_SCANS):
                raw: list[Any] = await self._redis.xautoclaim(
                    self.stream,
                    self.group,
                    consumer,
                    min_idle_ms,
                    cursor,
                    count=count - len(claimed),
                )
                cursor = _text(raw[0])
                claimed.extend(_entries(raw[1]))
                if cursor == "0-0" or len(claimed) >= count:
                    break
            if not claimed:
                return []
            # XAUTOCLAIM does not say how many times each was delivered: XPENDING does.
            pipe = self._redis.pipeline(transaction=False)
            for entry_id, _fields in claimed:
                pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
            counts: list[Any] = await pipe.execute()
            out = []
            for (entry_id, fields), info in zip(claimed, counts, strict=True):
                deliveries = int(info[0]["times_delivered"]) if info else 2
                out.append(QueueEntry(entry_id, fields, deliveries))
            return sorted(out, key=lambda e: _parse_id(e.id) or (0, 0))

        return await self._run(_xautoclaim)

    async def pending(self) -> int:
        async def _xpending() -> int:
            summary = await self._redis.xpending(self.stream, self.group)
            return int(summary["pending"])

        return await self._run(_xpending)

    # -- trimming ---------------------------------------------------------------------------

    async def _trim(self) -> None:
        """Drop the oldest acknowledged entries past ``maxlen``, never one that a group
        has pending or has not read yet."""
        assert self.maxlen is not None
        excess = int(await self._redis.xlen(self.stream)) - self.maxlen
        if excess <= 0:
            return
        groups = await self._redis.xinfo_groups(self.stream)
        if not any(_text(g["name"]) == self.group for g in groups):
            # Ours is gone (the key was recreated by XADD): bring it back, and trim
            # nothing, since it has read nothing.
            self._group_ready = False
            await self._ensure_group()
            return
        floor: tuple[int, int] | None = None  # the oldest entry some group still needs
        for g in groups:
            needed = _next_id(_parse_id(g["last-delivered-id"]) or (0, 0))
            if int(g["pending"]):
                summary = await self._redis.xpending(self.stream, g["name"])
                oldest = _parse_id(summary["min"])
                if oldest is not None:
                    needed = min(needed, oldest)
            floor = needed if floor is None else min(floor, needed)
        assert floor is not None
        old = await self._redis.xrange(
            self.stream, "-", f"({_format_id(floor)}", count=min(excess, _TRIM_SCAN)
        )
        if not old:
            return  # the backlog alone is longer than maxlen: keep it all
        last = _parse_id(old[-1][0])
        if last is not None:
            await self._redis.xtrim(self.stream, minid=_format_id(_next_id(last)), approximate=True)


# -- the database --------------------------------------------------------------------------

_DB_ERRORS: Final = (DBAPIError, OSError, TimeoutError)
"""What a database that is down, locked or gone raises."""


def _row_id(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) <= 18 else None


def _db_unavailable(exc: BaseException) -> QueueUnavailable:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    reason = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return QueueUnavailable(f"the police queue's database is unavailable ({reason})")


class DatabaseQueue:
    """The queue on the database (table ``police_queue``), with the semantics of a
    Redis Stream with one consumer group: a row is unread (``consumer`` null), held by
    a consumer (``consumer`` set, ``acked_at`` null) or acknowledged.

    Each entry is handed to one reader even with concurrent readers: on PostgreSQL the
    rows are picked with ``SELECT ... FOR UPDATE SKIP LOCKED`` and taken in the same
    transaction; on SQLite the pick and the take are one ``UPDATE`` (SQLite has one
    writer at a time). A blocking read polls every ``poll_s`` until an entry comes or
    its time is up. On its first publish and every ``trim_every`` after, acknowledged
    rows more than ``maxlen`` rows behind the newest are deleted (never an unread or
    pending one).
    """

    backend: Final = "database"
    stream: Final[str] = PoliceQueueEntry.__tablename__
    """The table (the queue's name for ``GET /v1/queue``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        group: str = DEFAULT_GROUP,
        maxlen: int | None = DEFAULT_MAXLEN,
        poll_s: float = 0.05,
        trim_every: int = TRIM_EVERY,
    ) -> None:
        if maxlen is not None and maxlen < 1:
            raise ValueError("maxlen must be at least 1 (or None: never trim)")
        self._sessions = sessions
        self.group = group
        """Only a name: the table holds one group."""
        self.maxlen = maxlen
        self._poll_s = poll_s
        self._trim_every = max(1, trim_every)
        self._published = 0

    async def publish(self, fields: Mapping[str, str]) -> str:
        values = _check_fields(fields)
        try:
            async with self._sessions() as session:
                row = PoliceQueueEntry(fields=values, created_at=utcnow(), deliveries=0)
                session.add(row)
                await session.commit()
                entry_id = row.id
        except _DB_ERRORS as exc:
            raise _db_unavailable(exc) from exc
        self._published += 1
        if self.maxlen is not None and (self._published - 1) % self._trim_every == 0:
            try:
                await self._trim()
            except Exception:
                log.warning("police queue: could not trim the table", exc_info=True)
        return str(entry_id)

    async def read(
        self, consumer: str, *, count: int = 10, block_ms: int | None = None
    ) -> list[QueueEntry]:
        _check_consumer(consumer)
        _check_count(count)
        if block_ms is not None and block_ms < 0:
            raise ValueError("block_ms must not be negative")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000 if block_ms else None
        while True:
            entries = await self._take(consumer, count, stale_before=None)
            if entries or deadline is None:
                return entries
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            await asyncio.sleep(min(self._poll_s, remaining))

    async def claim_stale(
        self, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[QueueEntry]:
        _check_consumer(consumer)
        _check_count(count)
        if min_idle_ms < 0:
            raise ValueError("min_idle_ms must not be negative")
        return await self._take(consumer, count, stale_before=timedelta(milliseconds=min_idle_ms))

    async def _take(
        self, consumer: str, count: int, *, stale_before: timedelta | None
    ) -> list[QueueEntry]:
        """Hand ``count`` rows to ``consumer``: unread ones (``stale_before`` None), or
        held ones delivered longer ago than ``stale_before``."""
        q = PoliceQueueEntry
        now = utcnow()
        which: tuple[ColumnElement[bool], ...]
        if stale_before is None:
            which = (q.consumer.is_(None), q.acked_at.is_(None))
        else:
            which = (
                q.consumer.is_not(None),
                q.acked_at.is_(None),
                q.delivered_at <= now - stale_before,
            )
        pick = select(q.id).where(*which).order_by(q.id).limit(count)
        take = (
            update(q)
            .values(consumer=consumer, delivered_at=now, deliveries=q.deliveries + 1)
            .returning(q.id, q.fields, q.deliveries)
            .execution_options(synchronize_session=False)
        )
        try:
            async with self._sessions() as session:
                if session.get_bind().dialect.name == "sqlite":
                    # One statement: SQLite runs it under its one write lock.
                    result = await session.execute(take.where(q.id.in_(pick), *which))
                else:
                    ids = list(
                        (await session.execute(pick.with_for_update(skip_locked=True))).scalars()
                    )
                    if not ids:
                        return []
                    result = await session.execute(take.where(q.id.in_(ids)))
                rows = result.all()
                await session.commit()
        except _DB_ERRORS as exc:
            raise _db_unavailable(exc) from exc
        return [
            QueueEntry(str(row_id), {str(k): str(v) for k, v in fields.items()}, deliveries)
            for row_id, fields, deliveries in sorted(rows, key=lambda r: int(r[0]))
        ]

    async def ack(self, ids: Sequence[str]) -> int:
        wanted = sorted({i for i in map(_row_id, ids) if i is not None})
        if not wanted:
            return 0
        q = PoliceQueueEntry
        stmt = (
            update(q)
            .where(q.id.in_(wanted), q.consumer.is_not(None), q.acked_at.is_(None))
            .values(acked_at=utcnow())
            .returning(q.id)
            .execution_options(synchronize_session=False)
        )
        try:
            async with self._sessions() as session:
                acked = len((await session.execute(stmt)).all())
                await session.commit()
        except _DB_ERRORS as exc:
            raise _db_unavailable(exc) from exc
        return acked

    async def pending(self) -> int:
        q = PoliceQueueEntry
        stmt = (
            select(func.count()).select_from(q).where(q.consumer.is_not(None), q.acked_at.is_(None))
        )
        try:
            async with self._sessions() as session:
                return int((await session.execute(stmt)).scalar_one())
        except _DB_ERRORS as exc:
            raise _db_unavailable(exc) from exc

    async def _trim(self) -> None:
        assert self.maxlen is not None
        q = PoliceQueueEntry
        async with self._sessions() as session:
            newest = (await session.execute(select(func.max(q.id)))).scalar_one()
            if newest is None or newest <= self.maxlen:
                return
            await session.execute(
                delete(q).where(q.acked_at.is_not(None), q.id <= newest - self.maxlen)
            )
            await session.commit()


def make_police_queue(
    redis: Redis | None,
    sessions: async_sessionmaker[AsyncSession],
    *,
    stream: str = DEFAULT_STREAM,
    group: str = DEFAULT_GROUP,
) -> PoliceQueue:
    """The Redis Stream queue when a Redis client is given (several workers, the force's
    systems reading the stream), the database one otherwise (the embedded default)."""
    if redis is not None:
        return RedisStreamQueue(redis, stream=stream, group=group)
    return DatabaseQueue(sessions, group=group)
