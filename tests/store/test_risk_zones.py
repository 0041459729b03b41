"""Risk zones in the store: what an outline must be to become a zone (pure), and adding,
reading, listing and deactivating zones on both backends."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import shapely
from pyproj import Geod
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sigueme.errors import Invalid, NotFound
from sigueme.store import risk_zones as store
from sigueme.store.db import sessionmaker
from sigueme.store.models import Role
from sigueme.store.users import add_user

# About 1 km by 1 km in Cuernavaca, Morelos, counter-clockwise, and a hole in it.
SQUARE = [[-99.24, 18.91], [-99.23, 18.91], [-99.23, 18.92], [-99.24, 18.92], [-99.24, 18.91]]
HOLE = [
    [-99.237, 18.913],
    [-99.237, 18.917],
    [-99.233, 18.917],
    [-99.233, 18.913],
    [-99.237, 18.913],
]


def circle(n: int, radius_deg: float = 0.01, lon: float = -99.2, lat: float = 18.9) -> list[Any]:
    """A closed ring of ``n`` positions (the last repeats the first)."""
    ring = [
        [
            lon + radius_deg * math.cos(2 * math.pi * i / (n - 1)),
            lat + radius_deg * math.sin(2 * math.pi * i / (n - 1)),
        ]
        for i in range(n - 1)
    ]
    return [*ring, ring[0]]


# -- what an outline must be (pure) ----------------------------------------------------------


def test_a_square_with_a_hole_is_a_zone() -> None:
    polygon = store.zone_polygon([SQUARE, HOLE])
    assert polygon.is_valid
    assert len(polygon.interiors) == 1
    expected, _ = Geod(ellps="WGS84").polygon_area_perimeter(*zip(*SQUARE, strict=True))
    hole, _ = Geod(ellps="WGS84").polygon_area_perimeter(*zip(*HOLE, strict=True))
    assert store.area_m2(polygon) == pytest.approx(abs(expected) - abs(hole), rel=1e-9)


def test_orientation_is_normalised_and_altitude_dropped() -> None:
    clockwise = [[lon, lat, 1500.0] for lon, lat in reversed(SQUARE)]
    polygon = store.zone_polygon([clockwise, HOLE])
    assert polygon.exterior.is_ccw
    assert not polygon.interiors[0].is_ccw
    assert not polygon.has_z


@pytest.mark.parametrize(
    ("coordinates", "field", "reason"),
    [
        ([], "area.coordinates", "outer ring"),
        ("nope", "area.coordinates", "list of rings"),
        ([SQUARE[:3]], "area.coordinates[0]", "at least 4 positions"),
        ([[*SQUARE[:-1], [-99.24, 18.9105]]], "area.coordinates[0]", "not closed"),
        ([[*SQUARE[:2], "x", *SQUARE[3:]]], "area.coordinates[0][2]", "[lon, lat]"),
        ([[*SQUARE[:2], [-99.23, 91.0], *SQUARE[3:]]], "area.coordinates[0][2]", "latitude 91"),
        (
            [[*SQUARE[:2], [1e300, 18.92], *SQUARE[3:]]],
            "area.coordinates[0][2]",
            "longitude 1e+300",
        ),
        ([[*SQUARE[:2], [math.inf, 18.92], *SQUARE[3:]]], "area.coordinates[0][2]", "finite"),
        ([[*SQUARE[:2], [math.nan, 18.92], *SQUARE[3:]]], "area.coordinates[0][2]", "finite"),
        ([[*SQUARE[:2], [10**400, 18.92], *SQUARE[3:]]], "area.coordinates[0][2]", "finite"),
        ([[*SQUARE[:2], [True, 18.92], *SQUARE[3:]]], "area.coordinates[0][2]", "finite"),
        ([[SQUARE[0], SQUARE[1], SQUARE[0], SQUARE[0]]], "area.coordinates[0]", "3 distinct"),
        (
            [[[-99.24, 18.91], [-99.23, 18.91], [-99.22, 18.91], [-99.24, 18.91]]],
            "area.coordinates[0]",
            "encloses no area",
        ),
        # A bowtie: its edges cross in the middle.
        (
            [[[-99.24, 18.91], [-99.23, 18.92], [-99.23, 18.91], [-99.24, 18.92], [-99.24, 18.91]]],
            "area.coordinates",
            "self-intersects near [-99.235, 18.915]",
        ),
        (
            [SQUARE, [[-99.2, 18.9], [-99.19, 18.9], [-99.19, 18.91], [-99.2, 18.9]]],
            "area.coordinates",
            "hole lies outside",
        ),
        ([circle(5_001)], "area.coordinates", "5001 positions; at most 5000"),
        ([circle(4_000), circle(1_001, 0.001)], "area.coordinates", "5001 positions"),
        # 5 m by 5 m, and 1 degree square (some 11,700 km² at this latitude).
        (
            [
                [
                    [-99.2, 18.9],
                    [-99.19995, 18.9],
                    [-99.19995, 18.90005],
                    [-99.2, 18.90005],
                    [-99.2, 18.9],
                ]
            ],
            "area.coordinates",
            "at least 100 m²",
        ),
        (
            [[[-99.5, 18.5], [-98.5, 18.5], [-98.5, 19.5], [-99.5, 19.5], [-99.5, 18.5]]],
            "area.coordinates",
            "at most 2,000 km²",
        ),
    ],
)
def test_outlines_that_cannot_be_zones_are_refused(
    coordinates: Any, field: str, reason: str
) -> None:
    with pytest.raises(Invalid) as refused:
        store.zone_polygon(coordinates)
    assert refused.value.field == field
    assert reason in refused.value.reason


def test_the_size_bounds_are_inclusive_of_what_they_name() -> None:
    # Some 110 m by 105 m: above the minimum; some 44 km by 42 km: below the maximum.
    store.zone_polygon([circle(64, 0.0006)])
    store.zone_polygon([circle(64, 0.2)])
    store.zone_polygon([circle(5_000)])


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, "tab\there"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(Invalid) as refused:
        store.check_name(name)
    assert refused.value.field == "name"


def test_names_are_stripped() -> None:
    assert store.check_name("  Colonia Antonio Barona ") == "Colonia Antonio Barona"


# -- stored zones, on both backends ----------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with sessionmaker(engine)() as s:
        yield s


async def _admin(session: AsyncSession) -> int:
    user, _ = await add_user(session, "root", Role.ADMIN)
    return user.id


async def test_a_zone_is_stored_with_its_holes_and_bounding_box(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    root = await _admin(session)
    zone = await store.add_zone(
        session, name=" Antonio Barona ", area=store.zone_polygon([SQUARE, HOLE]), created_by=root
    )
    await session.commit()

    async with sessionmaker(engine)() as other:
        stored = await store.get_zone(other, zone.id)
        assert stored.name == "Antonio Barona"
        assert stored.active
        assert stored.created_by == root
        assert shapely.equals(stored.area, shapely.Polygon(SQUARE, [HOLE]))
        assert (stored.min_lon, stored.min_lat, stored.max_lon, stored.max_lat) == (
            pytest.approx(-99.24),
            pytest.approx(18.91),
            pytest.approx(-99.23),
            pytest.approx(18.92),
        )
        [(zone_id, name, polygon)] = await store.active_zones(other)
        assert (zone_id, name) == (zone.id, "Antonio Barona")
        assert shapely.equals(polygon, shapely.Polygon(SQUARE, [HOLE]))


async def test_deactivated_zones_are_kept_but_not_active(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    root = await _admin(session)
    area = store.zone_polygon([SQUARE])
    first = await store.add_zone(session, name="uno", area=area, created_by=root)
    second = await store.add_zone(session, name="dos", area=area, created_by=root)
    await store.deactivate(session, first)
    await store.deactivate(session, first)  # again: nothing changes
    await session.commit()

    async with sessionmaker(engine)() as other:
        assert [z.id for z in await store.list_zones(other)] == [second.id]
        assert [z.id for z in await store.list_zones(other, include_inactive=True)] == [
            first.id,
            second.id,
        ]
        assert [z[0] for z in await store.active_zones(other)] == [second.id]
        assert not (await store.get_zone(other, first.id)).active


async def test_an_unknown_zone_is_not_found(session: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await store.get_zone(session, 12345)


async def test_a_bad_name_stores_nothing(session: AsyncSession) -> None:
    root = await _admin(session)
    with pytest.raises(Invalid):
        await store.add_zone(session, name=" ", area=store.zone_polygon([SQUARE]), created_by=root)
    assert await store.list_zones(session, include_inactive=True) == []
