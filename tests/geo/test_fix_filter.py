"""The fix filter, fix validation and thresholds, through the trip monitor.

A traveller drives a straight 10 km street out of Cuernavaca's centre at 10 m/s, one
fix every 5 s. Fixes are placed exactly (no noise) at a progress and a lateral offset
from the route, so every distance below is known in advance.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from pyproj import Geod

from sigueme.geo import (
    Evaluation,
    EventKind,
    Fix,
    FixError,
    GeoError,
    Route,
    Status,
    ThresholdError,
    Thresholds,
    TripMonitor,
    TripPlan,
    Verdict,
)
from sigueme.geo.fixes import EARLIEST_FIX_TIME, LATEST_FIX_TIME

GEOD = Geod(ellps="WGS84")
T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z
DT = 5.0
SPEED = 10.0
ZOCALO = (-99.2340, 18.9220)
TH = Thresholds()
CORRIDOR = 150.0


def straight_positions(n: int = 200, step_m: float = 50.0) -> list[tuple[float, float]]:
    lon, lat = ZOCALO
    end_lon, end_lat, _ = GEOD.fwd(lon, lat, 160.0, step_m * (n - 1))
    inner = GEOD.npts(lon, lat, end_lon, end_lat, n - 2)
    return [(lon, lat), *((float(a), float(b)) for a, b in inner), (float(end_lon), float(end_lat))]


ROUTE = Route(straight_positions())  # 9.95 km, heading 160 deg
L = ROUTE.length_m


def lonlat_at(s: float, lateral: float = 0.0) -> tuple[float, float]:
    """The point ``lateral`` metres left (negative: right) of the route at progress ``s``."""
    lon, lat = ROUTE.point_at(s)
    if lateral == 0.0:
        return lon, lat
    az, _, _ = GEOD.inv(*ROUTE.point_at(s - 10.0), *ROUTE.point_at(s + 10.0))
    out_lon, out_lat, _ = GEOD.fwd(lon, lat, az - 90.0 if lateral > 0 else az + 90.0, abs(lateral))
    return float(out_lon), float(out_lat)


def at(k: int, lateral: float = 0.0, *, acc: float = 5.0, **kw: Any) -> Fix:
    """The k-th fix of the drive: time T0 + 5k, progress 50k m, ``lateral`` m off."""
    lon, lat = lonlat_at(SPEED * DT * k, lateral)
    return Fix(t=T0 + DT * k, lat=lat, lon=lon, accuracy=acc, **kw)


def plan(**overrides: float) -> TripPlan:
    return TripPlan(ROUTE, T0, T0 + L / SPEED + 600, thresholds=Thresholds(**overrides))


def monitor_after(n: int, **overrides: float) -> TripMonitor:
    """A monitor that has accepted fixes 0..n-1 on the route."""
    m = TripMonitor(plan(**overrides))
    for k in range(n):
        assert m.update(at(k)).verdict is Verdict.ACCEPTED
    return m


def quiet(ev: Evaluation) -> None:
    assert ev.events == ()


# -- verdicts ---------------------------------------------------------------------------


def test_same_fix_twice_is_a_duplicate_and_changes_nothing() -> None:
    m = monitor_after(11)
    before = m.state.to_dict()
    again = m.update(at(10))
    assert again.verdict is Verdict.DUPLICATE
    quiet(again)
    assert m.state.to_dict() == before
    # A resend with other metadata (accuracy, battery) is still the same fix.
    resend = m.update(at(10, acc=12.0, battery=3.0))
    assert resend.verdict is Verdict.DUPLICATE
    quiet(resend)
    assert m.state.to_dict() == before
    assert m.update(at(11)).verdict is Verdict.ACCEPTED


def test_older_fix_is_out_of_order_and_changes_nothing() -> None:
    m = monitor_after(11)
    before = m.state.to_dict()
    late = m.update(at(5))
    assert late.verdict is Verdict.OUT_OF_ORDER
    quiet(late)
    assert m.state.to_dict() == before
    assert late.progress_m == pytest.approx(5 * SPEED * DT, abs=1.0)


# Lateral offsets of a 50 s detour (fixes 10-19), 200 m a step so no step is a GPS jump.
DETOUR = [200.0, 400.0, 600.0, 800.0, 800.0, 800.0, 800.0, 600.0, 400.0, 200.0]


def _detour() -> tuple[list[Fix], list[Fix], list[Fix]]:
    """On the route (0-9), up to 800 m off it for 50 s (10-19), back on (20-29)."""
    before = [at(k) for k in range(10)]
    away = [at(10 + i, lateral) for i, lateral in enumerate(DETOUR)]
    back = [at(k) for k in range(20, 30)]
    return before, away, back


def test_detour_fixes_in_order_do_raise_off_route() -> None:
    """The baseline for the next test: these fixes are alarming when they come in time."""
    before, away, back = _detour()
    m = TripMonitor(plan())
    events = [e.kind for f in before + away + back for e in m.update(f).events]
    assert events == [EventKind.OFF_ROUTE, EventKind.BACK_ON_ROUTE]


def test_late_arriving_off_route_fixes_never_raise_an_alert() -> None:
    """The phone buffered a detour and sends it after the trip is back on route: the fixes
    are reported (with their distance) but raise no stale alert."""
    before, away, back = _detour()
    m = TripMonitor(plan())
    for f in before + back:
        quiet(m.update(f))
    state = m.state.to_dict()
    for f, lateral in zip(away, DETOUR, strict=True):
        ev = m.update(f)
        assert ev.verdict is Verdict.OUT_OF_ORDER
        quiet(ev)
        assert ev.status is Status.ON_ROUTE
        assert ev.distance_m == pytest.approx(lateral, abs=2.0)
    assert m.state.to_dict() == state


def test_fix_from_the_future_is_refused_and_does_not_block_later_fixes() -> None:
    m = monitor_after(5)
    ahead = at(5)
    ev = m.update(ahead, now=ahead.t - 600.0)
    assert ev.verdict is Verdict.FUTURE
    quiet(ev)
    # Had it been taken, every later fix would look older than it.
    for k in range(5, 10):
        f = at(k)
        assert m.update(f, now=f.t + 1.0).verdict is Verdict.ACCEPTED


def test_device_clock_a_little_ahead_is_tolerated() -> None:
    m = monitor_after(5)
    f = at(5)
    assert m.update(f, now=f.t - TH.future_seconds).verdict is Verdict.ACCEPTED
    g = at(6)
    assert m.update(g, now=g.t - TH.future_seconds - 1).verdict is Verdict.FUTURE


def test_future_off_route_fixes_never_raise_an_alert() -> None:
    m = monitor_after(5)
    for k in range(5, 20):
        f = at(k, 800.0)
        ev = m.update(f, now=f.t - 3600.0)
        assert ev.verdict is Verdict.FUTURE
        quiet(ev)
    assert m.state.status is Status.ON_ROUTE


def test_vague_fix_is_inaccurate() -> None:
    m = monitor_after(5)
    ev = m.update(at(5, acc=500.0))
    assert ev.verdict is Verdict.INACCURATE
    quiet(ev)
    assert m.update(at(6, acc=TH.max_accuracy_m)).verdict is Verdict.ACCEPTED


def test_vague_fixes_far_off_route_never_raise_off_route() -> None:
    """A minute of cell-tower fixes 800 m away (accuracy 1.5 km): nothing to judge by."""
    m = monitor_after(5)
    for k in range(5, 17):
        ev = m.update(at(k, 800.0, acc=1500.0))
        assert ev.verdict is Verdict.INACCURATE
        quiet(ev)
    assert m.state.status is Status.ON_ROUTE


def _far(k: int, east_m: float = 30_000.0) -> Fix:
    """A fix ~30 km east of where the k-th fix would be (around Cuautla)."""
    lon, lat = lonlat_at(SPEED * DT * k)
    flon, flat, _ = GEOD.fwd(lon, lat, 80.0, east_m)
    return Fix(t=T0 + DT * k, lat=float(flat), lon=float(flon), accuracy=5.0)


def test_thirty_km_in_five_seconds_is_a_jump() -> None:
    m = monitor_after(5)
    before = m.state.status
    ev = m.update(_far(5))
    assert ev.verdict is Verdict.JUMP
    quiet(ev)
    assert ev.status is before
    assert ev.distance_m > 25_000
    # The glitch is forgotten: the next real fix is taken, with nothing to report.
    back = m.update(at(6))
    assert back.verdict is Verdict.ACCEPTED
    quiet(back)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_repeated_jumps_to_the_same_place_are_trusted_after_jump_reset_fixes(n: int) -> None:
    """After jump_reset_fixes jumps in a row from the same far place, the next fix from
    there is accepted; from then on the traveller is there (30 km off the route:
    off_route after off_route_seconds)."""
    m = monitor_after(5, jump_reset_fixes=n)
    verdicts = [m.update(_far(5 + i, 30_000.0 + 20 * i)).verdict for i in range(n + 1)]
    assert verdicts == [Verdict.JUMP] * n + [Verdict.ACCEPTED]
    first_accepted_t = T0 + DT * (5 + n)
    events = []
    for i in range(n + 1, n + 11):
        ev = m.update(_far(5 + i, 30_000.0 + 20 * i))
        assert ev.verdict is Verdict.ACCEPTED
        events += [(e.kind, e.t) for e in ev.events]
    intervals = max(TH.off_route_fixes - 1, math.ceil(TH.off_route_seconds / DT))
    assert events == [(EventKind.OFF_ROUTE, first_accepted_t + intervals * DT)]


def test_scattered_glitches_are_never_trusted() -> None:
    """A phone in a garage or under a bridge sends a minute and a half of wild fixes,
    each ~2 km away in a different direction (with a confident 8 m accuracy), then
    finds itself again. The far place is to be trusted only when the fixes "keep coming
    from" it; glitches that agree with nothing are never accepted, and never raise
    off_route."""
    m = monitor_after(5)
    verdicts, events = [], []
    for i in range(18):
        f = at(5 + i)
        lon, lat, _ = GEOD.fwd(f.lon, f.lat, (97.0 * i) % 360.0, 2000.0 + 100.0 * (i % 5))
        ev = m.update(Fix(t=f.t, lat=float(lat), lon=float(lon), accuracy=8.0))
        verdicts.append(ev.verdict)
        events += [e.kind for e in ev.events]
    assert events == []
    assert set(verdicts) == {Verdict.JUMP}
    # The phone finds itself again, 95 s and about a kilometre on from the last fix it
    # trusted. Its clock of plausibility stopped at the first glitch, so these fixes
    # too must agree with each other before they are trusted: jump_reset_fixes of them.
    after = [m.update(at(23 + i)) for i in range(TH.jump_reset_fixes + 1)]
    assert [e.verdict for e in after[:-1]] == [Verdict.JUMP] * TH.jump_reset_fixes
    assert after[-1].verdict is Verdict.ACCEPTED
    assert [e.kind for ev in after for e in ev.events] == []


def test_jump_count_restarts_after_a_good_fix() -> None:
    """Glitch, good fix, glitch: with jump_reset_fixes=1 neither glitch is trusted."""
    m = monitor_after(5, jump_reset_fixes=1)
    assert m.update(_far(5)).verdict is Verdict.JUMP
    assert m.update(at(6)).verdict is Verdict.ACCEPTED
    assert m.update(_far(7)).verdict is Verdict.JUMP
    assert m.update(at(8)).verdict is Verdict.ACCEPTED


# -- filtered fixes are still evaluated -----------------------------------------------


def _filtered(kind: Verdict) -> tuple[TripMonitor, Fix, dict[str, Any]]:
    """A monitor, a fix 400 m left of progress 500 m that the filter gives ``kind``, and
    the ``now`` to pass."""
    m = monitor_after(10)
    if kind is Verdict.DUPLICATE:
        m.update(at(10, 400.0))
        return m, at(10, 400.0), {}
    if kind is Verdict.OUT_OF_ORDER:
        m.update(at(11))
        return m, at(10, 400.0), {}
    if kind is Verdict.FUTURE:
        f = at(10, 400.0)
        return m, f, {"now": f.t - 3600}
    if kind is Verdict.INACCURATE:
        return m, at(10, 400.0, acc=300.0), {}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", [Verdict.DUPLICATE, Verdict.OUT_OF_ORDER, Verdict.FUTURE, Verdict.INACCURATE]
)
def test_filtered_fix_still_gets_an_evaluation_with_distance(kind: Verdict) -> None:
    m, fix, kw = _filtered(kind)
    status = m.state.status
    ev = m.update(fix, **kw)
    assert ev.verdict is kind
    quiet(ev)
    assert ev.t == fix.t
    assert (ev.lon, ev.lat) == (fix.lon, fix.lat)
    assert ev.distance_m == pytest.approx(400.0, abs=2.0)
    assert ev.status is status
    assert 0.0 <= ev.progress_fraction <= 1.0
    assert ev.remaining_m == pytest.approx(L - ev.progress_m)


# -- Fix validation ---------------------------------------------------------------------

GOOD = {"t": T0, "lat": 18.92, "lon": -99.23}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"t": math.nan}, "t"),
        ({"t": math.inf}, "t"),
        ({"t": 0.0}, "t"),
        ({"t": EARLIEST_FIX_TIME - 1}, "t"),  # 1999-12-31T23:59:59Z
        ({"t": LATEST_FIX_TIME + 1}, "t"),
        ({"t": T0 * 1000}, "t"),  # milliseconds by mistake
        ({"t": "1717243200"}, "t"),
        ({"lat": math.nan}, "lat"),
        ({"lat": 90.01}, "lat"),
        ({"lat": -91.0}, "lat"),
        ({"lat": True}, "lat"),
        ({"lon": math.nan}, "lon"),
        ({"lon": -math.inf}, "lon"),
        ({"lon": 180.5}, "lon"),
        ({"lon": -181.0}, "lon"),
        ({"accuracy": -1.0}, "accuracy"),
        ({"accuracy": math.nan}, "accuracy"),
        ({"speed": -0.5}, "speed"),
        ({"speed": math.nan}, "speed"),
        ({"heading": 400.0}, "heading"),
        ({"battery": 101.0}, "battery"),
        ({"battery": -1.0}, "battery"),
        ({"battery": math.nan}, "battery"),
    ],
)
def test_fix_refuses_what_is_not_a_position_at_a_time(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(FixError) as info:
        Fix(**{**GOOD, **changes})
    assert info.value.field == field
    assert isinstance(info.value, GeoError)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(field)


def test_fix_refuses_null_island() -> None:
    """0,0 is what a phone sends without a position; the error names a coordinate."""
    with pytest.raises(FixError) as info:
        Fix(t=T0, lat=0.0, lon=0.0)
    assert info.value.field in {"lat", "lon"}


@pytest.mark.parametrize(
    "changes",
    [
        {"lat": 90.0, "lon": 180.0},
        {"lat": -90.0, "lon": -180.0},
        {"lat": 0.0, "lon": 10.0},
        {"t": EARLIEST_FIX_TIME},
        {"t": LATEST_FIX_TIME},
        {"speed": 0.0, "battery": 0.0, "accuracy": 0.0, "heading": -1.0},
        {"battery": 100.0, "heading": 360.0},
    ],
)
def test_fix_accepts_the_edges(changes: dict[str, Any]) -> None:
    Fix(**{**GOOD, **changes})


# -- Thresholds -------------------------------------------------------------------------


def test_unknown_threshold_is_refused_by_name() -> None:
    with pytest.raises(ThresholdError) as info:
        Thresholds(off_route_fix=3)
    assert info.value.field == "off_route_fix"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("off_route_fixes", 0),
        ("off_route_fixes", 51),
        ("off_route_fixes", 2.5),
        ("off_route_seconds", -1.0),
        ("off_route_seconds", math.nan),
        ("accuracy_factor", 5.5),
        ("back_on_route_ratio", 0.0),
        ("back_on_route_ratio", 1.5),
        ("max_accuracy_m", 5.0),
        ("max_speed_mps", math.inf),
        ("jump_reset_fixes", 0),
        ("stop_radius_m", 1.0),
        ("stop_seconds", 10.0),
        ("late_grace_seconds", -60.0),
        ("backtrack_m", 5.0),
        ("arrival_fixes", 0),
        ("low_battery_percent", 101.0),
        ("low_battery_percent", True),
        ("stop_seconds", "300"),
    ],
)
def test_out_of_range_threshold_is_refused_by_name(name: str, value: Any) -> None:
    with pytest.raises(ThresholdError) as info:
        Thresholds(**{name: value})
    assert info.value.field == name


def test_overrides_keep_the_other_defaults() -> None:
    th = Thresholds(off_route_fixes=6.0, stop_seconds=120)
    assert th.off_route_fixes == 6
    assert isinstance(th.off_route_fixes, int)
    assert th.stop_seconds == 120
    assert th.off_route_seconds == TH.off_route_seconds
    again = th.with_overrides(stop_seconds=600)
    assert (again.off_route_fixes, again.stop_seconds) == (6, 600)
    assert {name for name, _, _ in Thresholds.describe()} == set(TH.as_dict())


def _off_route_times(fixes: list[Fix], **overrides: float) -> tuple[list[float], list[Status]]:
    m = TripMonitor(plan(**overrides))
    evals = [m.update(f) for f in fixes]
    times = [e.t for ev in evals for e in ev.events if e.kind is EventKind.OFF_ROUTE]
    return times, [ev.status for ev in evals]


# On the route, then 200, 400, 600 m off it and staying there (fix 10 is the first out).
AWAY = [at(k) for k in range(10)] + [at(k, min(200.0 * (k - 9), 600.0)) for k in range(10, 40)]
FIRST_OUT = T0 + DT * 10


def test_off_route_fixes_1_with_no_seconds_alarms_on_the_first_far_fix() -> None:
    times, statuses = _off_route_times(AWAY, off_route_fixes=1, off_route_seconds=0)
    assert times == [FIRST_OUT]
    assert statuses[10] is Status.OFF_ROUTE


def test_off_route_fixes_1_still_waits_off_route_seconds() -> None:
    """Both conditions must hold: one far fix is not enough while off_route_seconds (30 s
    by default) have not passed since the first one."""
    times, statuses = _off_route_times(AWAY, off_route_fixes=1)
    assert times == [FIRST_OUT + TH.off_route_seconds]
    assert statuses[10] is Status.DRIFTING


@pytest.mark.parametrize(
    ("overrides", "expected_after_s"),
    [
        ({"off_route_fixes": 10, "off_route_seconds": 0}, 9 * DT),
        ({"off_route_fixes": 4, "off_route_seconds": 60}, 60.0),
        ({"off_route_fixes": 12, "off_route_seconds": 30}, 11 * DT),
    ],
)
def test_off_route_needs_both_the_fixes_and_the_seconds(
    overrides: dict[str, float], expected_after_s: float
) -> None:
    times, _ = _off_route_times(AWAY, **overrides)
    assert times == [FIRST_OUT + expected_after_s]


def test_sparse_tracker_raises_off_route_after_off_route_fixes() -> None:
    """A tracker reporting every 60 s (Traccar Client's habit): the 30 s are covered by
    the second far fix, so off_route_fixes (4) decides: the fourth far fix."""
    fixes = [
        Fix(t=T0 + 60.0 * k, lat=lat, lon=lon, accuracy=5.0)
        for k in range(12)
        for lon, lat in [lonlat_at(600.0 * k, 0.0 if k < 4 else 600.0)]
    ]
    times, _ = _off_route_times(fixes)
    assert times == [T0 + 60.0 * (4 + TH.off_route_fixes - 1)]


def test_accuracy_factor_zero_ignores_reported_accuracy() -> None:
    fixes = [at(k) for k in range(10)] + [at(k, 180.0, acc=50.0) for k in range(10, 30)]
    default, _ = _off_route_times(fixes)
    assert default == []
    strict, _ = _off_route_times(fixes, accuracy_factor=0)
    assert strict == [FIRST_OUT + TH.off_route_seconds]


def test_max_accuracy_override() -> None:
    m = monitor_after(3, max_accuracy_m=20)
    assert m.update(at(3, acc=25.0)).verdict is Verdict.INACCURATE
    assert m.update(at(4, acc=20.0)).verdict is Verdict.ACCEPTED


def test_stop_seconds_override() -> None:
    """Standing still at 2 km: stopped after 60 s instead of 300 s."""
    m = TripMonitor(plan(stop_seconds=60))
    fixes = [at(k) for k in range(41)] + [
        Fix(t=T0 + DT * k, lat=lat, lon=lon, accuracy=5.0)
        for k in range(41, 80)
        for lon, lat in [lonlat_at(2000.0)]
    ]
    events = [(e.kind, e.t) for f in fixes for e in m.update(f).events]
    assert [kind for kind, _ in events] == [EventKind.STOPPED]
    # Standing still from fix 40; the circle may be centred on the fix before (50 m back).
    assert T0 + DT * 40 + 60.0 - DT <= events[0][1] <= T0 + DT * 40 + 60.0 + DT


def test_low_battery_override() -> None:
    m = TripMonitor(plan(low_battery_percent=30))
    events = [
        (e.kind, e.t)
        for k, b in enumerate([50, 40, 31, 30, 29])
        for e in m.update(at(k, battery=b)).events
    ]
    assert events == [(EventKind.LOW_BATTERY, T0 + DT * 3)]
