"""The in-memory index of risk zones, on both backends: which zones a position is in
(inside, outside, on the boundary, in a hole, overlapping zones), and when it reloads
(after its time to live, after invalidate(), zones changed by another worker)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import shapely
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sigueme.services.risk_zones import CELL_DEG, RiskZoneIndex, ZoneHit
from sigueme.store import risk_zones as store
from sigueme.store.db import make_engine, sessionmaker
from sigueme.store.models import Role
from sigueme.store.users import add_user

# About 1 km by 1 km in Cuernavaca, Morelos, with a hole, and a zone overlapping its
# east side.
SQUARE = [[-99.24, 18.91], [-99.23, 18.91], [-99.23, 18.92], [-99.24, 18.92], [-99.24, 18.91]]
HOLE = [
    [-99.237, 18.913],
    [-99.237, 18.917],
    [-99.233, 18.917],
    [-99.233, 18.913],
    [-99.237, 18.913],
]
EAST = [[-99.232, 18.911], [-99.22, 18.911], [-99.22, 18.919], [-99.232, 18.919], [-99.232, 18.911]]

T0 = 1_000.0
"""A monotonic clock reading to start from."""


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    admin_id: int
    index: RiskZoneIndex

    async def add(self, name: str, *rings: list[list[float]]) -> int:
        async with self.sessions() as session:
            zone = await store.add_zone(
                session, name=name, area=store.zone_polygon(list(rings)), created_by=self.admin_id
            )
            await session.commit()
            return zone.id

    async def deactivate(self, zone_id: int) -> None:
        async with self.sessions() as session:
            await store.deactivate(session, await store.get_zone(session, zone_id))
            await session.commit()

    def ids_at(self, lon: float, lat: float) -> list[int]:
        return [hit.id for hit in self.index.zones_at(lon, lat)]


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine) -> AsyncIterator[World]:
    sessions = sessionmaker(engine)
    async with sessions() as session:
        admin, _ = await add_user(session, "root", Role.ADMIN)
        await session.commit()
    yield World(sessions=sessions, admin_id=admin.id, index=RiskZoneIndex(ttl_s=10.0))


async def test_which_zones_a_position_is_in(world: World) -> None:
    square = await world.add("Antonio Barona", SQUARE, HOLE)
    east = await world.add("Carolina", EAST)
    assert await world.index.refresh(world.sessions, now=T0)

    assert world.index.size == 2
    assert world.index.zones_at(-99.239, 18.919) == [ZoneHit(square, "Antonio Barona")]
    assert world.ids_at(-99.225, 18.915) == [east]
    # Where the two overlap, both, by id.
    assert world.ids_at(-99.231, 18.915) == [square, east]
    # Outside every zone, just outside the square, and far away.
    assert world.ids_at(-99.2405, 18.915) == []
    assert world.ids_at(-99.235, 18.9205) == []
    assert world.ids_at(-98.9, 18.6) == []
    # On the boundary (an edge, a corner) is in.
    assert world.ids_at(-99.24, 18.915) == [square]
    assert world.ids_at(-99.24, 18.91) == [square]
    # In the hole is out; on the hole's edge is in.
    assert world.ids_at(-99.235, 18.915) == []
    assert world.ids_at(-99.237, 18.915) == [square]
    # Not a position: nothing, and no error.
    assert world.ids_at(math.nan, 18.915) == []
    assert world.ids_at(-99.235, math.inf) == []
    assert world.ids_at(-190.0, 18.915) == []


async def test_an_empty_index_answers_nothing(world: World) -> None:
    assert world.index.zones_at(-99.235, 18.915) == []  # never loaded
    assert await world.index.refresh(world.sessions, now=T0)
    assert world.index.size == 0
    assert world.index.zones_at(-99.235, 18.915) == []


async def test_the_index_agrees_with_shapely_everywhere(world: World) -> None:
    """Against an independent oracle (each polygon's ``covers``), at random positions
    and at positions on the index's cell edges, where rounding could put a position in
    the wrong cell."""
    rng = np.random.default_rng(7)
    zones: dict[int, shapely.Polygon] = {}
    for i in range(40):
        lon, lat = rng.uniform(-99.3, -99.1), rng.uniform(18.85, 19.0)
        n = int(rng.integers(5, 60))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.002, 0.02, n)
        ring = np.column_stack((lon + radii * np.cos(angles), lat + radii * np.sin(angles)))
        positions = [*ring.tolist(), ring[0].tolist()]
        zone_id = await world.add(f"zona {i}", positions)
        zones[zone_id] = shapely.Polygon(positions)
    await world.index.refresh(world.sessions, now=T0)

    random = np.column_stack((rng.uniform(-99.33, -99.07, 4_000), rng.uniform(18.82, 19.03, 4_000)))
    on_edges = np.column_stack(
        (
            np.round(rng.uniform(-99.33, -99.07, 1_000) / CELL_DEG) * CELL_DEG,
            np.round(rng.uniform(18.82, 19.03, 1_000) / CELL_DEG) * CELL_DEG,
        )
    )
    vertices = np.concatenate([np.asarray(p.exterior.coords) for p in zones.values()])
    inside = 0
    for lon, lat in np.concatenate((random, on_edges, vertices)).tolist():
        expected = [z for z, p in zones.items() if p.covers(shapely.Point(lon, lat))]
        assert world.ids_at(lon, lat) == expected, (lon, lat)
        inside += bool(expected)
    assert inside > 500  # the test looked inside zones, not only around them


async def test_a_deactivated_zone_is_gone_after_invalidate(world: World) -> None:
    square = await world.add("Antonio Barona", SQUARE)
    await world.index.refresh(world.sessions, now=T0)
    await world.deactivate(square)

    # Until the index is told (or its time to live passes), it answers from memory.
    assert not await world.index.refresh(world.sessions, now=T0 + 1)
    assert world.ids_at(-99.235, 18.915) == [square]

    world.index.invalidate()
    assert world.index.due(T0 + 1)
    assert await world.index.refresh(world.sessions, now=T0 + 1)
    assert world.ids_at(-99.235, 18.915) == []
    assert world.index.size == 0


async def test_a_deactivated_zone_is_gone_after_the_time_to_live(world: World) -> None:
    square = await world.add("Antonio Barona", SQUARE)
    await world.index.refresh(world.sessions, now=T0)
    await world.deactivate(square)

    assert not await world.index.refresh(world.sessions, now=T0 + 9.9)
    assert world.ids_at(-99.235, 18.915) == [square]
    assert await world.index.refresh(world.sessions, now=T0 + 10)
    assert world.ids_at(-99.235, 18.915) == []


async def test_a_zone_another_worker_adds_is_seen_within_the_time_to_live(
    world: World, database_url: str
) -> None:
    await world.index.refresh(world.sessions, now=T0)
    other_engine = make_engine(database_url)  # another worker: its own engine and pool
    try:
        other = World(
            sessions=sessionmaker(other_engine), admin_id=world.admin_id, index=RiskZoneIndex()
        )
        added = await other.add("Antonio Barona", SQUARE)
    finally:
        await other_engine.dispose()

    assert not await world.index.refresh(world.sessions, now=T0 + 5)
    assert world.ids_at(-99.235, 18.915) == []
    assert await world.index.refresh(world.sessions, now=T0 + 10)
    assert world.ids_at(-99.235, 18.915) == [added]


async def test_a_failed_reload_keeps_the_zones_it_had(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    square = await world.add("Antonio Barona", SQUARE)
    await world.index.refresh(world.sessions, now=T0)
    # A database that cannot be opened: its directory does not exist.
    broken = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'x.db'}")
    try:
        world.index.invalidate()
        assert not await world.index.refresh(sessionmaker(broken), now=T0 + 1)
    finally:
        await broken.dispose()

    assert world.ids_at(-99.235, 18.915) == [square]
    assert "reload failed" in caplog.text
    # Tried again a second later, not at every fix.
    assert not world.index.due(T0 + 1.5)
    assert world.index.due(T0 + 2)
    assert await world.index.refresh(world.sessions, now=T0 + 2)


def test_the_time_to_live_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        RiskZoneIndex(ttl_s=0)
