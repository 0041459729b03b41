"""Property tests of route geometry against pyproj's ``Geod`` as an independent oracle.

sigueme measures distances from a fix to the route as straight lines in the route's
tangent plane. The oracle here measures them on the ellipsoid: for each segment of
the route (a geodesic between two vertices) it finds the point of that geodesic
nearest to the fix with ``Geod.fwd``/``Geod.inv`` alone, by sampling then a
golden-section search. Its accuracy (centimetres and better) is checked first.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from geodesic_oracle import GEOD, geodesic_nearest, tolerance
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sigueme.geo import Route
from sigueme.geo.matching import match_point
from sigueme.geo.route import MAX_LENGTH_M

# -- strategies ---------------------------------------------------------------------

mexico = st.tuples(st.floats(-118.0, -86.0), st.floats(14.5, 32.7))
morelos = st.tuples(st.floats(-99.5, -98.6), st.floats(18.3, 19.2))
chihuahua = st.tuples(st.floats(-106.3, -105.7), st.floats(28.4, 28.8))


@st.composite
def route_vertices(draw: st.DrawFn) -> list[tuple[float, float]]:
    """2-50 vertices anywhere in Mexico, segments 10 m - 30 km, at most 500 km in all."""
    lon, lat = draw(st.one_of(mexico, morelos, chihuahua))
    n = draw(st.integers(2, 50))
    # Straight-ish roads reach the far ends of the frame; twisty ones fold back.
    max_turn = draw(st.sampled_from([0.0, 10.0, 45.0, 180.0]))
    azimuth = draw(st.floats(-180.0, 180.0))
    vertices = [(lon, lat)]
    total = 0.0
    for _ in range(n - 1):
        length = 10.0 ** draw(st.floats(math.log10(10.001), math.log10(30_000.0)))
        if total + length > MAX_LENGTH_M - 100.0:
            break
        azimuth += draw(st.floats(-max_turn, max_turn)) if max_turn else 0.0
        lon2, lat2, _ = GEOD.fwd(*vertices[-1], azimuth, length)
        vertices.append((float(lon2), float(lat2)))
        total += length
    return vertices


@st.composite
def routes_with_fix(draw: st.DrawFn) -> tuple[list[tuple[float, float]], float, float]:
    """A route and a fix 0-3 km (in any direction) from a random point of it."""
    vertices = draw(route_vertices())
    i = draw(st.integers(0, len(vertices) - 2))
    share = draw(st.floats(0.0, 1.0))
    (lon1, lat1), (lon2, lat2) = vertices[i], vertices[i + 1]
    az, _, seg = GEOD.inv(lon1, lat1, lon2, lat2)
    base_lon, base_lat, _ = GEOD.fwd(lon1, lat1, az, share * seg)
    offset = draw(st.one_of(st.just(0.0), st.floats(0.0, 3_000.0)))
    lon, lat, _ = GEOD.fwd(base_lon, base_lat, draw(st.floats(-180.0, 180.0)), offset)
    return vertices, float(lon), float(lat)


# -- the oracle's own accuracy ---------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    start=st.one_of(mexico, morelos, chihuahua),
    azimuth=st.floats(-180.0, 180.0),
    length=st.floats(100.0, 30_000.0),
    share=st.floats(0.05, 0.95),
    offset=st.floats(0.0, 3_000.0),
    side=st.sampled_from([-90.0, 90.0]),
)
def test_oracle_finds_the_foot_of_a_perpendicular_geodesic(
    start: tuple[float, float],
    azimuth: float,
    length: float,
    share: float,
    offset: float,
    side: float,
) -> None:
    # A geodesic leaving the route's geodesic at a right angle from F: its points are
    # nearest to F, at their distance along it (first variation of arc length).
    end_lon, end_lat, _ = GEOD.fwd(*start, azimuth, length)
    foot_lon, foot_lat, back = GEOD.fwd(*start, azimuth, share * length)
    heading_at_foot = back + 180.0
    lon, lat, _ = GEOD.fwd(foot_lon, foot_lat, heading_at_foot + side, offset)
    assume(share * length > offset * 0.01 + 1.0)

    nearest = geodesic_nearest([start, (end_lon, end_lat)], lon, lat)

    assert nearest.distance_m == pytest.approx(offset, abs=0.01)
    assert nearest.progress_m == pytest.approx(share * length, abs=0.01)
    assert not nearest.ambiguous


def test_oracle_beyond_the_end_is_the_distance_to_the_end() -> None:
    start = (-99.2216, 18.9242)
    end_lon, end_lat, back = GEOD.fwd(*start, 70.0, 5_000.0)
    # Straight on past the end, and off to the side behind it.
    for turn, metres in ((0.0, 800.0), (40.0, 1_500.0), (-60.0, 250.0)):
        lon, lat, _ = GEOD.fwd(end_lon, end_lat, back + 180.0 + turn, metres)
        _, _, truth = GEOD.inv(end_lon, end_lat, lon, lat)

        nearest = geodesic_nearest([start, (end_lon, end_lat)], lon, lat)

        assert nearest.distance_m == pytest.approx(truth, abs=1e-3)
        assert nearest.progress_m == pytest.approx(5_000.0, abs=1e-3)


def test_oracle_sees_a_tie_between_two_legs() -> None:
    # Out and back on two geodesics from one vertex in a V: a fix on the bisector is
    # equally far from both.
    apex = (-99.2216, 18.9242)
    a_lon, a_lat, _ = GEOD.fwd(*apex, 10.0, 4_000.0)
    b_lon, b_lat, _ = GEOD.fwd(*apex, 70.0, 4_000.0)
    lon, lat, _ = GEOD.fwd(*apex, 40.0, 3_000.0)

    nearest = geodesic_nearest([(a_lon, a_lat), apex, (b_lon, b_lat)], lon, lat)

    assert nearest.ambiguous


# -- sigueme against the oracle ------------------------------------------------------


def _match_anywhere(route: Route, lon: float, lat: float) -> tuple[float, float]:
    # The whole route as the window, candidates within a centimetre of the nearest.
    x, y = route.frame.forward(lon, lat)
    m = match_point(route, x, y, 0.0, route.length_m, 0.0, 0.01)
    return m.distance_m, m.progress_m


@settings(max_examples=150, deadline=None)
@given(case=routes_with_fix())
def test_distance_and_progress_are_geodesic(
    case: tuple[list[tuple[float, float]], float, float],
) -> None:
    vertices, lon, lat = case
    route = Route(vertices)
    truth = geodesic_nearest(vertices, lon, lat)

    distance, progress = _match_anywhere(route, lon, lat)

    # (a) distance to the route.
    assert distance == pytest.approx(truth.distance_m, abs=tolerance(truth.distance_m))
    # (b) progress of the nearest point, where there is one nearest point.
    assume(not truth.ambiguous)
    assert progress == pytest.approx(truth.progress_m, abs=tolerance(truth.progress_m))


@settings(max_examples=100, deadline=None)
@given(case=routes_with_fix())
def test_route_nearest_is_geodesic(case: tuple[list[tuple[float, float]], float, float]) -> None:
    vertices, lon, lat = case
    route = Route(vertices)

    distance, progress = route.nearest(*route.frame.forward(lon, lat))

    truth = geodesic_nearest(vertices, lon, lat)

    assert distance == pytest.approx(truth.distance_m, abs=tolerance(truth.distance_m))
    assume(not truth.ambiguous)
    assert progress == pytest.approx(truth.progress_m, abs=tolerance(truth.progress_m))


@settings(max_examples=100, deadline=None)
@given(vertices=route_vertices())
def test_length_is_the_sum_of_geodesic_segments(vertices: list[tuple[float, float]]) -> None:
    v = np.asarray(vertices)
    _, _, seg = GEOD.inv(v[:-1, 0], v[:-1, 1], v[1:, 0], v[1:, 1])

    route = Route(vertices)

    # (c) densifying along the geodesics changes nothing.
    assert route.length_m == pytest.approx(float(np.sum(seg)), rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(
    vertices=route_vertices(),
    shares=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10),
    azimuths=st.lists(st.floats(-180.0, 180.0), min_size=10, max_size=10),
)
def test_frame_scale_is_true_to_a_thousandth(
    vertices: list[tuple[float, float]], shares: list[float], azimuths: list[float]
) -> None:
    route = Route(vertices)

    for share, azimuth in zip(shares, azimuths, strict=False):
        lon, lat = route.point_at(share * route.length_m)
        lon2, lat2, _ = GEOD.fwd(lon, lat, azimuth, 100.0)
        x1, y1 = route.frame.forward(lon, lat)
        x2, y2 = route.frame.forward(lon2, lat2)

        # (d) 100 m on the ground is 100 m in the frame, to 0.1 %.
        assert math.hypot(x2 - x1, y2 - y1) == pytest.approx(100.0, rel=1e-3)
