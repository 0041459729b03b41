"""Risk zones: areas the operator marks as dangerous, where a traveller entering raises
a ``risk_zone`` alert.

A zone is a WGS 84 polygon (``[lon, lat]``, EPSG:4326), holes allowed, with a name.
:func:`zone_polygon` turns GeoJSON Polygon coordinates into one, refusing what cannot be
monitored (:class:`~sigueme.errors.Invalid`, naming the field): too many vertices,
positions off the Earth, unclosed rings, outlines that cross themselves (they are not
repaired: a repaired outline is a guess at what the operator meant), and areas below
:data:`MIN_AREA_M2` or above :data:`MAX_AREA_M2`, measured on the ellipsoid.

Zones are never deleted, only deactivated: an alert raised in a zone keeps pointing at
it. Like the other store modules, functions flush and leave the commit to the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import shapely
from shapely.geometry.polygon import orient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.errors import Invalid, NotFound
from sigueme.geo.route import GEOD
from sigueme.store.models import RiskZone, utcnow

MAX_NAME: Final = 200
MAX_VERTICES: Final = 5_000
"""Most positions a zone's rings may have together, closing positions included."""
MAX_RINGS: Final = MAX_VERTICES // 4
"""Most rings (the outline and its holes): each needs four positions."""
MIN_AREA_M2: Final = 100.0
"""Smallest zone: 10 m by 10 m. Anything smaller is below what a phone's fix resolves."""
MAX_AREA_M2: Final = 2_000e6
"""Largest zone, 2,000 km² (some 40 % of Morelos): zones mark places, not regions."""
MAX_LIST: Final = 1_000

_REASON = re.compile(r"^(?P<what>.*?)\s*\[(?P<x>\S+) (?P<y>\S+)\]$")


# -- validation ----------------------------------------------------------------------------


def check_name(name: str) -> str:
    """A zone's name without surrounding spaces, or :class:`Invalid` (field ``name``):
    1 to 200 printable characters."""
    text = name.strip()
    if not text or len(text) > MAX_NAME or not text.isprintable():
        raise Invalid("name", f"1 to {MAX_NAME} printable characters")
    return text


def _finite(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _ring(coords: Any, r: int, field: str) -> list[tuple[float, float]]:
    loc = f"{field}[{r}]"
    if isinstance(coords, (str, bytes)) or not isinstance(coords, Sequence):
        raise Invalid(loc, "a ring is a list of [lon, lat] positions")
    if len(coords) < 4:
        raise Invalid(
            loc,
            f"a ring needs at least 4 positions (the last repeats the first), got {len(coords)}",
        )
    ring: list[tuple[float, float]] = []
    for i, pos in enumerate(coords):
        at = f"{loc}[{i}]"
        if isinstance(pos, (str, bytes)) or not isinstance(pos, Sequence) or not 2 <= len(pos) <= 3:
            raise Invalid(at, "a position is [lon, lat] (or [lon, lat, altitude])")
        lon, lat = pos[0], pos[1]
        for name, v in (("longitude", lon), ("latitude", lat)):
            if not _finite(v):
                raise Invalid(at, f"{name} must be a finite number")
        if not -180.0 <= lon <= 180.0:
            raise Invalid(at, f"longitude {lon:g} is outside [-180, 180]")
        if not -90.0 <= lat <= 90.0:
            raise Invalid(at, f"latitude {lat:g} is outside [-90, 90]")
        ring.append((float(lon), float(lat)))
    if ring[0] != ring[-1]:
        raise Invalid(loc, "the ring is not closed: its last position must repeat its first")
    if len(set(ring)) < 3:
        raise Invalid(loc, "a ring needs at least 3 distinct positions")
    return ring


def _invalid_reason(polygon: shapely.Polygon) -> str:
    """Why GEOS refuses ``polygon``, in words an operator can act on."""
    reason = str(shapely.is_valid_reason(polygon))
    match = _REASON.match(reason)
    what, near = (match["what"], f" near [{match['x']}, {match['y']}]") if match else (reason, "")
    if "Self-intersection" in what:
        return (
            f"the outline self-intersects{near}: its edges cross or touch. Redraw it "
            "without crossings, or draw each part as a zone of its own"
        )
    if what == "Hole lies outside shell":
        return f"a hole lies outside the outer ring{near}"
    if what == "Nested holes":
        return f"a hole lies inside another hole{near}"
    if what == "Interior is disconnected":
        return f"the holes cut the zone in pieces{near}: draw each piece as a zone of its own"
    return f"not a valid polygon: {what.lower()}{near}"


def area_m2(polygon: shapely.Polygon) -> float:
    """The polygon's area on the WGS 84 ellipsoid, in square metres (holes excluded)."""
    area, _ = GEOD.geometry_area_perimeter(polygon)
    return abs(float(area))


def zone_polygon(coordinates: Any, *, field: str = "area.coordinates") -> shapely.Polygon:
    """The zone of GeoJSON Polygon ``coordinates`` (the outer ring, then holes, each a
    closed list of ``[lon, lat]`` positions; an altitude is dropped), or
    :class:`Invalid` naming ``field`` (or the ring or position in it) and the reason.

    The outer ring comes back counter-clockwise and holes clockwise (RFC 7946), whatever
    the orientation given."""
    if isinstance(coordinates, (str, bytes)) or not isinstance(coordinates, Sequence):
        raise Invalid(field, "a Polygon's coordinates are a list of rings")
    if not coordinates:
        raise Invalid(field, "a Polygon needs its outer ring")
    if len(coordinates) > MAX_RINGS:
        raise Invalid(field, f"{len(coordinates)} rings; at most {MAX_RINGS} allowed")
    total = sum(
        len(r) for r in coordinates if isinstance(r, Sequence) and not isinstance(r, (str, bytes))
    )
    if total > MAX_VERTICES:
        raise Invalid(field, f"{total} positions; at most {MAX_VERTICES} allowed")
    rings = [_ring(r, i, field) for i, r in enumerate(coordinates)]
    polygon = shapely.Polygon(rings[0], rings[1:])
    if not shapely.is_valid(polygon):
        for i, ring in enumerate(rings):
            if shapely.MultiPoint(ring).convex_hull.area == 0.0:
                raise Invalid(
                    f"{field}[{i}]", "the ring encloses no area (its positions are on one line)"
                )
        raise Invalid(field, _invalid_reason(polygon))
    area = area_m2(polygon)
    if area < MIN_AREA_M2:
        raise Invalid(field, f"the zone covers {area:.1f} m²; at least {MIN_AREA_M2:g} m²")
    if area > MAX_AREA_M2:
        raise Invalid(
            field, f"the zone covers {area / 1e6:,.1f} km²; at most {MAX_AREA_M2 / 1e6:,.0f} km²"
        )
    oriented: shapely.Polygon = orient(polygon, sign=1.0)
    return oriented


# -- reading and writing ---------------------------------------------------------------------


async def add_zone(
    session: AsyncSession,
    *,
    name: str,
    area: shapely.Polygon,
    created_by: int,
    now: datetime | None = None,
) -> RiskZone:
    """A new active zone. ``area`` must come from :func:`zone_polygon` (it is not
    checked again); ``name`` is checked (:class:`Invalid`, field ``name``)."""
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in area.bounds)
    zone = RiskZone(
        name=check_name(name),
        area=area,
        min_lon=min_lon,
        min_lat=min_lat,
        max_lon=max_lon,
        max_lat=max_lat,
        active=True,
        created_by=created_by,
        created_at=now if now is not None else utcnow(),
    )
    session.add(zone)
    await session.flush()
    return zone


async def get_zone(session: AsyncSession, zone_id: int) -> RiskZone:
    """The zone ``zone_id``, active or not; :class:`NotFound` when there is none."""
    zone = await session.get(RiskZone, zone_id)
    if zone is None:
        raise NotFound("no such risk zone")
    return zone


async def list_zones(
    session: AsyncSession, *, include_inactive: bool = False, limit: int = MAX_LIST
) -> Sequence[RiskZone]:
    """Zones by id (oldest first): the active ones, or all of them."""
    query = select(RiskZone).order_by(RiskZone.id).limit(min(max(limit, 1), MAX_LIST))
    if not include_inactive:
        query = query.where(RiskZone.active.is_(True))
    return (await session.scalars(query)).all()


async def deactivate(session: AsyncSession, zone: RiskZone) -> RiskZone:
    """Stop monitoring ``zone`` (it stays stored, for the alerts that name it).
    Deactivating an inactive zone changes nothing."""
    if zone.active:
        zone.active = False
        await session.flush()
    return zone


async def active_zones(session: AsyncSession) -> list[tuple[int, str, shapely.Polygon]]:
    """Every active zone as ``(id, name, polygon)``, by id."""
    rows = await session.execute(
        select(RiskZone.id, RiskZone.name, RiskZone.area)
        .where(RiskZone.active.is_(True))
        .order_by(RiskZone.id)
    )
    return [(row.id, row.name, row.area) for row in rows]
