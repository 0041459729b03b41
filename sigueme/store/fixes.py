"""Fixes in and out of the database: batched, idempotent appends and time-ordered reads.

Promise 1 (an acknowledged fix is stored) rests on :func:`append_fixes`: it returns
only after the transaction holding the batch has committed, so the caller may
acknowledge the phone as soon as it returns, and must not before. Promise 2 (resends
are idempotent) rests on the unique index on ``(trip_id, seq)``: a resent fix is
counted as a duplicate, never stored twice and never an error.

Writes are fast on both backends: on PostgreSQL a batch goes in with a binary ``COPY``
into a session-local temporary table and one ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``; on SQLite with one prepared ``INSERT ... ON CONFLICT DO NOTHING`` run over
the whole batch.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
from sqlalchemy import Select, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from sigueme.errors import NotFound, SiguemeError
from sigueme.store.models import Fix, Trip

COLUMNS: Final = (
    "trip_id",
    "seq",
    "t",
    "received_at",
    "lon",
    "lat",
    "accuracy",
    "speed",
    "heading",
    "battery",
    "verdict",
    "distance_m",
    "progress_m",
    "evidence",
)
"""The columns a writer fills, in :class:`FixRow` order (``id`` and, on PostGIS, the
generated ``geom`` are the database's)."""

DEFAULT_BATCH_MAX: Final = 1_000
"""Rows per transaction when the caller gives no bound."""

TRACK_LIMIT_MAX: Final = 100_000
"""The most fixes one :func:`track` call returns."""


@dataclass(frozen=True, slots=True)
class FixRow:
    """One stored fix: the ``fixes`` table's columns, times as aware UTC datetimes."""

    trip_id: str
    seq: int | None
    """The phone's sequence number; a resend carries the same one. ``None``: the
    client numbers nothing, so the row is always stored."""
    t: datetime
    """Device time."""
    received_at: datetime
    """Server time when the fix arrived; retention counts from it."""
    lon: float
    lat: float
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None
    battery: float | None = None
    verdict: str | None = None
    distance_m: float | None = None
    progress_m: float | None = None
    evidence: bool = False

    def __post_init__(self) -> None:
        for name in ("t", "received_at"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"{name}: naive datetime; fixes carry UTC-aware times")
            if value.tzinfo is not UTC:
                object.__setattr__(self, name, value.astimezone(UTC))


_as_record = operator.attrgetter(*COLUMNS)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What :func:`append_fixes` did with the rows it was given."""

    stored: int = 0
    """Rows written now."""
    duplicates: int = 0
    """Rows whose ``(trip_id, seq)`` was already stored (or repeated within the
    input): not written again."""
    batches: int = 0
    """Transactions committed."""

    @property
    def rows(self) -> int:
        """Input rows accounted for: ``stored + duplicates``."""
        return self.stored + self.duplicates

    def __add__(self, other: AppendResult) -> AppendResult:
        return AppendResult(
            self.stored + other.stored,
            self.duplicates + other.duplicates,
            self.batches + other.batches,
        )


class AppendError(SiguemeError):
    """A batch of fixes could not be written; that batch stored nothing.

    ``committed`` tells what earlier batches of the same call stored: the first
    ``committed.rows`` input rows are durable (acknowledge those), none after them.
    The database's own error is the ``__cause__``. (One case is undecidable: a
    connection lost while the database commits. Those rows are not acknowledged, the
    phone resends them, and their ``seq`` makes the resend harmless.)
    """

    def __init__(self, message: str, committed: AppendResult) -> None:
        super().__init__(message)
        self.committed = committed


class UnknownTrip(AppendError, NotFound):
    """A batch named a trip that does not exist (or no longer does)."""

    def __init__(self, trip_ids: Sequence[str], committed: AppendResult) -> None:
        named = ", ".join(trip_ids) if trip_ids else "(deleted meanwhile)"
        super().__init__(f"no such trip: {named}", committed)
        self.trip_ids = tuple(trip_ids)


async def append_fixes(
    engine: AsyncEngine, rows: Sequence[FixRow], *, batch_max: int = DEFAULT_BATCH_MAX
) -> AppendResult:
    """Store ``rows``, at most ``batch_max`` per transaction, in input order.

    Returns only after every batch has committed: each row counted in the result is
    durable (``stored``) or was already (``duplicates``). A row with a ``seq`` whose
    ``(trip_id, seq)`` is stored already, or appears earlier in ``rows``, is a
    duplicate and stored once; rows with ``seq=None`` are always stored.

    A batch either commits whole or stores nothing. Input longer than ``batch_max``
    is split, so partial success is possible: if a batch fails, the call raises
    :class:`AppendError` (:class:`UnknownTrip` when a row names a trip that does not
    exist) whose ``committed`` covers the batches before it; the rows from the
    failed batch on were not stored.
    """
    if batch_max < 1:
        raise ValueError("batch_max must be at least 1")
    postgres = engine.dialect.name == "postgresql"
    done = AppendResult()
    for start in range(0, len(rows), batch_max):
        batch = rows[start : start + batch_max]
        try:
            if postgres:
                stored = await _append_postgres(engine, batch)
            else:
                stored = await _append_sqlite(engine, batch)
        except (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            if _is_foreign_key_violation(exc):
                missing = await _missing_trips(engine, {r.trip_id for r in batch})
                raise UnknownTrip(missing, done) from exc
            raise AppendError(
                f"could not store a batch of {len(batch)} fixes "
                f"({done.rows} before it were stored): {type(exc).__name__}",
                done,
            ) from exc
        done = done + AppendResult(stored, len(batch) - stored, 1)
    return done


# A per-session temporary table: created once per connection, emptied at each commit.
# (ON COMMIT DROP would create and drop it in every transaction, churning the catalog.)
_PG_STAGING = "sigueme_fixes_in"
_PG_CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {_PG_STAGING} (
    trip_id varchar(36) NOT NULL,
    seq bigint,
    t timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    lon double precision NOT NULL,
    lat double precision NOT NULL,
    accuracy double precision,
    speed double precision,
    heading double precision,
    battery double precision,
    verdict varchar(20),
    distance_m double precision,
    progress_m double precision,
    evidence boolean NOT NULL
) ON COMMIT DELETE ROWS
"""
_PG_INSERT = (
    f"INSERT INTO fixes ({', '.join(COLUMNS)}) "
    f"SELECT {', '.join(COLUMNS)} FROM {_PG_STAGING} ON CONFLICT DO NOTHING"
)


async def _append_postgres(engine: AsyncEngine, batch: Sequence[FixRow]) -> int:
    records = [_as_record(r) for r in batch]
    async with engine.connect() as conn:
        pg = await _asyncpg_connection(conn)
        try:
            # The transaction is asyncpg's own: SQLAlchemy's adapter has not begun one
            # on this connection, so its rollback when the connection goes back to the
            # pool is a no-op, and the commit below is the one that makes it durable.
            async with pg.transaction():
                await pg.execute(_PG_CREATE_STAGING)
                await pg.copy_records_to_table(_PG_STAGING, records=records, columns=COLUMNS)
                status = await pg.execute(_PG_INSERT)
        except BaseException:
            # A connection cut off mid-statement (or cancelled) may be closed or still
            # inside the transaction; the pool's reset would not notice (see above), so
            # it must not be handed out again.
            if pg.is_closed() or pg.is_in_transaction():
                await conn.invalidate()
            raise
    # "INSERT 0 <rows inserted>": conflicts skipped by DO NOTHING are not counted.
    return int(status.rsplit(" ", 1)[1])


async def _asyncpg_connection(conn: AsyncConnection) -> asyncpg.Connection:
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    return driver


async def _append_sqlite(engine: AsyncEngine, batch: Sequence[FixRow]) -> int:
    stmt = sqlite_insert(Fix).on_conflict_do_nothing()
    params = [dict(zip(COLUMNS, _as_record(r), strict=True)) for r in batch]
    async with engine.begin() as conn:
        result = await conn.execute(stmt, params)
    # SQLite's executemany rowcount is the sum of rows changed: skipped conflicts
    # count nothing.
    return int(result.rowcount)


def _is_foreign_key_violation(exc: BaseException) -> bool:
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return True
    if isinstance(exc, IntegrityError):
        orig = exc.orig
        return getattr(orig, "sqlstate", None) == "23503" or "FOREIGN KEY" in str(orig)
    return False


async def _missing_trips(engine: AsyncEngine, trip_ids: set[str]) -> list[str]:
    """Which of ``trip_ids`` are not trips (to name them in the error)."""
    try:
        async with engine.connect() as conn:
            found = set(
                (await conn.execute(select(Trip.id).where(Trip.id.in_(trip_ids)))).scalars()
            )
    except SQLAlchemyError:
        return []
    return sorted(trip_ids - found)


_FIX_COLUMNS = tuple(Fix.__table__.c[name] for name in COLUMNS)


def _track_query(
    trip_id: str, since: datetime | None, until: datetime | None, limit: int
) -> Select[Any]:
    query = select(*_FIX_COLUMNS).where(Fix.trip_id == trip_id)
    if since is not None:
        query = query.where(Fix.t >= since)
    if until is not None:
        query = query.where(Fix.t < until)
    # Device time, not arrival order: a fix that arrived late takes its place in the
    # track. seq and id only break ties between fixes taken at the same instant.
    return query.order_by(Fix.t, Fix.seq, Fix.id).limit(limit)


async def track(
    db: AsyncEngine | AsyncSession,
    trip_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 10_000,
) -> list[FixRow]:
    """A trip's stored fixes with ``since <= t < until``, in device-time order.

    At most ``limit`` fixes (1 to 100,000): the earliest ones of the window.
    Out-of-order arrivals come back where their device time puts them. An unknown
    trip has no fixes. ``db`` is an engine (a connection of its own) or the caller's
    session (its connection: a request must not hold one connection and wait for
    another, or concurrent requests starve the pool).
    """
    if not 1 <= limit <= TRACK_LIMIT_MAX:
        raise ValueError(f"limit must be between 1 and {TRACK_LIMIT_MAX}")
    query = _track_query(trip_id, since, until, limit)
    if isinstance(db, AsyncSession):
        return [FixRow(*row) for row in await db.execute(query)]
    async with db.connect() as conn:
        result = await conn.execute(query)
        return [FixRow(*row) for row in result]


async def mark_evidence(engine: AsyncEngine, trip_id: str, start: datetime, end: datetime) -> int:
    """Keep a trip's fixes with ``start <= t <= end`` (device time) as evidence.

    Retention never purges them. Returns how many of the trip's fixes lie in the
    window (all of them now evidence); marking the same window again is harmless.
    """
    if end < start:
        raise ValueError("end is before start")
    stmt = (
        update(Fix)
        .where(Fix.trip_id == trip_id, Fix.t >= start, Fix.t <= end)
        .values(evidence=True)
    )
    async with engine.begin() as conn:
        result = await conn.execute(stmt)
    return int(result.rowcount)
