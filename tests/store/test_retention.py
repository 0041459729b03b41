"""Retention on both backends: location history past its period is deleted, alert
evidence is kept however old, and the background task keeps going and stops on time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.bench.store import seed_trips
from sigueme.settings import Settings
from sigueme.store.db import make_engine, sessionmaker, upgrade_async
from sigueme.store.fixes import FixRow, append_fixes, mark_evidence, track
from sigueme.store.models import Trip, TripStatus
from sigueme.store.retention import purge, purge_forever

NOW = datetime.now(UTC)
CUTOFF = NOW - timedelta(days=30)


def received(days_ago: float, trip: str, seq: int) -> FixRow:
    """A fix received ``days_ago`` days ago, taken a few seconds before that."""
    at = NOW - timedelta(days=days_ago)
    return FixRow(trip, seq, at - timedelta(seconds=3), at, -99.23, 18.92)


async def seqs(engine: AsyncEngine, trip: str) -> list[int | None]:
    return [r.seq for r in await track(engine, trip, limit=100_000)]


async def test_old_fixes_are_purged_and_recent_ones_kept(engine: AsyncEngine) -> None:
    a, b = await seed_trips(engine, 2)
    await append_fixes(
        engine,
        [
            *(received(days, a, seq) for seq, days in enumerate([40, 31, 29, 0], start=1)),
            *(received(days, b, seq) for seq, days in enumerate([365, 1], start=1)),
        ],
    )

    result = await purge(engine, CUTOFF)

    assert (result.purged, result.evidence_kept, result.complete) == (3, 0, True)
    assert await seqs(engine, a) == [3, 4]
    assert await seqs(engine, b) == [2]


async def test_evidence_is_kept_however_old(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [received(400 - s, trip, s) for s in range(5)]  # 400 ... 396 days old
    await append_fixes(engine, rows)
    await mark_evidence(engine, trip, rows[1].t, rows[2].t)  # an alert kept two of them

    result = await purge(engine, CUTOFF)

    assert (result.purged, result.evidence_kept) == (3, 2)
    assert await seqs(engine, trip) == [1, 2]
    assert (await purge(engine, NOW)).purged == 0  # and on every later run


async def test_a_big_purge_goes_in_chunks(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    await append_fixes(engine, [received(60, trip, s) for s in range(250)])
    await append_fixes(engine, [received(2, trip, s) for s in range(250, 260)])

    result = await purge(engine, CUTOFF, chunk_size=100)

    assert (result.purged, result.chunks) == (250, 3)
    assert await seqs(engine, trip) == list(range(250, 260))


async def test_a_dry_run_counts_and_deletes_nothing(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [received(50, trip, 1), received(45, trip, 2), received(40, trip, 3)]
    await append_fixes(engine, [*rows, received(1, trip, 4)])
    await mark_evidence(engine, trip, rows[2].t, rows[2].t)

    result = await purge(engine, CUTOFF, dry_run=True)

    assert (result.purged, result.evidence_kept, result.dry_run) == (2, 1, True)
    assert await seqs(engine, trip) == [1, 2, 3, 4]


async def test_a_purge_told_to_stop_stops_between_chunks(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    await append_fixes(engine, [received(60, trip, s) for s in range(30)])
    stop = asyncio.Event()
    stop.set()

    result = await purge(engine, CUTOFF, chunk_size=10, stop=stop)

    assert (result.purged, result.complete) == (0, False)
    assert len(await seqs(engine, trip)) == 30


async def wait_until(condition: Callable[[], Awaitable[bool]], polls: int = 1000) -> None:
    """Poll ``condition`` every 20 ms, at most ``polls`` times (20 s by default)."""
    for _ in range(polls):
        if await condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail("the condition never came true")


async def test_purge_forever_purges_and_stops_when_told(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sigueme.store.retention")
    [trip] = await seed_trips(engine, 1)
    await append_fixes(engine, [received(40, trip, 1), received(1, trip, 2)])
    settings = Settings(retention_days=30, purge_interval_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(purge_forever(engine, settings, stop))
    try:
        await wait_until(lambda: _has_seqs(engine, trip, [2]))
        # Fixes that age past retention while it runs go at a later run.
        await append_fixes(engine, [received(35, trip, 3)])
        await wait_until(lambda: _has_seqs(engine, trip, [2]))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)  # promptly: no waiting out the interval

    assert task.done()
    assert task.exception() is None
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("retention: purged 1 fixes") for m in logged)
    assert all(trip not in m and "-99.23" not in m for m in logged)  # counts only


async def _has_seqs(engine: AsyncEngine, trip: str, expected: list[int]) -> bool:
    return await seqs(engine, trip) == expected


async def test_purge_forever_survives_a_failing_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sigueme.store.retention")
    url = f"sqlite+aiosqlite:///{tmp_path / 'late.db'}"
    engine = make_engine(url)  # no tables yet: every purge fails
    stop = asyncio.Event()
    settings = Settings(retention_days=30, purge_interval_s=0.05)
    task = asyncio.create_task(purge_forever(engine, settings, stop))
    try:
        await wait_until(lambda: _errors_logged(caplog, 2))
        assert not task.done()
        await upgrade_async(url)  # the database comes good: the next run works
        await wait_until(lambda: _logged(caplog, "retention: purged 0 fixes"))
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await engine.dispose()
    assert "purge failed" in caplog.text


async def _errors_logged(caplog: pytest.LogCaptureFixture, n: int) -> bool:
    return sum(r.levelno == logging.ERROR for r in caplog.records) >= n


async def _logged(caplog: pytest.LogCaptureFixture, prefix: str) -> bool:
    return any(r.getMessage().startswith(prefix) for r in caplog.records)


async def test_an_ended_trips_last_position_is_forgotten_with_its_history(
    engine: AsyncEngine,
) -> None:
    """The trip row repeats its last fix; past retention that goes too, unless the trip
    is still active (the watchdog needs it) or an alert keeps the trip's evidence."""
    ended, active, kept = await seed_trips(engine, 3)
    last = NOW - timedelta(days=40)
    sessions = sessionmaker(engine)
    async with sessions() as session:
        for trip_id in (ended, active, kept):
            trip = await session.get(Trip, trip_id)
            assert trip is not None
            trip.last_fix_at, trip.last_lon, trip.last_lat = last, -99.23, 18.92
            trip.last_accuracy, trip.last_battery = 8.0, 50.0
            if trip_id != active:
                trip.status = TripStatus.FINISHED.value
        await session.commit()
    rows = [received(40, kept, 1)]
    await append_fixes(engine, rows)
    await mark_evidence(engine, kept, rows[0].t, rows[0].t)

    result = await purge(engine, CUTOFF)

    assert result.positions_cleared == 1
    async with sessions() as session:
        positions = {
            t.id: (t.last_lon, t.last_lat, t.last_accuracy, t.last_battery)
            for t in (await session.execute(select(Trip))).scalars()
        }
    assert positions[ended] == (None, None, None, None)
    assert positions[active] == (-99.23, 18.92, 8.0, 50.0)
    assert positions[kept] == (-99.23, 18.92, 8.0, 50.0)
