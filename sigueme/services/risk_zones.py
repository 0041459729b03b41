"""Which risk zones a position is in, answered from memory for every accepted fix.

:class:`RiskZoneIndex` holds the active zones of the database (a Shapely STRtree over
prepared polygons) and reloads them when they are older than ``ttl_s`` or after
:meth:`~RiskZoneIndex.invalidate`. The API invalidates the index of its own worker
when a zone is added or deactivated; other workers see the change within ``ttl_s``.

Geometry: zones are WGS 84 polygons and a position is tested against them in
longitude/latitude, edges being straight lines in those coordinates, as RFC 7946 (§3.1.1)
says a GeoJSON edge is. The geodesic between an edge's ends bows away from that line
by up to ``L² tan(lat) / 8R``: 0.2 m for a 5 km edge at Morelos' latitude, 14 m for a
45 km one (the side of the largest zone allowed), of the order of a phone fix's own
error. A position on a zone's boundary, or on a hole's, is in the zone (``covers``); a
position inside a hole is not.

Speed: the plane is cut into cells of :data:`CELL_DEG` degrees. The first position
asked in a cell queries the tree once and sorts the zones touching the cell into those
covering all of it (in for every position of the cell, no test) and those crossing it
(tested exactly, against the prepared polygon); later positions in the cell reuse that.
Most positions then cost a dictionary look-up; see :meth:`RiskZoneIndex.zones_at`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import shapely
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.store.risk_zones import active_zones

log = logging.getLogger(__name__)

DEFAULT_TTL_S: Final = 10.0
"""How long a worker answers from the zones it loaded before reading them again."""
RETRY_S: Final = 1.0
"""After a failed reload, how long the index keeps answering from the old zones before
it tries again (so a database that is down is not asked once per fix)."""
CELL_DEG: Final = 0.01
"""Side of a cell of the position cache, in degrees (some 1.1 km in Morelos)."""
MAX_CELLS: Final = 100_000
"""Cells remembered at most (all of Morelos takes some 7,000); past that the cache starts
over."""
_PAD: Final = 1e-9
"""Degrees each cell is widened by, so a position whose cell index rounded the other
way still lies in its cell's box."""


@dataclass(frozen=True, slots=True)
class ZoneHit:
    """A risk zone a position is in."""

    id: int
    name: str


_Cell = tuple[tuple[ZoneHit, shapely.Polygon | None], ...]
"""The zones touching a cell, by id: with ``None`` when the zone covers the whole cell,
else with its prepared polygon, to test each position against."""
_EMPTY: Final[_Cell] = ()


class _Zones:
    """One load of the active zones: immutable but for its cell cache."""

    __slots__ = ("cells", "hits", "polygons", "tree")

    def __init__(self, zones: list[tuple[int, str, shapely.Polygon]]) -> None:
        zones = sorted(zones, key=lambda z: z[0])
        self.hits = [ZoneHit(zone_id, name) for zone_id, name, _ in zones]
        self.polygons = np.array([polygon for _, _, polygon in zones], dtype=object)
        shapely.prepare(self.polygons)
        self.tree = shapely.STRtree(self.polygons)
        self.cells: dict[tuple[int, int], _Cell] = {}

    def cell(self, key: tuple[int, int]) -> _Cell:
        """The zones touching cell ``key``, computed and remembered."""
        gx, gy = key
        box = shapely.box(
            gx * CELL_DEG - _PAD,
            gy * CELL_DEG - _PAD,
            (gx + 1) * CELL_DEG + _PAD,
            (gy + 1) * CELL_DEG + _PAD,
        )
        found = self.tree.query(box)  # zones whose bounding box meets the cell's
        entry: _Cell = _EMPTY
        if found.size:
            found.sort()  # the tree's order is arbitrary; hits go out by zone id
            polygons = self.polygons[found]
            touching = shapely.intersects(polygons, box)
            covering = shapely.covers(polygons, box)
            entry = tuple(
                (self.hits[i], None if covers else polygon)
                for i, polygon, touches, covers in zip(
                    found.tolist(), polygons, touching.tolist(), covering.tolist(), strict=True
                )
                if touches
            )
        if len(self.cells) >= MAX_CELLS:
            self.cells.clear()
        self.cells[key] = entry
        return entry


class RiskZoneIndex:
    """The active risk zones of one worker, in memory.

    Call :meth:`refresh` before asking (it reloads only when due; cheap otherwise) and
    :meth:`zones_at` for each position. An index that never loaded knows no zones."""

    def __init__(self, *, ttl_s: float = DEFAULT_TTL_S) -> None:
        if not ttl_s > 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_s = ttl_s
        self._zones: _Zones | None = None
        self._due = -math.inf
        self._version = 0
        self._lock = asyncio.Lock()

    @property
    def size(self) -> int:
        """How many zones the index holds."""
        return len(self._zones.hits) if self._zones is not None else 0

    def invalidate(self) -> None:
        """Reload at the next :meth:`refresh`, whatever its age (zones were changed)."""
        self._version += 1
        self._due = -math.inf

    def due(self, now: float) -> bool:
        """Whether :meth:`refresh` at ``now`` would read the database."""
        return now >= self._due

    async def refresh(self, sessions: async_sessionmaker[AsyncSession], *, now: float) -> bool:
        """Reload the active zones if they are older than ``ttl_s`` or the index was
        invalidated; ``now`` is a monotonic clock in seconds (``time.monotonic()``).
        True when it reloaded.

        A reload that fails is logged and keeps the zones loaded before (monitoring goes
        on with them); it is tried again :data:`RETRY_S` later. Concurrent callers wait
        for one reload rather than each making their own."""
        if now < self._due:
            return False
        async with self._lock:
            if now < self._due:  # another caller reloaded while this one waited
                return False
            version = self._version
            try:
                async with sessions() as session:
                    rows = await active_zones(session)
                zones = _Zones(rows) if rows else None
            except Exception:
                log.warning(
                    "risk zones: reload failed; answering from the zones loaded before",
                    exc_info=True,
                )
                self._due = now + min(RETRY_S, self.ttl_s)
                return False
            self._zones = zones
            # An invalidate() during the reload asks for another: this one may have read
            # the table before the change committed.
            self._due = now + self.ttl_s if self._version == version else -math.inf
            return True

    def zones_at(self, lon: float, lat: float) -> list[ZoneHit]:
        """The zones whose area covers ``(lon, lat)`` (WGS 84 degrees), by id; ``[]``
        when none does, or the position is not one (out of range, NaN)."""
        zones = self._zones
        if zones is None or not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
            return []
        key = (math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG))
        entry = zones.cells.get(key)
        if entry is None:
            entry = zones.cell(key)
        return [
            hit
            for hit, polygon in entry
            if polygon is None or shapely.intersects_xy(polygon, lon, lat)
        ]
