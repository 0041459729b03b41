"""Fix appends and reads on both backends: what was acknowledged is stored, resends are
idempotent, the track comes back in device-time order."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.bench.store import seed_trips
from sigueme.store.fixes import (
    AppendError,
    AppendResult,
    FixRow,
    UnknownTrip,
    append_fixes,
    mark_evidence,
    track,
)
from sigueme.store.models import Fix

T0 = datetime(2026, 5, 28, 14, 0, tzinfo=UTC)
RECEIVED = datetime(2026, 5, 28, 14, 30, tzinfo=UTC)


def fix(trip: str, seq: int | None, second: float, **columns: Any) -> FixRow:
    """A fix of ``trip`` taken ``second`` seconds after T0, somewhere in Cuernavaca."""
    return FixRow(
        trip,
        seq,
        T0 + timedelta(seconds=second),
        RECEIVED,
        -99.234 + second * 1e-5,
        18.921 + second * 5e-6,
        **columns,
    )


async def count_fixes(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Fix))).scalar_one())


async def test_a_batch_is_stored_and_read_back_in_device_time_order(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [
        fix(trip, seq, float(seq * 5), accuracy=8.5, speed=11.0, heading=90.0, battery=77.0)
        for seq in range(20)
    ]
    rows[5] = fix(
        trip,
        5,
        25.0,
        accuracy=4.0,
        speed=0.0,
        heading=None,
        battery=50.0,
        verdict="accepted",
        distance_m=12.5,
        progress_m=300.25,
    )
    shuffled = random.Random(3).sample(rows, len(rows))  # arrival order is not time order

    result = await append_fixes(engine, shuffled)

    assert result == AppendResult(stored=20, duplicates=0, batches=1)
    got = await track(engine, trip)
    assert got == rows  # every column, in device-time order
    assert all(r.t.tzinfo is not None and r.t.utcoffset() == timedelta(0) for r in got)


async def test_a_late_fix_takes_its_place_in_the_track(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    await append_fixes(engine, [fix(trip, 1, 0), fix(trip, 3, 10)])
    await append_fixes(engine, [fix(trip, 2, 5)])  # arrives last, taken in between

    assert [r.seq for r in await track(engine, trip)] == [1, 2, 3]


async def test_a_resent_batch_stores_nothing_new_and_reports_duplicates(
    engine: AsyncEngine,
) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [fix(trip, seq, seq) for seq in range(10)]
    await append_fixes(engine, rows)

    again = await append_fixes(engine, rows)

    assert again == AppendResult(stored=0, duplicates=10, batches=1)
    assert len(await track(engine, trip)) == 10


async def test_a_resend_keeps_the_first_stored_values(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    await append_fixes(engine, [fix(trip, 1, 0, battery=80.0)])
    # Same (trip, seq): a resend, whatever it carries now.
    result = await append_fixes(engine, [fix(trip, 1, 0, battery=10.0)])

    assert result.duplicates == 1
    assert [r.battery for r in await track(engine, trip)] == [80.0]


async def test_new_and_resent_fixes_mixed_in_one_batch(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    await append_fixes(engine, [fix(trip, seq, seq) for seq in range(0, 10, 2)])  # even

    result = await append_fixes(engine, [fix(trip, seq, seq) for seq in range(10)])

    assert result == AppendResult(stored=5, duplicates=5, batches=1)
    assert [r.seq for r in await track(engine, trip)] == list(range(10))


async def test_a_fix_repeated_within_one_batch_is_stored_once(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    result = await append_fixes(engine, [fix(trip, 1, 0), fix(trip, 2, 5), fix(trip, 1, 0)])

    assert result == AppendResult(stored=2, duplicates=1, batches=1)
    assert [r.seq for r in await track(engine, trip)] == [1, 2]


async def test_the_same_seq_on_another_trip_is_not_a_duplicate(engine: AsyncEngine) -> None:
    a, b = await seed_trips(engine, 2)
    result = await append_fixes(engine, [fix(a, 1, 0), fix(b, 1, 0)])

    assert result.stored == 2
    assert len(await track(engine, a)) == len(await track(engine, b)) == 1


async def test_fixes_without_seq_are_always_stored(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [fix(trip, None, 0), fix(trip, None, 5)]

    first = await append_fixes(engine, rows)
    second = await append_fixes(engine, rows)

    assert first.stored == second.stored == 2
    assert second.duplicates == 0
    assert [r.seq for r in await track(engine, trip)] == [None, None, None, None]


async def test_a_batch_for_a_trip_that_does_not_exist_stores_nothing(
    engine: AsyncEngine,
) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [fix(trip, 1, 0), fix("no-such-trip", 1, 0), fix(trip, 2, 5)]

    with pytest.raises(UnknownTrip) as caught:
        await append_fixes(engine, rows)

    assert caught.value.trip_ids == ("no-such-trip",)
    assert caught.value.committed == AppendResult()
    assert await track(engine, trip) == []  # the good rows of the batch went too
    # The engine is still usable afterwards (the connection went back clean).
    assert (await append_fixes(engine, [fix(trip, 1, 0)])).stored == 1


async def test_big_input_is_written_in_batches_in_order(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [fix(trip, seq, seq) for seq in range(350)]

    result = await append_fixes(engine, rows, batch_max=100)

    assert result == AppendResult(stored=350, duplicates=0, batches=4)
    assert [r.seq for r in await track(engine, trip)] == list(range(350))


async def test_a_failed_batch_reports_what_earlier_batches_stored(engine: AsyncEngine) -> None:
    [trip] = await seed_trips(engine, 1)
    rows = [fix(trip, seq, seq) for seq in range(250)]
    rows[230] = fix("gone", 230, 230)  # in the third batch of 100

    with pytest.raises(UnknownTrip) as caught:
        await append_fixes(engine, rows, batch_max=100)

    committed = caught.value.committed
    assert isinstance(caught.value, AppendError)
    assert (committed.rows, committed.stored, committed.batches) == (200, 200, 2)
    # Exactly the first committed.rows rows are stored: acknowledge those, resend the rest.
    assert [r.seq for r in await track(engine, trip)] == list(range(200))


async def test_concurrent_writers_lose_no_fixes(engine: AsyncEngine) -> None:
    trips = await seed_trips(engine, 4)
    # Every trip's fixes go through one writer; on top of that, each batch is resent
    # by a second writer at the same time (a phone that retried on another worker).
    batches = [
        [fix(trip, seq, seq) for seq in range(start, start + 50)]
        for trip in trips
        for start in range(0, 200, 50)
    ]
    results = await asyncio.gather(
        *(append_fixes(engine, b, batch_max=25) for b in batches + batches[::-1])
    )

    assert sum(r.stored for r in results) == 4 * 200
    assert sum(r.duplicates for r in results) == 4 * 200
    assert await count_fixes(engine) == 800
    for trip in trips:
        assert [r.seq for r in await track(engine, trip)] == list(range(200))


async def test_track_window_and_limit(engine: AsyncEngine) -> None:
    a, b = await seed_trips(engine, 2)
    await append_fixes(engine, [fix(a, s, s * 10) for s in range(10)] + [fix(b, 1, 15)])

    window = await track(
        engine, a, since=T0 + timedelta(seconds=20), until=T0 + timedelta(seconds=60)
    )
    assert [r.seq for r in window] == [2, 3, 4, 5]  # since included, until excluded
    assert [r.seq for r in await track(engine, a, limit=3)] == [0, 1, 2]
    assert await track(engine, "no-such-trip") == []
    with pytest.raises(ValueError, match="limit"):
        await track(engine, a, limit=0)


async def test_mark_evidence_keeps_a_window_of_one_trip(engine: AsyncEngine) -> None:
    a, b = await seed_trips(engine, 2)
    await append_fixes(engine, [fix(a, s, s * 10) for s in range(6)] + [fix(b, 1, 20)])

    marked = await mark_evidence(engine, a, T0 + timedelta(seconds=10), T0 + timedelta(seconds=30))

    assert marked == 3  # 10, 20, 30 s: both ends included
    assert [r.evidence for r in await track(engine, a)] == [False, True, True, True, False, False]
    assert [r.evidence for r in await track(engine, b)] == [False]
    again = await mark_evidence(engine, a, T0 + timedelta(seconds=10), T0 + timedelta(seconds=30))
    assert again == 3


def test_fix_rows_hold_utc_times() -> None:
    mexico = timezone(timedelta(hours=-6))
    row = FixRow("t", 1, datetime(2026, 5, 28, 8, tzinfo=mexico), RECEIVED, -99.2, 18.9)
    assert row.t == datetime(2026, 5, 28, 14, tzinfo=UTC)
    assert row.t.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        FixRow("t", 1, datetime(2026, 5, 28, 8), RECEIVED, -99.2, 18.9)
