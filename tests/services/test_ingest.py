"""The path of a fix through :func:`sigueme.services.ingest.ingest`, on both backends:
evaluated by the trip's monitor, stored with its verdict, resends idempotent, late fixes
harmless, one trip's fixes evaluated one at a time even when calls race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sigueme.errors import Conflict, Invalid, NotFound
from sigueme.geo import EventKind, Fix, MonitorState, Route, TripMonitor, TripPlan
from sigueme.replay import parse_route, parse_trace
from sigueme.services.ingest import (
    MAX_BATCH,
    IncomingFix,
    InvalidFix,
    ingest,
)
from sigueme.store import trips as store
from sigueme.store.db import sessionmaker
from sigueme.store.fixes import track
from sigueme.store.models import Fix as FixModel
from sigueme.store.models import Role, Trip
from sigueme.store.users import add_user

# About 3.1 km through Cuernavaca, Morelos, [lon, lat].
ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100], [-99.2100, 18.9050]]
DEPARTURE = datetime(2026, 5, 28, 14, tzinfo=UTC)


@dataclass
class Setup:
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    owner_id: int

    async def file(self, plan: TripPlan | None = None) -> str:
        if plan is None:
            start = DEPARTURE.timestamp()
            plan = TripPlan(route=Route(ROUTE), departure=start, arrival=start + 1800)
        async with self.sessions() as session:
            trip = await store.create_trip(
                session, owner_id=self.owner_id, plan=plan, overrides={}, label="t"
            )
            await session.commit()
            return trip.id

    async def trip(self, trip_id: str) -> Trip:
        async with self.sessions() as session:
            trip = await session.get(Trip, trip_id)
            assert trip is not None
            return trip

    async def stored(self, trip_id: str) -> int:
        async with self.sessions() as session:
            n = await session.scalar(
                select(func.count()).select_from(FixModel).where(FixModel.trip_id == trip_id)
            )
            return int(n or 0)


@pytest_asyncio.fixture(loop_scope="session")
async def setup(engine: AsyncEngine) -> AsyncIterator[Setup]:
    sessions = sessionmaker(engine)
    async with sessions() as session:
        user, _ = await add_user(session, "ana", Role.TRAVELLER)
        await session.commit()
    yield Setup(sessions, engine, user.id)


def along(i: int, seq: int | None = None, **changes: Any) -> IncomingFix:
    """Fix number ``i`` along :data:`ROUTE`, 10 s apart from departure, about 25 m
    further each time (on the first leg, which is about 900 m long)."""
    (lon0, lat0), (lon1, lat1) = ROUTE[0], ROUTE[1]
    f = min(i * 0.028, 1.0)
    fields: dict[str, Any] = {
        "seq": i if seq is None else seq,
        "t": DEPARTURE.timestamp() + 10 * i,
        "lat": lat0 + f * (lat1 - lat0),
        "lon": lon0 + f * (lon1 - lon0),
        "accuracy": 8.0,
        "speed": 2.5,
        "battery": 90.0,
    }
    fields.update(changes)
    return IncomingFix(**fields)


def at(i: int) -> datetime:
    """When fix ``i`` reaches the server: 2 s after it was taken."""
    return DEPARTURE + timedelta(seconds=10 * i + 2)


async def test_fixes_are_evaluated_stored_and_move_the_trip(setup: Setup) -> None:
    trip_id = await setup.file()
    fixes = [along(i) for i in range(5)]

    result = await ingest(setup.sessions, trip_id, fixes, received_at=at(4))

    assert [o.seq for o in result.outcomes] == [0, 1, 2, 3, 4]
    assert all(o.stored and not o.duplicate for o in result.outcomes)
    assert [o.verdict for o in result.outcomes] == ["accepted"] * 5
    # The same answers as the monitor on its own.
    start = DEPARTURE.timestamp()
    monitor = TripMonitor(TripPlan(route=Route(ROUTE), departure=start, arrival=start + 1800))
    expected = [
        monitor.update(
            Fix(f.t, f.lat, f.lon, f.accuracy, f.speed, None, f.battery), at(4).timestamp()
        )
        for f in fixes
    ]
    rows = await track(setup.engine, trip_id)
    assert [r.seq for r in rows] == [0, 1, 2, 3, 4]
    assert [r.verdict for r in rows] == ["accepted"] * 5
    assert [r.distance_m for r in rows] == pytest.approx([e.distance_m for e in expected])
    assert [r.progress_m for r in rows] == pytest.approx([e.progress_m for e in expected])
    assert all(r.received_at == at(4) for r in rows)
    assert rows[2].battery == 90.0
    assert rows[2].accuracy == 8.0

    trip = await setup.trip(trip_id)
    assert trip.route_status == "on_route" == result.status.route_status
    assert trip.last_fix_at == datetime.fromtimestamp(fixes[-1].t, UTC)
    assert (trip.last_lon, trip.last_lat) == (fixes[-1].lon, fixes[-1].lat)
    assert trip.progress_m == pytest.approx(expected[-1].progress_m)
    assert MonitorState.from_dict(trip.monitor_state) == monitor.state
    status = result.status
    assert status.trip_id == trip_id
    assert status.progress_m == pytest.approx(expected[-1].progress_m)
    assert status.progress_fraction == pytest.approx(expected[-1].progress_fraction, abs=1e-3)
    assert status.predicted_arrival is not None
    assert status.predicted_arrival.timestamp() == pytest.approx(expected[-1].predicted_arrival)
    assert status.delay_s == pytest.approx(expected[-1].delay_s)


async def test_a_resend_is_reported_duplicate_and_not_evaluated_again(setup: Setup) -> None:
    trip_id = await setup.file()
    await ingest(setup.sessions, trip_id, [along(i) for i in range(3)], received_at=at(2))
    state_before = (await setup.trip(trip_id)).monitor_state

    # 1 and 2 again (the ack was lost), 3 new, and 3 repeated within the call.
    result = await ingest(
        setup.sessions, trip_id, [along(1), along(2), along(3), along(3)], received_at=at(3)
    )

    assert [(o.seq, o.stored, o.duplicate) for o in result.outcomes] == [
        (1, False, True),
        (2, False, True),
        (3, True, False),
        (3, False, True),
    ]
    assert [o.verdict for o in result.outcomes] == [None, None, "accepted", None]
    assert await setup.stored(trip_id) == 4
    state = MonitorState.from_dict((await setup.trip(trip_id)).monitor_state)
    assert state.fixes == MonitorState.from_dict(state_before).fixes + 1

    # A resend of only duplicates changes nothing and still answers the status.
    again = await ingest(setup.sessions, trip_id, [along(0)], received_at=at(4))
    assert again.outcomes[0].duplicate
    assert again.status.route_status == "on_route"
    assert (await setup.trip(trip_id)).monitor_state == state.to_dict()


async def test_fixes_without_seq_are_always_stored(setup: Setup) -> None:
    trip_id = await setup.file()
    fixes = [along(i) for i in range(2)]
    unnumbered = [IncomingFix(None, f.t, f.lat, f.lon) for f in fixes]
    result = await ingest(setup.sessions, trip_id, unnumbered, received_at=at(2))
    again = await ingest(setup.sessions, trip_id, unnumbered, received_at=at(3))
    assert all(o.stored for o in (*result.outcomes, *again.outcomes))
    assert await setup.stored(trip_id) == 4
    # Evaluated again, the filter sees them for what they are.
    assert [o.verdict for o in again.outcomes] == ["out_of_order", "duplicate"]


async def test_a_late_fix_is_stored_in_time_order_and_moves_nothing(setup: Setup) -> None:
    trip_id = await setup.file()
    await ingest(setup.sessions, trip_id, [along(i) for i in (0, 1, 2, 4)], received_at=at(4))
    before = await setup.trip(trip_id)

    result = await ingest(setup.sessions, trip_id, [along(3)], received_at=at(5))

    [outcome] = result.outcomes
    assert outcome.stored
    assert outcome.verdict == "out_of_order"
    assert outcome.events == ()
    after = await setup.trip(trip_id)
    assert (after.last_fix_at, after.last_lon, after.last_lat) == (
        before.last_fix_at,
        before.last_lon,
        before.last_lat,
    )
    assert after.progress_m == before.progress_m
    assert [r.seq for r in await track(setup.engine, trip_id)] == [0, 1, 2, 3, 4]


async def test_a_late_fix_far_off_route_raises_no_alert(setup: Setup) -> None:
    trip_id = await setup.file()
    await ingest(setup.sessions, trip_id, [along(i) for i in range(10, 20)], received_at=at(19))
    # A buffered stretch from earlier that was off route: stale, it raises nothing.
    late = [along(i, lon=along(i).lon + 0.01) for i in range(0, 8)]
    result = await ingest(setup.sessions, trip_id, late, received_at=at(20))
    assert all(o.verdict == "out_of_order" and o.events == () for o in result.outcomes)
    assert result.status.route_status == "on_route"


async def test_a_detour_raises_off_route_at_the_fix_the_monitor_says(setup: Setup) -> None:
    samples = resources.files("sigueme.replay").joinpath("samples")
    route = parse_route(samples.joinpath("cuernavaca_route.geojson").read_text("utf-8"))
    trace = parse_trace(samples.joinpath("cuernavaca_detour.csv").read_text("utf-8"))
    start = trace[0].t
    plan = TripPlan(route=route, departure=start, arrival=start + 25 * 60)
    trip_id = await setup.file(plan)
    monitor = TripMonitor(plan)
    expected = {
        i: tuple(e.kind.value for e in monitor.update(f, f.t + 1).events)
        for i, f in enumerate(trace)
    }

    events: dict[int, tuple[str, ...]] = {}
    # As a phone streams it: mostly one fix a call, sometimes a few buffered ones.
    i = 0
    while i < len(trace):
        n = 1 if i % 7 else 4
        chunk = trace[i : i + n]
        incoming = [
            IncomingFix(i + k, f.t, f.lat, f.lon, f.accuracy, f.speed, f.heading, f.battery)
            for k, f in enumerate(chunk)
        ]
        result = await ingest(
            setup.sessions,
            trip_id,
            incoming,
            received_at=datetime.fromtimestamp(chunk[-1].t + 1, UTC),
        )
        for o in result.outcomes:
            assert o.seq is not None
            if o.events:
                events[o.seq] = o.events
        i += n

    assert events == {i: e for i, e in expected.items() if e}
    off = [i for i, e in events.items() if EventKind.OFF_ROUTE.value in e]
    assert len(off) == 1
    assert datetime.fromtimestamp(trace[off[0]].t, UTC) == datetime(
        2024, 5, 28, 14, 6, 15, tzinfo=UTC
    )
    trip = await setup.trip(trip_id)
    assert trip.route_status == "arrived"
    assert await setup.stored(trip_id) == len(trace)


@pytest.mark.parametrize("calls", [8])
async def test_concurrent_calls_for_one_trip_are_evaluated_one_at_a_time(
    setup: Setup, calls: int
) -> None:
    trip_id = await setup.file()
    per_call = 5
    batches = [[along(c * per_call + k) for k in range(per_call)] for c in range(calls)]

    results = await asyncio.gather(
        *(ingest(setup.sessions, trip_id, b, received_at=at(100)) for b in batches)
    )

    outcomes = [o for r in results for o in r.outcomes]
    assert all(o.stored for o in outcomes)
    assert await setup.stored(trip_id) == calls * per_call
    # Every fix was evaluated against the state the previous call left: the state
    # counts every fix any call accepted (a lost update would forget a call's).
    state = MonitorState.from_dict((await setup.trip(trip_id)).monitor_state)
    accepted = sum(o.verdict == "accepted" for o in outcomes)
    assert state.fixes == accepted
    assert accepted >= per_call


async def test_concurrent_resends_store_each_fix_once(setup: Setup) -> None:
    trip_id = await setup.file()
    batch = [along(i) for i in range(6)]
    results = await asyncio.gather(
        *(ingest(setup.sessions, trip_id, batch, received_at=at(6)) for _ in range(4))
    )
    stored = sorted(o.seq for r in results for o in r.outcomes if o.stored if o.seq is not None)
    assert stored == list(range(6))
    assert await setup.stored(trip_id) == 6
    assert MonitorState.from_dict((await setup.trip(trip_id)).monitor_state).fixes == 6


@pytest.mark.parametrize("how", [store.Ending.FINISH, store.Ending.CANCEL])
async def test_an_ended_trip_takes_no_fixes(setup: Setup, how: store.Ending) -> None:
    trip_id = await setup.file()
    async with setup.sessions() as session:
        trip = await session.get(Trip, trip_id)
        assert trip is not None
        await store.end_trip(session, trip, how, DEPARTURE)
        await session.commit()
    with pytest.raises(Conflict):
        await ingest(setup.sessions, trip_id, [along(0)], received_at=at(0))
    assert await setup.stored(trip_id) == 0


async def test_an_unknown_trip_is_not_found(setup: Setup) -> None:
    with pytest.raises(NotFound):
        await ingest(setup.sessions, "no-such-trip", [along(0)], received_at=at(0))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lat": float("nan")}, "lat"),
        ({"lat": 91.0}, "lat"),
        ({"lon": -181.0}, "lon"),
        ({"lat": 0.0, "lon": 0.0}, "lat"),
        ({"t": 0.0}, "t"),
        ({"t": float("inf")}, "t"),
        ({"speed": -1.0}, "speed"),
        ({"battery": 101.0}, "battery"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**63}, "seq"),
    ],
)
async def test_a_bad_fix_refuses_the_whole_call(
    setup: Setup, changes: dict[str, Any], field: str
) -> None:
    trip_id = await setup.file()
    fixes = [along(0), along(1, **changes), along(2)]
    with pytest.raises(InvalidFix) as caught:
        await ingest(setup.sessions, trip_id, fixes, received_at=at(2))
    assert caught.value.field == field
    assert caught.value.index == 1
    assert await setup.stored(trip_id) == 0
    assert (await setup.trip(trip_id)).monitor_state == {}


async def test_a_batch_is_bounded(setup: Setup) -> None:
    trip_id = await setup.file()
    too_many = [along(i % 50, seq=i) for i in range(MAX_BATCH + 1)]
    with pytest.raises(Invalid) as caught:
        await ingest(setup.sessions, trip_id, too_many, received_at=at(50))
    assert caught.value.field == "fixes"
    assert await setup.stored(trip_id) == 0
    full = await ingest(setup.sessions, trip_id, too_many[:MAX_BATCH], received_at=at(50))
    assert len(full.outcomes) == MAX_BATCH


async def test_received_at_must_be_aware(setup: Setup) -> None:
    trip_id = await setup.file()
    with pytest.raises(ValueError, match="naive"):
        await ingest(setup.sessions, trip_id, [along(0)], received_at=datetime(2026, 5, 28))
