"""Planned routes: parsing, validation, densification, the corridor and ``point_at``.

Truth comes from pyproj's ``Geod`` on WGS 84, never from sigueme itself: a route's
vertices, lengths and distances are checked against geodesics computed here.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polyline
import pytest
from pyproj import Geod
from shapely.geometry import Point, Polygon, shape

from sigueme.geo import Route, RouteError
from sigueme.geo.matching import match_point
from sigueme.geo.route import MAX_VERTICES

GEOD = Geod(ellps="WGS84")

# Places in Morelos and Chihuahua, (lon, lat).
CUERNAVACA = (-99.2216, 18.9242)
JIUTEPEC = (-99.1773, 18.8813)
YAUTEPEC = (-99.0617, 18.8816)
CUAUTLA = (-98.9547, 18.8121)
CHIHUAHUA = (-106.0889, 28.6353)

MORELOS_ROUTE = [CUERNAVACA, JIUTEPEC, YAUTEPEC, CUAUTLA]

# The classic example of Google's polyline documentation, at precision 5.
GOOGLE_EXAMPLE = "_p~iF~ps|U_ulLnnqC_mqNvxq`@"
GOOGLE_EXAMPLE_LATLON = [(38.5, -120.2), (40.7, -120.95), (43.252, -126.453)]


def geodesic_length(positions: Sequence[Sequence[float]]) -> float:
    p = np.asarray(positions, dtype=float)
    _, _, d = GEOD.inv(p[:-1, 0], p[:-1, 1], p[1:, 0], p[1:, 1])
    return float(np.sum(d))


def destination(lon: float, lat: float, azimuth: float, metres: float) -> tuple[float, float]:
    lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, metres)
    return float(lon2), float(lat2)


class DenseGeodesics:
    """A route's geodesics sampled every <= 1 m, for brute-force distances to it."""

    def __init__(self, vertices: Sequence[Sequence[float]]) -> None:
        parts = [np.asarray([vertices[0]], dtype=float)]
        for (lon1, lat1), (lon2, lat2) in itertools.pairwise(vertices):
            _, _, seg = GEOD.inv(lon1, lat1, lon2, lat2)
            inner = GEOD.npts(lon1, lat1, lon2, lat2, max(math.ceil(seg) - 1, 0))
            parts.append(np.asarray(inner, dtype=float).reshape(-1, 2))
            parts.append(np.asarray([[lon2, lat2]]))
        self.points = np.concatenate(parts)

    def _to(self, lon: float, lat: float, idx: np.ndarray) -> np.ndarray:
        p = self.points[idx]
        _, _, d = GEOD.inv(np.full(len(p), lon), np.full(len(p), lat), p[:, 0], p[:, 1])
        return np.asarray(d)

    def distance(self, lon: float, lat: float) -> float:
        """Least geodesic distance from (lon, lat) to the route, to a few millimetres."""
        coarse_idx = np.arange(0, len(self.points), 25)
        coarse = self._to(lon, lat, coarse_idx)
        # Every 25th point is within 12.5 m of any route point: look closely wherever
        # the coarse distance is within 2 x 12.5 m of the coarse minimum.
        near = coarse_idx[coarse <= coarse.min() + 25.0]
        fine_idx = np.unique(np.clip(near[:, None] + np.arange(-25, 26), 0, len(self.points) - 1))
        return float(self._to(lon, lat, fine_idx).min())


def contains_in_order(lonlat: np.ndarray, vertices: Sequence[Sequence[float]]) -> bool:
    """Every vertex appears (to 1e-9 degrees) among ``lonlat``'s rows, in order."""
    row = 0
    for v in vertices:
        hits = np.flatnonzero(np.all(np.abs(lonlat[row:] - np.asarray(v)) < 1e-9, axis=1))
        if hits.size == 0:
            return False
        row += int(hits[0]) + 1
    return True


def refusal(call: Any) -> RouteError:
    with pytest.raises(RouteError) as info:
        call()
    err = info.value
    assert isinstance(err, ValueError)
    assert err.field
    assert err.reason
    assert str(err) == f"{err.field}: {err.reason}"
    return err


# -- GeoJSON --------------------------------------------------------------------------

LINESTRING = {"type": "LineString", "coordinates": [list(p) for p in MORELOS_ROUTE]}
FEATURE = {
    "type": "Feature",
    "properties": {"name": "Cuernavaca - Cuautla"},
    "geometry": LINESTRING,
}


@pytest.mark.parametrize(
    "given",
    [LINESTRING, FEATURE, json.dumps(LINESTRING), json.dumps(FEATURE)],
    ids=["linestring", "feature", "linestring-json", "feature-json"],
)
def test_geojson_forms_give_the_same_route(given: Any) -> None:
    route = Route.from_geojson(given)

    assert route.start == CUERNAVACA
    assert route.end == CUAUTLA
    assert contains_in_order(route.lonlat, MORELOS_ROUTE)
    assert route.length_m == pytest.approx(geodesic_length(MORELOS_ROUTE), abs=1e-3)
    assert np.array_equal(route.lonlat, Route(MORELOS_ROUTE).lonlat)


def test_altitude_is_allowed_and_ignored() -> None:
    with_altitude = [[lon, lat, 1500.0 + i] for i, (lon, lat) in enumerate(MORELOS_ROUTE)]

    route = Route.from_geojson({"type": "LineString", "coordinates": with_altitude})

    assert np.array_equal(route.lonlat, Route(MORELOS_ROUTE).lonlat)


def test_repeated_points_are_dropped() -> None:
    stuttering = [CUERNAVACA, CUERNAVACA, JIUTEPEC, JIUTEPEC, JIUTEPEC, YAUTEPEC]

    route = Route(stuttering)

    assert np.array_equal(route.lonlat, Route([CUERNAVACA, JIUTEPEC, YAUTEPEC]).lonlat)


def test_length_is_the_sum_of_the_geodesics() -> None:
    route = Route(MORELOS_ROUTE)

    assert route.length_m == pytest.approx(geodesic_length(MORELOS_ROUTE), abs=1e-3)
    assert route.cum_m[0] == 0.0
    assert route.cum_m[-1] == route.length_m
    assert np.all(np.diff(route.cum_m) > 0)


def test_geojson_output_reloads_as_the_same_route() -> None:
    route = Route(MORELOS_ROUTE)

    again = Route.from_geojson(json.dumps(route.geojson()))

    assert again.length_m == pytest.approx(route.length_m, abs=1e-3)
    assert again.start == route.start
    assert again.end == route.end
    assert contains_in_order(again.lonlat, route.lonlat.tolist())


# -- encoded polylines ------------------------------------------------------------------


def test_google_example_decodes_to_its_documented_vertices() -> None:
    # The codec sigueme relies on reads the documented example as documented ...
    assert polyline.decode(GOOGLE_EXAMPLE, 5) == GOOGLE_EXAMPLE_LATLON
    # ... and its first two points, ~245 km apart, make a route of those vertices.
    route = Route.from_polyline(GOOGLE_EXAMPLE[:18], 5)

    assert route.start == (-120.2, 38.5)
    assert route.end == (-120.95, 40.7)
    assert route.length_m == pytest.approx(
        geodesic_length([(-120.2, 38.5), (-120.95, 40.7)]), abs=1e-3
    )


def test_google_example_is_refused_as_too_long() -> None:
    # 789 km: longer than any trip we monitor.
    err = refusal(lambda: Route.from_polyline(GOOGLE_EXAMPLE, 5))

    assert err.field == "polyline"
    assert "789.4 km" in err.reason
    assert "500 km" in err.reason


def test_google_example_at_precision_6_is_a_route_ten_times_smaller() -> None:
    route = Route.from_polyline(GOOGLE_EXAMPLE, 6)
    expected = [(lon / 10, lat / 10) for lat, lon in GOOGLE_EXAMPLE_LATLON]

    assert contains_in_order(route.lonlat, expected)
    assert route.length_m == pytest.approx(geodesic_length(expected), abs=1e-3)


@pytest.mark.parametrize("precision", [5, 6])
def test_encoded_morelos_route_decodes_to_its_vertices(precision: int) -> None:
    # Coordinates with exactly `precision` decimals survive encoding unchanged.
    rng = np.random.default_rng(precision)
    latlon = [
        (
            round(lat + rng.uniform(-1e-3, 1e-3), precision),
            round(lon + rng.uniform(-1e-3, 1e-3), precision),
        )
        for lon, lat in MORELOS_ROUTE
    ]
    encoded = polyline.encode(latlon, precision)
    expected = [(lon, lat) for lat, lon in latlon]

    route = Route.from_polyline(encoded, precision)

    assert contains_in_order(route.lonlat, expected)
    assert route.start == pytest.approx(expected[0], abs=1e-12)
    assert route.end == pytest.approx(expected[-1], abs=1e-12)
    assert route.length_m == pytest.approx(geodesic_length(expected), abs=1e-3)


def test_precision_6_polyline_read_at_precision_5_is_refused() -> None:
    encoded = polyline.encode([(lat, lon) for lon, lat in MORELOS_ROUTE], 6)

    err = refusal(lambda: Route.from_polyline(encoded, 5))

    # Read ten times too large: longitude -992.216.
    assert err.field == "polyline[0]"
    assert "longitude -992.216 is outside" in err.reason


@pytest.mark.parametrize("precision", [0, 4, 7, 10])
def test_unsupported_precision_is_refused(precision: int) -> None:
    encoded = polyline.encode([(lat, lon) for lon, lat in MORELOS_ROUTE], 5)

    err = refusal(lambda: Route.from_polyline(encoded, precision))

    assert err.field == "precision"
    assert "5 or 6" in err.reason


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (b"_p~iF~ps|U_ulLnnqC", "non-empty"),
        (GOOGLE_EXAMPLE[:-2], "cannot be decoded"),
        ("_p~iF", "cannot be decoded"),
        ("~~~~~~", "cannot be decoded"),
        (GOOGLE_EXAMPLE + " ", "characters"),
        ("_p~iF\n~ps|U", "characters"),
        ("_p~iF~ps|Ué", "characters"),
    ],
    ids=[
        "empty",
        "none",
        "bytes",
        "truncated",
        "one-number",
        "never-ending",
        "space",
        "newline",
        "accent",
    ],
)
def test_corrupt_polyline_is_refused(encoded: Any, reason: str) -> None:
    err = refusal(lambda: Route.from_polyline(encoded, 5))

    assert err.field == "polyline"
    assert reason in err.reason


def test_polyline_of_a_single_point_is_refused() -> None:
    err = refusal(lambda: Route.from_polyline(polyline.encode([(18.9242, -99.2216)], 5)))

    assert err.field == "polyline"
    assert "two distinct points" in err.reason


# -- refusals -----------------------------------------------------------------------


def _line(n: int, spacing_m: float, start: tuple[float, float] = CHIHUAHUA) -> list[list[float]]:
    lon2, lat2 = destination(*start, 135.0, spacing_m * (n - 1))
    pts = GEOD.npts(*start, lon2, lat2, n - 2)
    return [list(start), *[list(p) for p in pts], [lon2, lat2]]


A, B = list(CUERNAVACA), list(JIUTEPEC)


@pytest.mark.parametrize(
    ("positions", "field", "reason"),
    [
        ([], "route", "two distinct points"),
        ([A], "route", "two distinct points"),
        ([A, A, A], "route", "two distinct points"),
        ([A, [math.nan, 18.9]], "route[1]", "longitude must be finite"),
        ([A, [-99.1, math.nan]], "route[1]", "latitude must be finite"),
        ([[math.inf, 18.9], B], "route[0]", "longitude must be finite"),
        ([A, [-99.1, -math.inf]], "route[1]", "latitude must be finite"),
        ([A, [-99.1, 90.5]], "route[1]", "latitude 90.5 is outside"),
        ([A, [-99.1, -91]], "route[1]", "latitude -91 is outside"),
        ([A, [-180.5, 18.9]], "route[1]", "longitude -180.5 is outside"),
        ([A, [181, 18.9]], "route[1]", "longitude 181 is outside"),
        ([[True, 18.9], B], "route[0]", "longitude must be a number, got bool"),
        ([A, [-99.1, False]], "route[1]", "latitude must be a number, got bool"),
        ([["-99.2", "18.9"], B], "route[0]", "longitude must be a number, got str"),
        ([A, [-99.1, None]], "route[1]", "latitude must be a number, got NoneType"),
        ([A, "-99.1,18.9"], "route[1]", "[lon, lat]"),
        ([A, [-99.1]], "route[1]", "[lon, lat]"),
        ([A, [-99.1, 18.9, 0, 0]], "route[1]", "[lon, lat]"),
        ([A, {"lon": -99.1, "lat": 18.9}], "route[1]", "[lon, lat]"),
        ("-99.2,18.9,-99.1,18.95", "route", "list of [lon, lat]"),
        (None, "route", "list of [lon, lat]"),
        ([A, destination(*CUERNAVACA, 80.0, 9.0)], "route", "9.0 m long; at least 10 m"),
        ([A, [A[0] + 1e-8, A[1]]], "route", "0.0 m long; at least 10 m"),
        ([list(CHIHUAHUA), destination(*CHIHUAHUA, 150.0, 500_100.0)], "route", "500.1 km long"),
    ],
    ids=[
        "empty",
        "one-point",
        "one-point-repeated",
        "nan-lon",
        "nan-lat",
        "inf-lon",
        "minus-inf-lat",
        "lat-above-90",
        "lat-below-minus-90",
        "lon-below-minus-180",
        "lon-above-180",
        "bool-lon",
        "bool-lat",
        "string-numbers",
        "null-lat",
        "position-as-string",
        "position-too-short",
        "position-too-long",
        "position-as-object",
        "coordinates-as-string",
        "coordinates-null",
        "too-short-9m",
        "too-short-1mm",
        "too-long-500.1km",
    ],
)
def test_bad_route_is_refused_with_field_and_reason(
    positions: Any, field: str, reason: str
) -> None:
    err = refusal(lambda: Route(positions))

    assert err.field == field
    assert reason in err.reason


def test_geojson_refusals_name_the_geojson_field() -> None:
    bad = {"type": "LineString", "coordinates": [A, [-99.1, 95.0]]}

    err = refusal(lambda: Route.from_geojson(bad))

    assert err.field == "route.coordinates[1]"
    assert "latitude 95.0 is outside" in err.reason


def test_too_long_route_says_how_long_and_what_to_do() -> None:
    err = refusal(lambda: Route([list(CHIHUAHUA), destination(*CHIHUAHUA, 150.0, 612_345.0)]))

    assert err.reason.startswith("the route is 612.3 km long; at most 500 km")
    assert "split" in err.reason


def test_length_bounds_are_inclusive_of_what_we_monitor() -> None:
    just_under = Route([list(CHIHUAHUA), destination(*CHIHUAHUA, 150.0, 499_900.0)])
    short = Route([A, destination(*CUERNAVACA, 80.0, 10.5)])

    assert just_under.length_m == pytest.approx(499_900.0, abs=1e-3)
    assert short.length_m == pytest.approx(10.5, abs=1e-6)


def test_vertex_limit() -> None:
    most = _line(20_000, 20.0)
    too_many = _line(20_001, 20.0)

    route = Route(most)
    err = refusal(lambda: Route(too_many))

    assert route.length_m == pytest.approx(19_999 * 20.0, abs=1e-2)
    assert err.field == "route"
    assert "20001 vertices; at most 20000" in err.reason


def test_polyline_vertex_limit() -> None:
    latlon = [(round(lat, 5), round(lon, 5)) for lon, lat in _line(20_001, 20.0)]

    err = refusal(lambda: Route.from_polyline(polyline.encode(latlon, 5), 5))

    assert err.field == "polyline"
    assert "at most 20000" in err.reason


def test_huge_integer_coordinate_is_refused_not_a_crash() -> None:
    # JSON integers have no size limit; Python parses this one to an int that does not
    # fit a float. It must be refused like any other bad coordinate (a 4xx), not raise
    # OverflowError (a 500) from the validator.
    text = '{"type": "LineString", "coordinates": [[-99.2, 1' + "0" * 400 + "], [-99.1, 18.9]]}"

    err = refusal(lambda: Route.from_geojson(text))

    assert err.field == "route.coordinates[0]"
    assert "latitude" in err.reason


@pytest.mark.parametrize(
    ("given", "field", "reason"),
    [
        ({"type": "Point", "coordinates": A}, "route.type", "'Point'"),
        ({"type": "MultiLineString", "coordinates": [[A, B]]}, "route.type", "'MultiLineString'"),
        ({"type": "Polygon", "coordinates": [[A, B, [-99.1, 18.8], A]]}, "route.type", "'Polygon'"),
        ({"type": "FeatureCollection", "features": [FEATURE]}, "route.type", "'FeatureCollection'"),
        (
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": A}},
            "route.type",
            "'Point'",
        ),
        ({"type": "Feature", "properties": {}}, "route.geometry", "no geometry"),
        ({"type": "Feature", "geometry": None}, "route.geometry", "no geometry"),
        ({"coordinates": [A, B]}, "route.type", "LineString is expected"),
        ({"type": "LineString"}, "route.coordinates", "list of [lon, lat]"),
        ({"type": "LineString", "coordinates": "A,B"}, "route.coordinates", "list of [lon, lat]"),
        ("[[-99.2, 18.9], [-99.1, 18.95]]", "route", "GeoJSON object"),
        ('{"type": "LineString", "coordinates": [[-99.2, 18.9]', "route", "not valid JSON"),
        ("", "route", "not valid JSON"),
        (42, "route", "GeoJSON object"),
        (None, "route", "GeoJSON object"),
    ],
    ids=[
        "point",
        "multilinestring",
        "polygon",
        "featurecollection",
        "feature-of-point",
        "feature-without-geometry",
        "feature-null-geometry",
        "no-type",
        "no-coordinates",
        "coordinates-string",
        "json-array",
        "truncated-json",
        "empty-string",
        "number",
        "none",
    ],
)
def test_wrong_geojson_is_refused(given: Any, field: str, reason: str) -> None:
    err = refusal(lambda: Route.from_geojson(given))

    assert err.field == field
    assert reason in err.reason


# -- densification ------------------------------------------------------------------


def test_long_segment_is_densified_along_the_geodesic() -> None:
    end = destination(*CHIHUAHUA, 37.0, 100_000.0)
    az, _, total = GEOD.inv(*CHIHUAHUA, *end)

    route = Route([CHIHUAHUA, end])
    lon, lat = route.lonlat[:, 0], route.lonlat[:, 1]

    assert route.start == CHIHUAHUA
    assert route.end == end
    assert len(route.lonlat) >= 101
    _, _, pieces = GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])
    assert np.max(pieces) <= 1_000.0 + 1e-6
    assert np.sum(pieces) == pytest.approx(total, abs=1e-3)
    assert route.length_m == pytest.approx(total, abs=1e-3)
    # Every vertex is where the geodesic from the start is at that distance.
    n = len(lon)
    _, _, along = GEOD.inv(np.full(n, CHIHUAHUA[0]), np.full(n, CHIHUAHUA[1]), lon, lat)
    on_lon, on_lat, _ = GEOD.fwd(
        np.full(n, CHIHUAHUA[0]), np.full(n, CHIHUAHUA[1]), np.full(n, az), along
    )
    _, _, off = GEOD.inv(on_lon, on_lat, lon, lat)
    assert np.max(off) < 1e-3
    assert np.allclose(route.cum_m, along, atol=1e-3)


def test_short_segments_are_kept_as_given() -> None:
    route = Route(MORELOS_ROUTE[:2])  # ~6.6 km: densified, but its ends are kept
    short = [
        CUERNAVACA,
        destination(*CUERNAVACA, 45.0, 800.0),
        destination(*CUERNAVACA, 60.0, 1500.0),
    ]

    assert np.array_equal(Route(short).lonlat, np.asarray(short))
    assert route.start == CUERNAVACA
    assert route.end == JIUTEPEC


# -- corridor -----------------------------------------------------------------------


@pytest.mark.parametrize("width", [50.0, 150.0, 1_000.0])
def test_corridor_holds_what_is_within_the_width_and_nothing_beyond(width: float) -> None:
    vertices = [CUERNAVACA, JIUTEPEC, YAUTEPEC]
    route = Route(vertices)
    corridor = shape(route.corridor_geojson(width))
    # The polygon rounds joins and ends with 8 chords a quarter circle: up to 0.5 % of
    # the width inside the true curve. Points in a band of 1 % + 1 m around the width
    # are not judged.
    band = 0.01 * width + 1.0
    dense = DenseGeodesics(vertices)
    rng = np.random.default_rng(int(width))
    inside = outside = 0
    for s in np.linspace(0.0, route.length_m, 60):
        base_lon, base_lat = route.point_at(float(s))
        for d in (rng.uniform(0.0, width), rng.uniform(width, 2.0 * width)):
            lon, lat = destination(base_lon, base_lat, rng.uniform(-180.0, 180.0), d)
            true = dense.distance(lon, lat)
            if true <= width - band:
                assert corridor.contains(Point(lon, lat)), (s, d, true)
                inside += 1
            elif true >= width + band:
                assert not corridor.contains(Point(lon, lat)), (s, d, true)
                outside += 1
    assert inside >= 30
    assert outside >= 20


def test_corridor_in_metres_is_the_route_buffer() -> None:
    route = Route(MORELOS_ROUTE)
    width = 150.0

    corridor = route.corridor(width)

    assert corridor.contains(route.line)
    # Area of a buffer of a polyline without self-overlap: 2 w L + pi w^2, less joins'
    # overlap on the inside of bends (a few w^2).
    assert corridor.area == pytest.approx(2 * width * route.line.length, rel=0.01)


@pytest.mark.parametrize("width", [0.0, -10.0, math.nan, math.inf])
def test_corridor_width_must_be_positive_metres(width: float) -> None:
    route = Route(MORELOS_ROUTE)

    err = refusal(lambda: route.corridor(width))

    assert err.field == "corridor_m"


# -- point_at -----------------------------------------------------------------------


def test_point_at_walks_the_geodesic() -> None:
    end = destination(*CUERNAVACA, 70.0, 25_000.0)
    route = Route([CUERNAVACA, end])

    for s in np.linspace(0.0, route.length_m, 51):
        lon, lat = route.point_at(float(s))
        _, _, from_start = GEOD.inv(*CUERNAVACA, lon, lat)
        _, _, to_end = GEOD.inv(lon, lat, *end)
        assert from_start == pytest.approx(s, abs=1e-3)
        assert to_end == pytest.approx(route.length_m - s, abs=1e-3)


def test_point_at_round_trips_with_progress() -> None:
    route = Route(MORELOS_ROUTE)

    for s in np.linspace(0.0, route.length_m, 201):
        lon, lat = route.point_at(float(s))
        x, y = route.frame.forward(lon, lat)
        m = match_point(route, x, y, s - 100.0, s + 100.0, float(s), 1.0)
        assert m.distance_m < 1e-3
        assert m.progress_m == pytest.approx(s, abs=1e-3)


def test_point_at_clamps_to_the_ends() -> None:
    route = Route(MORELOS_ROUTE)

    assert route.point_at(-250.0) == pytest.approx(CUERNAVACA, abs=1e-12)
    assert route.point_at(0.0) == pytest.approx(CUERNAVACA, abs=1e-12)
    assert route.point_at(route.length_m) == pytest.approx(CUAUTLA, abs=1e-9)
    assert route.point_at(route.length_m + 250.0) == pytest.approx(CUAUTLA, abs=1e-9)


def test_nearest_of_a_point_on_the_route_is_that_point() -> None:
    # Route.nearest is "the route point nearest to (x, y), anywhere": a point taken
    # from the route must come back at distance 0 and its own progress.
    route = Route([CUERNAVACA, JIUTEPEC])

    for s in np.linspace(0.0, route.length_m, 21):
        x, y = route.frame.forward(*route.point_at(float(s)))
        distance, progress = route.nearest(x, y)
        assert distance == pytest.approx(0.0, abs=1e-3), s
        assert progress == pytest.approx(s, abs=1e-3), s


# -- corridors of hard routes (found by review) ------------------------------------------


def _winding(n: int, step_m: float, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    lon, lat = -99.2, 18.9
    pts = []
    for azimuth in np.cumsum(rng.normal(0.0, 8.0, n)):
        pts.append((lon, lat))
        lon, lat, _ = GEOD.fwd(lon, lat, float(azimuth), step_m)
    return pts


def test_an_out_and_back_corridor_is_one_polygon_without_slivers() -> None:
    """A winding road driven there and back on the same vertices: one buffer of it
    leaves slivers of rounding beside the corridor; the corridor is still one polygon."""
    there = _winding(3_000, 25.0, seed=1)
    route = Route(there + there[::-1][1:])
    corridor = route.corridor(1_000.0)
    assert isinstance(corridor, Polygon)
    # It covers the whole route at its full width, and nothing far from it.
    # (arcs are drawn with 8 segments a quarter: up to 5 m short of the true circle)
    assert corridor.buffer(-990.0).contains(route.line.interpolate(0.5, normalized=True))
    assert corridor.area < route.line.buffer(1_001.0).area


def test_a_route_that_loops_on_itself_gets_the_same_corridor_as_one_buffer() -> None:
    """Circling one block many times: the corridor built piece by piece (fast) is the
    buffer of the whole line (which takes far longer), to within rounding."""
    lon0, lat0 = -99.23, 18.92
    loop = [GEOD.fwd(lon0, lat0, az, 300.0)[:2] for az in range(0, 360, 10)]
    route = Route([tuple(map(float, p)) for p in loop * 30])
    corridor = route.corridor(150.0)
    whole = route.line.buffer(150.0, quad_segs=8)
    assert isinstance(corridor, Polygon)
    assert corridor.symmetric_difference(whole).area < 1e-6 * whole.area


def test_a_stored_route_longer_than_the_vertex_limit_after_densifying_rebuilds() -> None:
    """Accepted at filing (20,000 vertices as sent), densified to more: the stored route
    must still load when the trip is monitored."""
    pts = _winding(19_998, 5.0, seed=2)
    lon, lat = pts[-1]
    far = GEOD.fwd(lon, lat, 90.0, 300_000.0)[:2]
    route = Route([*pts, (float(far[0]), float(far[1]))])
    assert len(route.lonlat) > MAX_VERTICES
    again = Route(route.lonlat.tolist(), max_vertices=None)
    assert again.length_m == pytest.approx(route.length_m, abs=1e-3)
    with pytest.raises(RouteError):
        Route(route.lonlat.tolist())
