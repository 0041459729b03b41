"""Group commit (:class:`~sigueme.services.batcher.IngestBatcher`), on both backends:
many phones' calls share transactions, and each phone still gets exactly the answer
:func:`ingest` alone would have given; a refused call fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sigueme.errors import Conflict, NotFound
from sigueme.geo import Route, TripPlan
from sigueme.services.batcher import IngestBatcher
from sigueme.services.ingest import IncomingFix, InvalidFix, ingest
from sigueme.store import trips as store
from sigueme.store.db import sessionmaker
from sigueme.store.models import Fix as FixModel
from sigueme.store.models import Role, Trip, utcnow
from sigueme.store.users import add_user

ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100], [-99.2100, 18.9050]]
T0 = datetime(2026, 5, 28, 14, tzinfo=UTC)


@pytest_asyncio.fixture(loop_scope="session")
async def sessions(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    yield sessionmaker(engine)


async def _trips(sessions: async_sessionmaker[AsyncSession], n: int) -> list[str]:
    plan = TripPlan(route=Route(ROUTE), departure=T0.timestamp(), arrival=T0.timestamp() + 1800)
    async with sessions() as session:
        user, _ = await add_user(session, "ana", Role.TRAVELLER)
        trips = [
            await store.create_trip(session, owner_id=user.id, plan=plan, overrides={}, label=None)
            for _ in range(n)
        ]
        await session.commit()
        return [t.id for t in trips]


def _fix(i: int, *, off: float = 0.0) -> IncomingFix:
    (lon0, lat0), (lon1, lat1) = ROUTE[0], ROUTE[1]
    f = min(i * 0.028, 1.0)
    return IncomingFix(
        i,
        T0.timestamp() + 10 * i,
        lat0 + f * (lat1 - lat0) + off,
        lon0 + f * (lon1 - lon0),
        8.0,
        2.5,
        None,
        90.0,
    )


async def test_concurrent_phones_share_commits_and_get_their_own_answers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    trips = await _trips(sessions, 12)
    batcher = IngestBatcher(sessions)
    rounds = 6
    results = []
    for r in range(rounds):
        received = T0 + timedelta(seconds=10 * r + 2)
        results.append(
            await asyncio.gather(
                *(batcher.ingest(trip_id, [_fix(r)], received_at=received) for trip_id in trips)
            )
        )
    assert batcher.calls == rounds * len(trips)
    assert batcher.batches < batcher.calls  # calls waited for a batch and went together
    for r, answers in enumerate(results):
        for trip_id, answer in zip(trips, answers, strict=True):
            assert answer.status.trip_id == trip_id
            assert [(o.seq, o.stored, o.verdict) for o in answer.outcomes] == [
                (r, True, "accepted")
            ]
    # Exactly what one phone alone gets from ingest(), on a trip of its own.
    [alone] = await _trips_of_other_owner(sessions)
    for r in range(rounds):
        last = await ingest(
            sessions, alone, [_fix(r)], received_at=T0 + timedelta(seconds=10 * r + 2)
        )
    assert results[-1][0].status.route_status == last.status.route_status
    assert results[-1][0].status.progress_m == pytest.approx(last.status.progress_m)
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(FixModel).where(FixModel.trip_id.in_(trips))
        )
    assert stored == rounds * len(trips)


async def _trips_of_other_owner(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    plan = TripPlan(route=Route(ROUTE), departure=T0.timestamp(), arrival=T0.timestamp() + 1800)
    async with sessions() as session:
        user, _ = await add_user(session, "beto", Role.TRAVELLER)
        trip = await store.create_trip(
            session, owner_id=user.id, plan=plan, overrides={}, label=None
        )
        await session.commit()
        return [trip.id]


async def test_a_refused_call_fails_alone(sessions: async_sessionmaker[AsyncSession]) -> None:
    good, ended = await _trips(sessions, 2)
    async with sessions() as session:
        trip = await session.get(Trip, ended)
        assert trip is not None
        await store.end_trip(session, trip, store.Ending.FINISH, utcnow())
        await session.commit()
    batcher = IngestBatcher(sessions)
    received = T0 + timedelta(seconds=2)
    answers = await asyncio.gather(
        batcher.ingest(good, [_fix(0)], received_at=received),
        batcher.ingest(ended, [_fix(0)], received_at=received),
        batcher.ingest("no-such-trip", [_fix(0)], received_at=received),
        batcher.ingest(good, [_fix(1, off=float("nan"))], received_at=received),
        batcher.ingest(good, [_fix(1)], received_at=received),
        return_exceptions=True,
    )
    ok, conflict, missing, invalid, ok2 = answers
    assert not isinstance(ok, BaseException)
    assert not isinstance(ok2, BaseException)
    assert isinstance(conflict, Conflict)
    assert isinstance(missing, NotFound)
    assert isinstance(invalid, InvalidFix)
    assert invalid.field == "lat"
    assert [o.seq for o in ok2.outcomes] == [1]
    async with sessions() as session:
        seqs = (
            await session.scalars(
                select(FixModel.seq).where(FixModel.trip_id == good).order_by(FixModel.seq)
            )
        ).all()
    assert list(seqs) == [0, 1]


async def test_resends_in_one_batch_are_stored_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    [trip_id] = await _trips(sessions, 1)
    batcher = IngestBatcher(sessions)
    received = T0 + timedelta(seconds=2)
    first, again = await asyncio.gather(
        batcher.ingest(trip_id, [_fix(0), _fix(1)], received_at=received),
        batcher.ingest(trip_id, [_fix(1), _fix(2)], received_at=received),
    )
    assert [(o.seq, o.duplicate) for o in first.outcomes] == [(0, False), (1, False)]
    assert [(o.seq, o.duplicate) for o in again.outcomes] == [(1, True), (2, False)]


async def test_two_writers_give_the_same_answers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    trips = await _trips(sessions, 10)
    batcher = IngestBatcher(sessions, writers=2, max_calls=3)
    for r in range(4):
        received = T0 + timedelta(seconds=10 * r + 2)
        answers = await asyncio.gather(
            *(batcher.ingest(trip_id, [_fix(r)], received_at=received) for trip_id in trips)
        )
        assert [a.status.trip_id for a in answers] == trips
        assert all([(o.seq, o.verdict) for o in a.outcomes] == [(r, "accepted")] for a in answers)
    assert batcher.batches >= 4 * 4  # three calls a batch: several batches in flight
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(FixModel).where(FixModel.trip_id.in_(trips))
        )
    assert stored == 4 * len(trips)
