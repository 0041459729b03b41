"""The schema on both backends: migrations, the schema check, geometry round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import shapely
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.errors import SchemaOutOfDate
from sigueme.store.db import check_schema, current_revision, head_revision, make_engine
from sigueme.store.db import sessionmaker as make_sessions
from sigueme.store.models import Alert, Trip, User


async def test_fresh_database_is_at_head(engine: AsyncEngine) -> None:
    assert await current_revision(engine) == head_revision()
    await check_schema(engine)  # does not raise


async def test_an_empty_database_is_refused_with_what_to_run(
    tmp_path: pytest.TempPathFactory,
) -> None:
    eng = make_engine(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(SchemaOutOfDate, match="run `sigueme migrate`"):
            await check_schema(eng)
    finally:
        await eng.dispose()


def _trip(owner: int) -> Trip:
    route = shapely.LineString([(-99.23, 18.92), (-99.22, 18.91), (-99.20, 18.90)])
    return Trip(
        owner_id=owner,
        route=route,
        corridor=route.buffer(0.001),
        route_length_m=3000.0,
        corridor_m=150.0,
        destination_radius_m=100.0,
        departure=datetime(2026, 5, 28, 14, tzinfo=UTC),
        arrival=datetime(2026, 5, 28, 15, tzinfo=UTC),
        min_lon=-99.24,
        min_lat=18.89,
        max_lon=-99.19,
        max_lat=18.93,
    )


async def test_geometries_and_times_round_trip(engine: AsyncEngine) -> None:
    sessions = make_sessions(engine)
    async with sessions() as s:
        user = User(name="ana", role="traveller")
        s.add(user)
        await s.flush()
        trip = _trip(user.id)
        s.add(trip)
        await s.commit()
        trip_id = trip.id
    async with sessions() as s:
        got = (await s.execute(select(Trip).where(Trip.id == trip_id))).scalar_one()
        assert isinstance(got.route, shapely.LineString)
        assert got.route.equals_exact(_trip(1).route, 1e-12)
        assert isinstance(got.corridor, shapely.Polygon)
        assert got.departure == datetime(2026, 5, 28, 14, tzinfo=UTC)
        assert got.departure.tzinfo is not None


async def test_postgis_stores_real_geometry_with_srid(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        # SQLite holds WKB bytes; the spatial checks below are PostGIS's own.
        assert engine.dialect.name == "sqlite"
        return
    sessions = make_sessions(engine)
    async with sessions() as s:
        user = User(name="beto", role="traveller")
        s.add(user)
        await s.flush()
        s.add(_trip(user.id))
        await s.commit()
    async with engine.connect() as conn:
        srid, kind, length = (
            await conn.execute(
                text(
                    "SELECT ST_SRID(route), GeometryType(route),"
                    " ST_Length(route::geography) FROM trips"
                )
            )
        ).one()
    assert (srid, kind) == (4326, "LINESTRING")
    assert 2_000 < length < 4_000


async def test_one_open_alert_per_trip_and_kind_is_enforced_by_the_database(
    engine: AsyncEngine,
) -> None:
    sessions = make_sessions(engine)
    async with sessions() as s:
        user = User(name="caro", role="traveller")
        s.add(user)
        await s.flush()
        trip = _trip(user.id)
        s.add(trip)
        await s.flush()
        s.add(Alert(trip_id=trip.id, kind="off_route", severity=3))
        await s.commit()
        trip_id = trip.id
    async with sessions() as s:
        s.add(Alert(trip_id=trip_id, kind="off_route", severity=3))
        with pytest.raises(IntegrityError):
            await s.commit()
    async with sessions() as s:
        # A resolved one does not count: a new alert of the same kind may open.
        first = (await s.execute(select(Alert))).scalar_one()
        first.status = "resolved"
        s.add(Alert(trip_id=trip_id, kind="off_route", severity=3))
        await s.commit()
        assert len((await s.execute(select(Alert))).scalars().all()) == 2
