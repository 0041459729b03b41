"""Route geometry against PostGIS, the second independent oracle.

``ST_Distance(geography, geography)`` measures on the WGS 84 spheroid. It has one
known quirk: it picks the nearest part of a line *on a sphere*, then measures that
part on the spheroid, so where two parts of a route are nearly equally far from a
fix it may measure the wrong one (a few metres too far). Where sigueme and PostGIS
disagree beyond tolerance, the judge is the geodesic truth from pyproj's ``Geod``:
sigueme fails only if it is wrong against that.

``ST_LineLocatePoint`` on lon/lat geometry works in degrees, so it is no oracle for
progress at all; a test below shows by how much it is off where sigueme is right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import asyncpg
import numpy as np
import numpy.typing as npt
import pytest
from geodesic_oracle import GEOD, geodesic_nearest, segment_minima, tolerance
from shapely.geometry import LineString, Point

from sigueme.geo import Route
from sigueme.geo.matching import match_point
from sigueme.geo.route import MAX_LENGTH_M

pytestmark = pytest.mark.postgis

Array = npt.NDArray[np.float64]

DISTANCE_SQL = """
SELECT ST_Distance(ST_GeomFromGeoJSON(route)::geography,
                   ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography) AS metres
FROM unnest($1::text[], $2::float8[], $3::float8[]) WITH ORDINALITY AS f(route, lon, lat, i)
ORDER BY i
"""

LOCATE_SQL = """
SELECT ST_LineLocatePoint(ST_GeomFromGeoJSON(route), ST_SetSRID(ST_MakePoint(lon, lat), 4326))
FROM unnest($1::text[], $2::float8[], $3::float8[]) WITH ORDINALITY AS f(route, lon, lat, i)
ORDER BY i
"""


def geodesic_truth(
    vertices: Sequence[Sequence[float]], lon: float, lat: float
) -> tuple[float, float]:
    """(distance, progress) of the route point nearest to (lon, lat), on the ellipsoid."""
    nearest = geodesic_nearest(vertices, lon, lat)
    return nearest.distance_m, nearest.progress_m


def sigueme_match(route: Route, lon: float, lat: float) -> tuple[float, float]:
    """sigueme's distance and progress: the whole route as the window, candidates
    within a centimetre of the nearest."""
    x, y = route.frame.forward(lon, lat)
    m = match_point(route, x, y, 0.0, route.length_m, 0.0, 0.01)
    return m.distance_m, m.progress_m


def random_route(rng: np.random.Generator) -> list[tuple[float, float]]:
    """2-50 vertices in Mexico (a third in Morelos, some in Chihuahua), segments of
    10 m - 30 km, at most 500 km."""
    place = rng.integers(3)
    if place == 0:
        lon, lat = rng.uniform(-99.5, -98.6), rng.uniform(18.3, 19.2)
    elif place == 1:
        lon, lat = rng.uniform(-106.3, -105.7), rng.uniform(28.4, 28.8)
    else:
        lon, lat = rng.uniform(-118.0, -86.0), rng.uniform(14.5, 32.7)
    max_turn = float(rng.choice([10.0, 45.0, 180.0]))
    azimuth = rng.uniform(-180.0, 180.0)
    vertices = [(float(lon), float(lat))]
    total = 0.0
    for _ in range(int(rng.integers(1, 50))):
        length = 10.0 ** rng.uniform(math.log10(10.001), math.log10(30_000.0))
        if total + length > MAX_LENGTH_M - 100.0:
            break
        azimuth += rng.uniform(-max_turn, max_turn)
        lon2, lat2, _ = GEOD.fwd(*vertices[-1], azimuth, length)
        vertices.append((float(lon2), float(lat2)))
        total += length
    return vertices


def fix_near(route: Route, rng: np.random.Generator) -> tuple[float, float]:
    """A point 0-3 km in any direction from a random point of the route."""
    base = route.point_at(rng.uniform(0.0, route.length_m))
    offset = 0.0 if rng.random() < 0.1 else rng.uniform(0.0, 3_000.0)
    lon, lat, _ = GEOD.fwd(*base, rng.uniform(-180.0, 180.0), offset)
    return float(lon), float(lat)


async def postgis_distances(
    pg: asyncpg.Pool, routes: list[Route], lons: list[float], lats: list[float]
) -> list[float]:
    geojson = [json.dumps(r.geojson()) for r in routes]
    rows = await pg.fetch(DISTANCE_SQL, geojson, lons, lats)
    return [float(row["metres"]) for row in rows]


async def test_distance_agrees_with_postgis_or_the_geodesic(pg: asyncpg.Pool) -> None:
    rng = np.random.default_rng(20240602)
    cases: list[tuple[list[tuple[float, float]], Route, float, float]] = []
    for _ in range(150):
        vertices = random_route(rng)
        route = Route(vertices)
        for _ in range(6):
            cases.append((vertices, route, *fix_near(route, rng)))

    postgis = await postgis_distances(
        pg, [c[1] for c in cases], [c[2] for c in cases], [c[3] for c in cases]
    )

    agreed = 0
    wrong: list[str] = []
    for (vertices, route, lon, lat), theirs in zip(cases, postgis, strict=True):
        ours, _ = sigueme_match(route, lon, lat)
        if abs(ours - theirs) <= tolerance(theirs):
            agreed += 1
            continue
        truth, _ = geodesic_truth(vertices, lon, lat)
        if abs(ours - truth) > tolerance(truth):
            wrong.append(f"fix ({lon!r}, {lat!r}) route {vertices!r}: ours {ours} truth {truth}")
    assert not wrong, "\n".join(wrong)
    # PostGIS's quirk needs a near tie; almost every case is a straight comparison.
    assert agreed >= 0.95 * len(cases)


async def test_postgis_quirk_where_two_legs_are_nearly_equally_far(
    pg: asyncpg.Pool, record_property: pytest.RecordProperty
) -> None:
    # An L in Yautepec: 5 km from the west to a corner, then 5 km north. The fix, 1.32
    # km north-west of the corner, is 931.75 m from the first leg and 935.01 m from
    # the second: PostGIS, ranking the legs on a sphere, measures the second.
    corner = (-99.0617, 18.8816)
    west = GEOD.fwd(*corner, 270.0, 5_000.0)[:2]
    north = GEOD.fwd(*corner, 0.0, 5_000.0)[:2]
    vertices = [west, corner, north]
    route = Route(vertices)
    lon, lat, _ = GEOD.fwd(*corner, -45.1, 1_320.0)
    per_leg, along, seg = segment_minima(np.asarray(vertices, dtype=float), lon, lat)
    foot = np.concatenate(([0.0], np.cumsum(seg)[:-1])) + along
    truth = float(per_leg.min())

    [theirs] = await postgis_distances(pg, [route], [lon], [lat])
    ours, progress = sigueme_match(route, lon, lat)

    assert per_leg == pytest.approx([931.75, 935.01], abs=0.01)
    assert ours == pytest.approx(truth, abs=tolerance(truth))
    assert progress == pytest.approx(foot[0], abs=tolerance(foot[0]))  # on the first leg
    # PostGIS measures one leg or the other: the true nearest, or (today) the other.
    assert min(abs(theirs - d) for d in per_leg) < 0.01
    record_property("postgis_distance_m", theirs)
    record_property("postgis_error_m", theirs - truth)


async def test_line_locate_point_works_in_degrees_and_sigueme_does_not(
    pg: asyncpg.Pool, record_property: pytest.RecordProperty
) -> None:
    # Cuernavaca: 5 km north, then 5 km east. At 18.9 N a degree of longitude is 5 %
    # shorter than a degree of latitude, so a fraction of the line in degrees is not a
    # fraction of its length: at the corner it is 0.4875, not 0.5.
    start = (-99.2216, 18.9242)
    corner = GEOD.fwd(*start, 0.0, 5_000.0)[:2]
    end = GEOD.fwd(*corner, 90.0, 5_000.0)[:2]
    vertices = [start, corner, end]
    route = Route(vertices)
    degrees = LineString(route.lonlat)
    fixes = []
    for s in np.linspace(0.0, route.length_m, 21):
        base = route.point_at(float(s))
        for offset in (0.0, 60.0):
            # Off to the west-north-west: never equally far from both legs.
            lon, lat, _ = GEOD.fwd(*base, 300.0, offset)
            fixes.append((float(lon), float(lat)))

    rows = await pg.fetch(
        LOCATE_SQL,
        [json.dumps(route.geojson())] * len(fixes),
        [f[0] for f in fixes],
        [f[1] for f in fixes],
    )

    postgis_errors = []
    for (lon, lat), row in zip(fixes, rows, strict=True):
        fraction = float(row[0])
        _, truth = geodesic_truth(vertices, lon, lat)
        _, ours = sigueme_match(route, lon, lat)
        # sigueme: progress along the route in metres on the ellipsoid.
        assert ours == pytest.approx(truth, abs=tolerance(truth)), (lon, lat)
        # PostGIS: the planar fraction of the line in degrees, nothing more.
        assert fraction == pytest.approx(
            degrees.project(Point(lon, lat), normalized=True), abs=1e-9
        )
        postgis_errors.append(fraction * route.length_m - truth)
    worst = max(postgis_errors, key=abs)
    record_property("line_locate_point_worst_error_m", worst)
    assert abs(worst) > 100.0  # 124.5 m short at the corner
