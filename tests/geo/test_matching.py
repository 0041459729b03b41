"""Matching fixes to routes that pass the same place twice, and the batched matcher.

A traveller's progress must follow them along the route: on a road driven out and
back, round a loop that crosses itself, or through towns where the way home shares
a road with the way out, the fix must be matched to the leg they are on, never to
the other one (progress would leap and the monitor would cry "backtracking" or
"late"). Checked through the monitor (what the traveller's watchers see) and through
``match_point`` with the windows a monitor uses.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from sigueme.geo import EventKind, Fix, Route, TripMonitor, TripPlan
from sigueme.geo.matching import match_many, match_point

GEOD = Geod(ellps="WGS84")
T0 = 1_717_000_000.0  # 2024-05-29, election week
SPEED = 12.0  # m/s, a car in town
EVERY = 5.0  # s between fixes
ACCURACY = 5.0  # m, what the phone reports
NOISE = 4.0  # m, how far the fix actually is from the road
TOLERANCE = 30.0 + ACCURACY  # the monitor's candidate tolerance for such a fix

CUERNAVACA = (-99.2216, 18.9242)
JIUTEPEC = (-99.1773, 18.8813)
TEMIXCO = (-99.2325, 18.8497)
CUAUTLA = (-98.9547, 18.8121)
YAUTEPEC = (-99.0617, 18.8816)


def path(
    start: tuple[float, float], steps: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Vertices from ``start`` by (azimuth, metres) steps along geodesics."""
    out = [start]
    for azimuth, metres in steps:
        lon, lat, _ = GEOD.fwd(*out[-1], azimuth, metres)
        out.append((float(lon), float(lat)))
    return out


def offset(point: tuple[float, float], azimuth: float, metres: float) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*point, azimuth, metres)
    return float(lon), float(lat)


@dataclass(frozen=True)
class Sample:
    t: float
    lon: float
    lat: float
    true_progress: float


def drive(
    route: Route, seed: int, dwell: int = 3, speed: float = SPEED, every: float = EVERY
) -> list[Sample]:
    """Fixes every ``every`` s of a traveller at ``speed`` along the whole route (a car
    at 12 m/s every 5 s unless told), a few metres off the road in random directions,
    then ``dwell`` more at the destination."""
    rng = np.random.default_rng(seed)
    n = math.ceil(route.length_m / (speed * every))
    out = []
    for k in range(n + 1 + dwell):
        s = min(k * speed * every, route.length_m)
        lon, lat = offset(route.point_at(s), rng.uniform(-180.0, 180.0), rng.uniform(0.0, NOISE))
        out.append(Sample(T0 + k * every, lon, lat, s))
    return out


def monitor_trip(
    route: Route, samples: list[Sample], speed: float = SPEED
) -> tuple[list[float], list[float], list[EventKind]]:
    plan = TripPlan(route=route, departure=T0, arrival=T0 + route.length_m / speed)
    monitor = TripMonitor(plan)
    progress, distance, events = [], [], []
    for f in samples:
        ev = monitor.update(Fix(t=f.t, lat=f.lat, lon=f.lon, accuracy=ACCURACY))
        progress.append(ev.progress_m)
        distance.append(ev.distance_m)
        events += [e.kind for e in ev.events]
    return progress, distance, events


def windowed_trip(route: Route, samples: list[Sample]) -> list[float]:
    """``match_point`` as a monitor calls it: a window around the last progress,
    reaching back 150 m and forward 250 m."""
    progress: list[float] = []
    last = 0.0
    for k, f in enumerate(samples):
        x, y = route.frame.forward(f.lon, f.lat)
        lo, hi = (0.0, route.length_m) if k == 0 else (last - 150.0, last + 250.0)
        last = match_point(route, x, y, lo, hi, last, TOLERANCE).progress_m
        progress.append(last)
    return progress


FOLLOW_M = 25.0
"""How far progress may be from the traveller's true progress. The same place on the
other leg of a route that turns back on itself is at least 2 x (TOLERANCE + NOISE)
= 78 m away in progress, outside the turn zone."""


def assert_follows(
    progress: list[float], samples: list[Sample], route: Route, turns: Sequence[float] = ()
) -> None:
    """Progress tracks the traveller from 0 to the whole length: never on the other
    leg, never falling back.

    Within TOLERANCE + NOISE of a point where the route turns back on itself (progress
    in ``turns``), both legs are as near as each other and either is a fair match:
    those fixes are not judged.
    """
    zone = TOLERANCE + NOISE
    judged = [
        (k, p, f.true_progress)
        for k, (p, f) in enumerate(zip(progress, samples, strict=True))
        if all(abs(f.true_progress - turn) > zone for turn in turns)
    ]
    for k, p, true in judged:
        assert abs(p - true) <= FOLLOW_M, f"fix {k} at {true:.0f} m matched to {p:.0f} m"
    for (k, p, _), (_, q, _) in itertools.pairwise(judged):
        assert q >= p - FOLLOW_M, f"progress fell back from {p:.0f} m to {q:.0f} m after fix {k}"
    assert progress[0] == pytest.approx(0.0, abs=NOISE + 1.0)
    assert progress[-1] == pytest.approx(route.length_m, abs=NOISE + 1.0)


def assert_trip_is_calm(
    progress: list[float], distance: list[float], events: list[EventKind]
) -> None:
    """What the watchers see of a trip driven as planned: on the road, arrived, and
    nothing else happened."""
    assert max(distance) <= NOISE + 1.0
    assert events == [EventKind.ARRIVED], events


# -- routes ---------------------------------------------------------------------------


def out_and_back() -> Route:
    """Cuernavaca: 3.2 km out along a road with two bends, then back the same way."""
    there = path(CUERNAVACA, [(60.0, 1_200.0), (95.0, 900.0), (40.0, 1_100.0)])
    return Route(there + there[-2::-1])


def figure_eight() -> Route:
    """A lemniscate around Cuautla, 2.5 km across each lobe: the route crosses itself
    at the middle, halfway along, at right angles. It starts and ends 300 m from
    the crossing."""
    a = 2_500.0
    vertices = []
    for t in np.linspace(0.5 * math.pi + 0.17, 2.5 * math.pi - 0.17, 240):
        x = a * math.cos(t) / (1 + math.sin(t) ** 2)
        y = a * math.sin(t) * math.cos(t) / (1 + math.sin(t) ** 2)
        vertices.append(offset(CUAUTLA, math.degrees(math.atan2(x, y)), math.hypot(x, y)))
    return Route(vertices)


def three_towns() -> Route:
    """Cuernavaca -> Jiutepec -> Temixco -> Cuernavaca. The way out (leg 1) and the
    way home (leg 3) share the road between Cuernavaca and a junction 2 km out."""
    junction = offset(CUERNAVACA, 135.0, 2_000.0)
    shared = [*path(CUERNAVACA, [(150.0, 700.0), (120.0, 700.0)]), junction]
    leg1 = [*shared, JIUTEPEC]
    leg2 = [TEMIXCO]
    leg3 = shared[::-1]
    return Route(leg1 + leg2 + leg3)


def divided_road() -> Route:
    """Yautepec: 4 km east on one carriageway, a U-turn, 4 km back on the other, 40 m
    away."""
    north = path(YAUTEPEC, [(80.0, 500.0)] * 8)
    south = [offset(p, 170.0, 40.0) for p in north]
    return Route(north + south[::-1])


# -- continuity -------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_out_and_back_through_the_monitor(seed: int) -> None:
    route = out_and_back()
    samples = drive(route, seed)

    progress, distance, events = monitor_trip(route, samples)

    assert_follows(progress, samples, route, turns=[route.length_m / 2])
    assert_trip_is_calm(progress, distance, events)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_out_and_back_with_windows(seed: int) -> None:
    route = out_and_back()
    samples = drive(route, seed)

    assert_follows(windowed_trip(route, samples), samples, route, turns=[route.length_m / 2])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_walking_out_and_back_raises_no_backtracking(seed: int) -> None:
    # On foot (1.4 m/s, a fix every 10 s) to the end of a straight 2 km street and
    # back: the watchers must see the walk go on, not a "backtracking" alarm at the
    # turn.
    far_end = offset(CUERNAVACA, 60.0, 2_000.0)
    route = Route([CUERNAVACA, far_end, CUERNAVACA])
    samples = drive(route, seed, speed=1.4, every=10.0)

    progress, distance, events = monitor_trip(route, samples, speed=1.4)

    assert_trip_is_calm(progress, distance, events)
    assert_follows(progress, samples, route, turns=[route.length_m / 2])


@pytest.mark.parametrize("past_turn", [60.0, 100.0, 300.0])
def test_after_turning_round_is_on_the_way_back(past_turn: float) -> None:
    # Last seen at the far end, where the route turns round; now `past_turn` metres
    # back down the same road. The window spans both legs.
    route = out_and_back()
    half = route.length_m / 2
    s = half + past_turn
    x, y = route.frame.forward(*route.point_at(s))

    m = match_point(route, x, y, half - 450.0, half + 450.0, half, TOLERANCE)

    assert m.progress_m == pytest.approx(s, abs=1.0)


@pytest.mark.parametrize("before_turn", [60.0, 100.0, 300.0])
def test_before_turning_round_is_on_the_way_out(before_turn: float) -> None:
    # Last seen 60 m earlier on the way out, now `before_turn` metres from the end.
    route = out_and_back()
    s = route.length_m / 2 - before_turn
    x, y = route.frame.forward(*route.point_at(s))

    m = match_point(route, x, y, s - 450.0, s + 450.0, s - 60.0, TOLERANCE)

    assert m.progress_m == pytest.approx(s, abs=1.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_figure_eight_through_the_monitor(seed: int) -> None:
    route = figure_eight()
    samples = drive(route, seed)

    progress, distance, events = monitor_trip(route, samples)

    assert_follows(progress, samples, route)
    assert_trip_is_calm(progress, distance, events)


@pytest.mark.parametrize("seed", [1, 2])
def test_figure_eight_with_windows(seed: int) -> None:
    route = figure_eight()
    samples = drive(route, seed)

    assert_follows(windowed_trip(route, samples), samples, route)


def test_figure_eight_crossing_is_the_pass_through_the_middle() -> None:
    route = figure_eight()
    x, y = route.frame.forward(*CUAUTLA)
    half = route.length_m / 2

    in_window = match_point(route, x, y, half - 300.0, half + 300.0, half, TOLERANCE)
    # The start and the end are 300 m out on the crossing's other two arms: even
    # last seen there, the crossing is on the pass through the middle.
    anywhere = match_point(route, x, y, 0.0, route.length_m, 0.0, TOLERANCE)

    for m in (in_window, anywhere):
        assert m.distance_m < 1.0
        assert m.progress_m == pytest.approx(half, abs=2.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_three_towns_through_the_monitor(seed: int) -> None:
    route = three_towns()
    samples = drive(route, seed)

    progress, distance, events = monitor_trip(route, samples)

    assert_follows(progress, samples, route)
    assert_trip_is_calm(progress, distance, events)


@pytest.mark.parametrize("seed", [1, 2])
def test_three_towns_with_windows(seed: int) -> None:
    route = three_towns()
    samples = drive(route, seed)

    assert_follows(windowed_trip(route, samples), samples, route)


def test_shared_road_goes_to_the_leg_the_trip_is_on() -> None:
    # A fix on the shared road, 1 km from Cuernavaca, with the whole route as the
    # window: on leg 1 if the trip was last seen early on, on leg 3 if last seen there.
    route = three_towns()
    x, y = route.frame.forward(*route.point_at(1_000.0))
    on_leg3 = route.length_m - 1_000.0

    early = match_point(route, x, y, 0.0, route.length_m, 900.0, TOLERANCE)
    late = match_point(route, x, y, 0.0, route.length_m, on_leg3 - 100.0, TOLERANCE)

    assert early.progress_m == pytest.approx(1_000.0, abs=1.0)
    assert late.progress_m == pytest.approx(on_leg3, abs=1.0)


@pytest.mark.parametrize("seed", [1, 2])
def test_divided_road_through_the_monitor(seed: int) -> None:
    route = divided_road()
    samples = drive(route, seed)

    progress, distance, events = monitor_trip(route, samples)

    assert_follows(progress, samples, route, turns=[route.length_m / 2])
    assert_trip_is_calm(progress, distance, events)


@pytest.mark.parametrize("accuracy", [5.0, 15.0, 30.0])
def test_divided_road_with_windows_keeps_to_the_carriageway(accuracy: float) -> None:
    # With a vague fix both carriageways are candidates; the one the trip is on (by
    # where it was last seen) must win, and the distance is to that one.
    route = divided_road()
    samples = drive(route, seed=7)
    progress, distance = [], []
    last = 0.0
    for k, f in enumerate(samples):
        x, y = route.frame.forward(f.lon, f.lat)
        lo, hi = (0.0, route.length_m) if k == 0 else (last - 150.0, last + 250.0)
        m = match_point(route, x, y, lo, hi, last, 30.0 + accuracy)
        last = m.progress_m
        progress.append(m.progress_m)
        distance.append(m.distance_m)

    assert_follows(progress, samples, route, turns=[route.length_m / 2])
    assert max(distance) <= NOISE + 1.0  # the other carriageway is 40 m away


# -- match_many is match_point, vectorised -------------------------------------------

ROUTES = [
    out_and_back(),  # 9 segments
    figure_eight(),  # 239 segments: both the per-fix loop and numpy paths
    three_towns(),
    Route(path((-106.0889, 28.6353), [(150.0 + 7 * i, 2_500.0 + 300 * i) for i in range(30)])),
]
# The segment tables of all routes end to end, as the batched path holds them.
BASE = np.cumsum([0] + [len(r.seg_m) for r in ROUTES[:-1]])
TABLES = [
    np.concatenate([getattr(r, name) for r in ROUTES])
    for name in ("seg_ax", "seg_ay", "seg_dx", "seg_dy", "seg_ux", "seg_uy", "seg_k0")
]
CUM0 = np.concatenate([r.cum_m[:-1] for r in ROUTES])
SEG = np.concatenate([r.seg_m for r in ROUTES])


@st.composite
def match_rows(draw: st.DrawFn) -> tuple[int, float, float, float, float, float, float]:
    """(route, x, y, lo, hi, anchor, tolerance): a point near the route, a window and
    where the trip was last matched."""
    r = draw(st.integers(0, len(ROUTES) - 1))
    route = ROUTES[r]
    length = route.length_m
    cum = route.cum_m
    s = draw(st.floats(0.0, length))
    lon, lat = offset(
        route.point_at(s), draw(st.floats(-180.0, 180.0)), draw(st.floats(0.0, 500.0))
    )
    x, y = route.frame.forward(lon, lat)
    i = draw(st.integers(0, len(cum) - 2))
    window = draw(
        st.one_of(
            # anywhere, possibly reaching past the ends, possibly inside out
            st.tuples(st.floats(-500.0, length + 500.0), st.floats(-500.0, length + 500.0)),
            # at the start, at the end
            st.tuples(st.floats(-300.0, 0.0), st.floats(0.0, 300.0)),
            st.tuples(st.floats(length - 300.0, length), st.floats(length, length + 300.0)),
            st.just((0.0, 0.0)),
            st.just((length - 1e-6, length)),
            # inside one segment, or exactly at a vertex
            st.tuples(st.floats(cum[i], cum[i + 1]), st.floats(cum[i], cum[i + 1])).map(sorted),
            st.just((cum[i], cum[i])),
            st.just((cum[i], cum[i + 1])),
        )
    )
    anchor = draw(st.floats(-100.0, length + 100.0))
    tolerance = draw(st.floats(0.01, 200.0))
    return r, x, y, window[0], window[1], anchor, tolerance


def clamp_window(route: Route, lo: float, hi: float, anchor: float) -> tuple[float, float]:
    """The batched caller's duty (match_many's windows never cross a route's ends),
    done as match_point does it."""
    lo, hi = max(lo, 0.0), min(hi, route.length_m)
    if hi < lo:
        lo = hi = min(max(anchor, 0.0), route.length_m)
    return lo, hi


def not_the_end_point(row: tuple[int, float, float, float, float, float, float]) -> bool:
    # A window that is only the route's end point crashes match_point today:
    # test_window_that_is_only_the_end_of_the_route shows it; keep it out of here so
    # that this test checks everything else.
    r, _, _, lo, hi, anchor, _ = row
    return clamp_window(ROUTES[r], lo, hi, anchor)[0] < ROUTES[r].length_m


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(match_rows().filter(not_the_end_point), min_size=1, max_size=12))
def test_match_many_is_match_point(
    rows: list[tuple[int, float, float, float, float, float, float]],
) -> None:
    singles = [match_point(ROUTES[r], x, y, lo, hi, a, tol) for r, x, y, lo, hi, a, tol in rows]
    windows = [clamp_window(ROUTES[r], lo, hi, a) for r, _, _, lo, hi, a, _ in rows]
    spans = [ROUTES[row[0]].segment_span(*w) for row, w in zip(rows, windows, strict=True)]
    base = np.array([BASE[row[0]] for row in rows], dtype=np.int64)

    distance, progress, segment = match_many(
        np.array([row[1] for row in rows]),
        np.array([row[2] for row in rows]),
        np.array([w[0] for w in windows]),
        np.array([w[1] for w in windows]),
        np.array([row[5] for row in rows]),
        np.array([row[6] for row in rows]),
        base + np.array([s[0] for s in spans], dtype=np.int64),
        base + np.array([s[1] for s in spans], dtype=np.int64),
        *TABLES,
        CUM0,
        SEG,
    )

    assert len(distance) == len(progress) == len(segment) == len(rows)
    for k, m in enumerate(singles):
        assert (distance[k], progress[k], segment[k] - base[k]) == (
            m.distance_m,
            m.progress_m,
            m.segment,
        ), rows[k]


@pytest.mark.parametrize(
    ("lo", "hi", "anchor"),
    [
        (1.0, 1.0, 1.0),  # lo = hi = the route's length (in units of it)
        (1.2, 1.5, 1.1),  # a window past the end: collapses onto the anchor
        (0.9, 0.5, 1.3),  # inside out, anchor past the end: the same
    ],
    ids=["end-point", "past-the-end", "inside-out"],
)
def test_window_that_is_only_the_end_of_the_route(lo: float, hi: float, anchor: float) -> None:
    # A fix near the destination matched with a window reduced to the route's last
    # point must get the last point (progress = length), not an IndexError.
    route = three_towns()
    length = route.length_m
    end_x, end_y = float(route.x[-1]), float(route.y[-1])

    m = match_point(route, end_x + 30.0, end_y, lo * length, hi * length, anchor * length, 30.0)

    assert m.progress_m == pytest.approx(length, abs=1e-6)
    assert m.distance_m == pytest.approx(30.0, abs=1e-6)
    assert m.segment == len(route.seg_m) - 1
    assert route.segment_span(length, length) == (len(route.seg_m) - 1, len(route.seg_m))
