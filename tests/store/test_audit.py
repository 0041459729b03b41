"""The audit log in the store: a read's row says who (user or share link), which trip,
when and what; listing trips, which carries no positions, writes none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import shapely
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sigueme.access import Principal, Scope
from sigueme.geo import Route, TripPlan
from sigueme.store import trips as store
from sigueme.store.audit import ReadAction, reads_of, record_read
from sigueme.store.db import sessionmaker
from sigueme.store.models import AuditLog, Role, Trip, User

ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100]]


async def _trip(session: AsyncSession, name: str) -> tuple[User, Trip]:
    user = User(name=name, role=Role.TRAVELLER.value)
    session.add(user)
    await session.flush()
    departure = datetime(2026, 5, 28, 14, tzinfo=UTC).timestamp()
    plan = TripPlan(route=Route(ROUTE), departure=departure, arrival=departure + 1800)
    trip = await store.create_trip(
        session, owner_id=user.id, plan=plan, overrides={}, label=f"de {name}"
    )
    return user, trip


async def _audit_rows(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(AuditLog)) or 0)


async def test_a_read_records_who_which_trip_when_and_what(engine: AsyncEngine) -> None:
    async with sessionmaker(engine)() as session:
        ana, trip = await _trip(session, "ana")
        _, other = await _trip(session, "beto")
        now = datetime.now(UTC)
        share, _ = await store.create_link(
            session, trip, by=ana.id, expires_at=now + timedelta(hours=1), label="mamá", now=now
        )
        reader = Principal(user_id=ana.id, role=Role.TRAVELLER, name="ana")
        link = Principal(
            user_id=None, role=None, name="mamá", share_id=share.id, share_trip_id=trip.id
        )
        before = datetime.now(UTC)

        await record_read(session, reader, trip.id, ReadAction.TRIP)
        await record_read(session, link, trip.id, ReadAction.TRACK)
        await session.commit()
        after = datetime.now(UTC)

    async with sessionmaker(engine)() as session:
        rows = await reads_of(session, trip.id)
        assert [(r.user_id, r.share_id, r.trip_id, r.action) for r in rows] == [
            (ana.id, None, trip.id, "trip.read"),
            (None, share.id, trip.id, "trip.track"),
        ]
        assert all(before <= r.at <= after for r in rows)
        assert all(r.at.tzinfo is not None for r in rows)
        assert await reads_of(session, other.id) == []


async def test_an_explicit_time_is_kept(engine: AsyncEngine) -> None:
    at = datetime(2026, 5, 28, 14, 3, 7, tzinfo=UTC)
    async with sessionmaker(engine)() as session:
        ana, trip = await _trip(session, "ana")
        principal = Principal(user_id=ana.id, role=Role.TRAVELLER, name="ana")

        await record_read(session, principal, trip.id, "trip.read", at=at)
        await session.commit()

        assert [r.at for r in await reads_of(session, trip.id)] == [at]


async def test_listing_trips_writes_no_audit_row(engine: AsyncEngine) -> None:
    async with sessionmaker(engine)() as session:
        ana, trip = await _trip(session, "ana")
        await session.commit()
        principal = Principal(user_id=ana.id, role=Role.TRAVELLER, name="ana")

        listed = await store.list_trips(session, principal, Scope.MINE, datetime.now(UTC))

        assert [t.id for t in listed] == [trip.id]
        assert await _audit_rows(session) == 0


async def test_the_stored_trip_keeps_the_plan(engine: AsyncEngine) -> None:
    """What the audit protects is what the store keeps: route, corridor and bbox."""
    async with sessionmaker(engine)() as session:
        _, trip = await _trip(session, "ana")
        await session.commit()
        trip_id = trip.id
    async with sessionmaker(engine)() as session:
        stored = await session.get(Trip, trip_id)
        assert stored is not None
        # As the geo core keeps it: the filed vertices, long segments densified.
        assert stored.route.equals_exact(shapely.LineString(Route(ROUTE).lonlat), 1e-12)
        assert stored.route.coords[0] == tuple(ROUTE[0])
        assert stored.route.coords[-1] == tuple(ROUTE[-1])
        assert stored.corridor.contains(stored.route)
        assert (stored.min_lon, stored.min_lat, stored.max_lon, stored.max_lat) == (
            stored.corridor.bounds
        )
        plan = store.plan_of(stored)
        assert plan.route.length_m == trip.route_length_m
        assert plan.arrival - plan.departure == 1800
