"""Scenario tests of the trip monitor: simulated phone trips near Cuernavaca, judged by
what a dispatcher would see (the events raised and the trip's status).

Every trip is simulated with phone noise (``noise_m`` per axis, 5-20 m, reported
accuracy 1-2x that) and multipath outliers (50-150 m) over several seeds. Expected
times are derived from the scenario and the default thresholds at the simulated
fix interval ``DT``; none of them was copied from the monitor's output.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import shapely
from pyproj import Geod

from sigueme.geo import (
    Evaluation,
    Event,
    EventKind,
    Fix,
    PlannedStop,
    Route,
    Status,
    Thresholds,
    TripMonitor,
    TripPlan,
)
from sigueme.simulate import Drive, Move, Noise, Offset, Stop, simulate, truth

GEOD = Geod(ellps="WGS84")
T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z, the eve of the 2024 election
DT = 5.0  # seconds between fixes
TH = Thresholds()
CORRIDOR = 150.0
DEST_RADIUS = 100.0
SLACK = 300.0  # seconds a plan allows beyond driving the route at its speed
CAR = 12.0
ZOCALO = (-99.2340, 18.9220)  # Cuernavaca, Plaza de Armas

NOISES = (5.0, 10.0, 20.0)
SEEDS = range(4)
OUTLIERS = 0.03
OUTLIER_MAX = 150.0

K = EventKind


def winding_positions(
    n: int = 300, step_m: float = 50.0, seed: int = 7
) -> list[tuple[float, float]]:
    """A street-like route from Cuernavaca's centre south-east towards Emiliano Zapata:
    ``n`` vertices ``step_m`` apart, heading 150 deg +/- 20 deg (8 km period) with
    +/- 4 deg of jitter per block."""
    rng = np.random.default_rng(seed)
    lon, lat = ZOCALO
    out = [(lon, lat)]
    for i in range(n - 1):
        az = 150.0 + 20.0 * math.sin(2 * math.pi * i * step_m / 8000.0) + rng.uniform(-4, 4)
        lon, lat, _ = GEOD.fwd(lon, lat, az, step_m)
        out.append((float(lon), float(lat)))
    return out


POSITIONS = winding_positions()
ROUTE = Route(POSITIONS)  # 300 vertices, 14.95 km
L = ROUTE.length_m
# Out and back on the same streets: 6.95 km out, the same way home (279 vertices).
OUT = POSITIONS[:140]
ROUND_TRIP = Route(OUT + OUT[::-1][1:])
TURN = ROUND_TRIP.length_m / 2


def straight_positions(n: int = 200, step_m: float = 50.0) -> list[tuple[float, float]]:
    """Ten km in a straight line from the centre, heading 160 deg (a geodesic)."""
    lon, lat = ZOCALO
    end_lon, end_lat, _ = GEOD.fwd(lon, lat, 160.0, step_m * (n - 1))
    inner = GEOD.npts(lon, lat, end_lon, end_lat, n - 2)
    return [(lon, lat), *((float(a), float(b)) for a, b in inner), (float(end_lon), float(end_lat))]


STRAIGHT = Route(straight_positions())


def plan_for(
    route: Route, speed: float, *, slack: float = SLACK, start: float = T0, **kw: Any
) -> TripPlan:
    """A plan at ``speed`` along the route, arriving ``slack`` seconds after that."""
    return TripPlan(route, start, start + route.length_m / speed + slack, **kw)


def plan_with_spare(route: Route, speed: float, spare: float, at_m: float, **kw: Any) -> TripPlan:
    """A plan whose predicted delay is ``-spare`` seconds when a traveller at ``speed``
    reaches ``at_m``. The monitor predicts arrival at the plan's average speed vp, so
    that delay is at_m/speed - at_m/vp: 1/vp = 1/speed + spare/at_m."""
    duration = route.length_m * (1 / speed + spare / at_m)
    return TripPlan(route, T0, T0 + duration, **kw)


def run(plan: TripPlan, fixes: Sequence[Fix]) -> tuple[list[Evaluation], list[Event]]:
    monitor = TripMonitor(plan)
    evals = [monitor.update(f) for f in fixes]
    return evals, [e for ev in evals for e in ev.events]


def kinds(events: Sequence[Event]) -> list[EventKind]:
    return [e.kind for e in events]


def timeline(events: Sequence[Event], since: float) -> str:
    """Events as a dispatcher's log, seconds after ``since``: for failure messages."""
    return ", ".join(f"{e.kind.value} at +{e.t - since:.0f} s" for e in events) or "nothing"


def true_distance(route: Route, moves: Sequence[Move]) -> tuple[np.ndarray, np.ndarray]:
    """(t, true distance from the route) of every simulated sample, from the simulator's
    ground truth and Shapely (independent of the monitor)."""
    rows = np.array(truth(route, moves, start_t=T0, interval_s=DT))
    d = shapely.distance(route.line, shapely.points(rows[:, 1], rows[:, 2]))
    return rows[:, 0], np.asarray(d)


def first_time(t: np.ndarray, mask: np.ndarray, after: float = -math.inf) -> float:
    idx = np.flatnonzero(mask & (t >= after))
    assert idx.size, "the scenario never reaches that condition"
    return float(t[idx[0]])


def sim(
    route: Route,
    moves: Sequence[Move],
    noise: float,
    seed: int,
    *,
    outliers: float = OUTLIERS,
    start_t: float = T0,
    battery_start: float = 80.0,
    battery_drain_per_hour: float = 10.0,
) -> list[Fix]:
    """The phone's fixes: ``noise`` m per axis, a share ``outliers`` thrown 50-150 m."""
    return simulate(
        route,
        moves,
        start_t=start_t,
        interval_s=DT,
        noise=Noise(noise, outliers, (50.0, OUTLIER_MAX)),
        seed=seed,
        battery_start=battery_start,
        battery_drain_per_hour=battery_drain_per_hour,
    )


# -- the ordinary trip ----------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("speed", [1.4, 8.0, 15.0], ids=["walk", "bus", "car"])
def test_on_route_trip_raises_nothing_but_arrived(speed: float, noise: float, seed: int) -> None:
    moves = [Drive(L, speed), Stop(60)]
    fixes = sim(ROUTE, moves, noise, seed)
    evals, events = run(plan_for(ROUTE, speed), fixes)

    assert kinds(events) == [K.ARRIVED], timeline(events, T0)
    arrived = events[0]
    # Only at the end: a fix counts in the destination zone within radius + accuracy
    # (up to 2 noise), and carries up to 4 noise of error.
    assert arrived.t >= T0 + (L - DEST_RADIUS - 6 * noise) / speed
    assert arrived.progress_m >= L - DEST_RADIUS - CORRIDOR
    assert evals[-1].status is Status.ARRIVED
    alarming = {Status.OFF_ROUTE, Status.STOPPED, Status.LATE}
    assert not [e.status for e in evals if e.status in alarming]


# -- leaving the route ----------------------------------------------------------------

# After the first fix beyond the corridor, off_route needs off_route_fixes fixes spanning
# off_route_seconds: at DT, this many intervals.
OFF_ROUTE_INTERVALS = max(TH.off_route_fixes - 1, math.ceil(TH.off_route_seconds / DT))


def departure_moves(offset: float) -> list[Move]:
    return [
        Drive(4000, CAR),
        Offset(offset),
        Drive(5000, CAR),
        Offset(0),
        Drive(L, CAR),
        Stop(60),
    ]


def check_departure(offset: float, noise: float, seed: int, outliers: float) -> None:
    moves = departure_moves(offset)
    fixes = sim(ROUTE, moves, noise, seed, outliers=outliers)
    # While they are away, progress stands still and the delay grows: give the plan a
    # grace's worth of spare where they leave, so only the departure is news.
    _, events = run(plan_with_spare(ROUTE, CAR, TH.late_grace_seconds, 4000.0), fixes)
    assert kinds(events) == [K.OFF_ROUTE, K.BACK_ON_ROUTE, K.ARRIVED], timeline(events, T0)

    t, d = true_distance(ROUTE, moves)
    far = float(t[np.argmax(d)])
    # A fix counts as outside when its distance exceeds corridor + accuracy (accuracy is
    # 1-2 noise); with up to 4 noise of error per fix it is surely outside once the true
    # distance passes corridor + 6 noise, and it cannot be before corridor - 3 noise.
    t_sure = first_time(t, d >= CORRIDOR + 6 * noise)
    t_early = first_time(t, d >= CORRIDOR - 3 * noise)
    # An outlier thrown back into the corridor restarts the count: allow one restart.
    restart = (OFF_ROUTE_INTERVALS + 1) * DT if outliers else 0.0
    off = events[0]
    assert off.t >= t_early + TH.off_route_seconds
    assert off.t <= t_sure + OFF_ROUTE_INTERVALS * DT + restart
    # Back within back_on_route_ratio x corridor for back_on_route_fixes fixes.
    inner = TH.back_on_route_ratio * CORRIDOR
    back = events[1]
    t_in_sure = first_time(t, d <= inner - 4 * noise, after=far)
    t_in_early = first_time(t, d <= inner + 4 * noise, after=far)
    assert back.t >= t_in_early + (TH.back_on_route_fixes - 1) * DT
    assert back.t <= t_in_sure + (TH.back_on_route_fixes - 1 + (2 if outliers else 0)) * DT


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("offset", [300.0, 800.0, 2000.0, -800.0])
def test_real_departure_raises_off_route_once_within_bound(
    offset: float, noise: float, seed: int
) -> None:
    """Noise without outliers: off_route within off_route_seconds (+ the noise band and
    one interval) of the true crossing, exactly once; back_on_route when they return."""
    check_departure(offset, noise, seed, outliers=0.0)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("offset", [300.0, 800.0, 2000.0])
def test_real_departure_with_outliers_raises_off_route_once(
    offset: float, noise: float, seed: int
) -> None:
    check_departure(offset, noise, seed, outliers=OUTLIERS)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("offset", [60.0, -60.0])
def test_parallel_street_inside_corridor_raises_nothing(
    offset: float, noise: float, seed: int
) -> None:
    """Two km on a street 60 m from the planned one, with a 150 m corridor: nothing."""
    moves = [Drive(4000, CAR), Offset(offset), Drive(6000, CAR), Offset(0), Drive(L, CAR), Stop(60)]
    _, events = run(plan_for(ROUTE, CAR), sim(ROUTE, moves, noise, seed))
    assert kinds(events) == [K.ARRIVED], timeline(events, T0)


LATERAL_MOVES: list[Move] = [Drive(2000, CAR), Offset(180.0, 40.0), Drive(4000, CAR)]


def _fixes_at_lateral(accuracy: float) -> list[Fix]:
    """Noise-free fixes on the straight route: 2 km on it, then one step out to 180 m
    and 2 km there, all reporting ``accuracy``."""
    fixes = simulate(STRAIGHT, LATERAL_MOVES, start_t=T0, interval_s=DT, noise=Noise(0.0, 0.0))
    return [dataclasses.replace(f, accuracy=accuracy) for f in fixes]


def test_reported_accuracy_widens_the_corridor() -> None:
    """180 m from a 150 m corridor with 50 m accuracy is within corridor + accuracy."""
    evals, events = run(plan_for(STRAIGHT, CAR), _fixes_at_lateral(50.0))
    assert events == []
    assert {e.status for e in evals} == {Status.ON_ROUTE}
    far = [e for e in evals if e.distance_m > 170]
    assert len(far) > 30  # two minutes out there
    assert all(abs(e.distance_m - 180.0) < 10 for e in far)


def test_precise_fixes_beyond_the_corridor_count_as_outside() -> None:
    """The same place with 5 m accuracy is beyond 150 + 5 m: off_route after
    off_route_seconds of such fixes."""
    evals, events = run(plan_for(STRAIGHT, CAR), _fixes_at_lateral(5.0))
    t, d = true_distance(STRAIGHT, LATERAL_MOVES)
    first_out = first_time(t, d > CORRIDOR + 5.0)
    assert kinds(events) == [K.OFF_ROUTE], timeline(events, T0)
    assert events[0].t == first_out + OFF_ROUTE_INTERVALS * DT
    assert evals[-1].status is Status.OFF_ROUTE


# -- standing still -------------------------------------------------------------------

STOP_AT = 6000.0


def stopped_no_earlier(t_stop: float) -> float:
    """The circle may start at one of the last fixes before the stop (CAR x DT = 60 m
    apart, inside the 50 m radius with noise): up to two intervals early."""
    return t_stop + TH.stop_seconds - 2 * DT


def stopped_no_later(t_stop: float) -> float:
    """That last fix is up to CAR x DT = 60 m short of the stop, near the 50 m radius:
    leaving its circle may take a few fixes. Allow four intervals in all."""
    return t_stop + TH.stop_seconds + 4 * DT


def _moving_bound(noise: float) -> float:
    """Intervals after they drive off until two fixes are surely outside the stop circle
    (radius max(stop_radius_m, 2 x accuracy), accuracy up to 2 noise; both the circle's
    centre and the fix carry up to 3 noise of error)."""
    radius = max(TH.stop_radius_m, 2 * 2 * noise)
    return (math.ceil((radius + 6 * noise) / (CAR * DT)) + TH.move_fixes - 1) * DT


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("noise", NOISES)
def test_unplanned_stop_raises_stopped_then_moving(noise: float, seed: int) -> None:
    moves = [Drive(STOP_AT, CAR), Stop(600), Drive(L, CAR), Stop(60)]
    plan = plan_with_spare(ROUTE, CAR, 600, STOP_AT)  # the stop alone does not make them late
    evals, events = run(plan, sim(ROUTE, moves, noise, seed))
    t_stop = T0 + STOP_AT / CAR  # first fix standing there (on the DT grid)
    t_go = t_stop + 600

    log = f"stopped at +0 s, left at +600 s; got {timeline(events, t_stop)}"
    assert kinds(events) == [K.STOPPED, K.MOVING, K.ARRIVED], log
    stopped, moving = events[0], events[1]
    assert stopped_no_earlier(t_stop) <= stopped.t <= stopped_no_later(t_stop), log
    assert t_go <= moving.t <= t_go + _moving_bound(noise), log
    assert {e.status for e in evals if stopped.t <= e.t < moving.t} == {Status.STOPPED}


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("outliers", [0.02, 0.05])
@pytest.mark.parametrize("noise", NOISES)
def test_gps_wander_during_long_stop_does_not_fake_moving(
    noise: float, outliers: float, seed: int
) -> None:
    """Twenty minutes parked: one `stopped` after stop_seconds, and `moving` only once
    they actually drive off. A dispatcher who sees `moving` stands the unit down."""
    moves = [Drive(STOP_AT, CAR), Stop(1200), Drive(L, CAR), Stop(60)]
    fixes = sim(ROUTE, moves, noise, seed, outliers=outliers)
    _, events = run(plan_with_spare(ROUTE, CAR, 1200, STOP_AT), fixes)
    t_stop = T0 + STOP_AT / CAR
    t_go = t_stop + 1200

    log = f"stopped at +0 s, left at +1200 s; got {timeline(events, t_stop)}"
    assert kinds(events) == [K.STOPPED, K.MOVING, K.ARRIVED], log
    assert stopped_no_earlier(t_stop) <= events[0].t <= stopped_no_later(t_stop), log
    assert events[1].t >= t_go, log


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", [5.0, 10.0])
def test_stop_at_a_planned_stop_raises_nothing(noise: float, seed: int) -> None:
    lon, lat = ROUTE.point_at(STOP_AT)
    stop = PlannedStop(lon, lat, 150.0, "gasolinera Palmira")
    plan = plan_with_spare(ROUTE, CAR, 600, STOP_AT, stops=[stop])
    moves = [Drive(STOP_AT, CAR), Stop(600), Drive(L, CAR), Stop(60)]
    evals, events = run(plan, sim(ROUTE, moves, noise, seed))
    assert kinds(events) == [K.ARRIVED], timeline(events, T0)
    assert Status.STOPPED not in {e.status for e in evals}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", [5.0, 10.0])
def test_break_at_a_planned_stop_allowed_for_in_the_schedule_is_not_late(
    noise: float, seed: int
) -> None:
    """A candidate's plan: drive 3 km to a rally (a planned stop), stay 20 minutes,
    drive on; the expected arrival allows for the rally and one minute more. They do
    exactly that. Nothing is late: a `late` alert 14 minutes into the rally sends police
    to a trip that is on its schedule."""
    rally_at, rally = 3000.0, 1200.0
    lon, lat = ROUTE.point_at(rally_at)
    plan = TripPlan(
        ROUTE,
        T0,
        T0 + L / CAR + rally + 60,
        stops=[PlannedStop(lon, lat, 150.0, "mitin en Jiutepec", dwell_s=rally)],
    )
    moves = [Drive(rally_at, CAR), Stop(rally), Drive(L, CAR), Stop(60)]
    t_rally = T0 + rally_at / CAR
    _, events = run(plan, sim(ROUTE, moves, noise, seed))
    assert kinds(events) == [K.ARRIVED], f"rally from +0 s to +1200 s; {timeline(events, t_rally)}"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
def test_long_stop_at_the_destination_raises_nothing_but_arrived(noise: float, seed: int) -> None:
    moves = [Drive(L, CAR), Stop(1800)]
    evals, events = run(plan_for(ROUTE, CAR), sim(ROUTE, moves, noise, seed))
    assert kinds(events) == [K.ARRIVED], timeline(events, T0)
    assert evals[-1].status is Status.ARRIVED


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
def test_waiting_at_the_origin_before_departure_raises_nothing(noise: float, seed: int) -> None:
    """The phone streams for 15 minutes at home before the planned departure."""
    plan = plan_for(ROUTE, CAR, start=T0 + 900)
    moves = [Stop(900), Drive(L, CAR), Stop(60)]
    evals, events = run(plan, sim(ROUTE, moves, noise, seed))
    assert kinds(events) == [K.ARRIVED], timeline(events, T0)
    waiting = {e.status for e in evals if e.t < T0 + 900}
    assert waiting <= {Status.ON_ROUTE, Status.DRIFTING}


# -- the schedule -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
def test_slow_traveller_is_late_then_catches_up(noise: float, seed: int) -> None:
    """Planned at 10 m/s; 6.5 km at 5 m/s, then 25 m/s. The delay is then
    tau - s/10: tau/2 while slow (late past grace at tau = 1200 s), then 2600 - 1.5 tau
    (back within grace/2 at tau = 1533 s)."""
    vp, slow, fast, s1 = 10.0, 5.0, 25.0, 6500.0
    plan = plan_for(ROUTE, vp, slack=0.0)
    moves = [Drive(s1, slow), Drive(L, fast), Stop(60)]
    evals, events = run(plan, sim(ROUTE, moves, noise, seed))

    assert kinds(events) == [K.LATE, K.ON_SCHEDULE, K.ARRIVED], timeline(events, T0)
    tau_late = TH.late_grace_seconds / (1 - slow / vp)
    tau1 = s1 / slow
    tau_on = (TH.late_grace_seconds / 2 + (s1 - fast * tau1) / vp) / (1 - fast / vp)
    slack_late = 4 * noise / vp / (1 - slow / vp)  # progress error -> time
    slack_on = 4 * noise / vp / abs(1 - fast / vp)
    late, on = events[0], events[1]
    assert T0 + tau_late - slack_late <= late.t <= T0 + tau_late + slack_late + DT
    assert T0 + tau_on - slack_on <= on.t <= T0 + tau_on + slack_on + DT
    assert late.delay_s > TH.late_grace_seconds
    assert on.delay_s <= TH.late_grace_seconds / 2
    assert {e.status for e in evals if late.t <= e.t < on.t} == {Status.LATE}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", [5.0, 10.0])
def test_long_stop_makes_the_trip_late(noise: float, seed: int) -> None:
    """On schedule until a 15-minute stop: stopped after stop_seconds, late once the
    stop has eaten the grace, moving when they leave; at plan speed after that they
    never catch up, so no on_schedule."""
    moves = [Drive(STOP_AT, CAR), Stop(900), Drive(L, CAR), Stop(60)]
    evals, events = run(plan_for(ROUTE, CAR, slack=0.0), sim(ROUTE, moves, noise, seed))
    t_stop = T0 + STOP_AT / CAR

    assert kinds(events) == [K.STOPPED, K.LATE, K.MOVING, K.ARRIVED], timeline(events, T0)
    late = events[1]
    band = 4 * noise / CAR
    assert (
        t_stop + TH.late_grace_seconds - band
        <= late.t
        <= t_stop + TH.late_grace_seconds + band + DT
    )
    # While both stopped and late, the more serious status shows; then late.
    assert next(e for e in evals if e.t == late.t).status is Status.STOPPED
    moving = events[2]
    after = [e.status for e in evals if moving.t <= e.t < events[3].t]
    assert set(after) == {Status.LATE}


# -- going back -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
def test_driving_back_one_km_raises_backtracking_once(noise: float, seed: int) -> None:
    moves = [Drive(STOP_AT, CAR), Drive(STOP_AT - 1000, CAR), Drive(L, CAR), Stop(60)]
    _, events = run(plan_for(ROUTE, CAR), sim(ROUTE, moves, noise, seed))
    assert kinds(events) == [K.BACKTRACKING, K.ARRIVED], timeline(events, T0)
    t_turn = T0 + STOP_AT / CAR
    # Progress (and its running maximum) carry up to 4 noise of error each, and a forward
    # outlier can lift the maximum by up to OUTLIER_MAX.
    early = t_turn + (TH.backtrack_m - 8 * noise - OUTLIER_MAX) / CAR
    sure = t_turn + (TH.backtrack_m + 8 * noise) / CAR
    k = TH.backtrack_fixes - 1
    assert early + k * DT <= events[0].t <= sure + (k + 1) * DT


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("noise", NOISES)
def test_out_and_back_route_driven_correctly_raises_nothing_but_arrived(
    noise: float, seed: int
) -> None:
    """A→B→A on the same streets, driven as planned. At the turnaround the fix is near
    both legs; progress must carry on along the return leg, not run back down the
    outgoing one (which would raise backtracking, then late, and never arrive)."""
    moves = [Drive(ROUND_TRIP.length_m, CAR), Stop(60)]
    fixes = sim(ROUND_TRIP, moves, noise, seed)
    evals, events = run(plan_for(ROUND_TRIP, CAR), fixes)
    true_s = [min((f.t - T0) * CAR, ROUND_TRIP.length_m) for f in fixes]
    worst = max(abs(e.progress_m - s) for e, s in zip(evals, true_s, strict=True))
    assert kinds(events) == [K.ARRIVED], (
        f"{timeline(events, T0)}; progress off by up to {worst:.0f} m"
    )
    assert events[0].t >= T0 + (ROUND_TRIP.length_m - DEST_RADIUS - CORRIDOR) / CAR


# -- arriving ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
def test_arrived_once_at_the_end_and_nothing_after(noise: float, seed: int) -> None:
    """After arriving they drive 3 km back, leave the route by 800 m, park for 15
    minutes and their battery runs down: the trip is over, none of it is an alarm."""
    moves = [
        Drive(L, CAR),
        Stop(120),
        Drive(L - 3000, CAR),
        Offset(800),
        Stop(900),
    ]
    fixes = sim(ROUTE, moves, noise, seed, battery_start=30.0, battery_drain_per_hour=30.0)
    t_end = T0 + math.ceil(L / CAR / DT) * DT
    before = [f.battery for f in fixes if f.t <= t_end + 120]
    assert min(b for b in before if b is not None) > TH.low_battery_percent
    assert any(f.battery is not None and f.battery <= TH.low_battery_percent for f in fixes)
    evals, events = run(plan_for(ROUTE, CAR), fixes)

    assert kinds(events) == [K.ARRIVED], timeline(events, T0)
    assert events[0].t <= t_end + TH.arrival_fixes * DT
    assert {e.status for e in evals if e.t >= events[0].t} == {Status.ARRIVED}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("noise", NOISES)
def test_round_trip_is_not_arrived_at_the_start(noise: float, seed: int) -> None:
    """Destination = origin: the phone starts at home five minutes before departure."""
    plan = plan_for(ROUND_TRIP, CAR, start=T0 + 300)
    moves = [Stop(300), Drive(3000, CAR)]
    evals, events = run(plan, sim(ROUND_TRIP, moves, noise, seed))
    assert events == []
    assert Status.ARRIVED not in {e.status for e in evals}
    assert evals[-1].progress_m == pytest.approx(3000, abs=4 * noise)


@pytest.mark.parametrize("late_by", [0.55, 0.75])
def test_round_trip_started_late_is_not_arrived_at_the_start(late_by: float) -> None:
    """Destination = origin, and they leave late: the phone's first fix comes when the
    schedule expected them past the turnaround. They are at home, at progress 0 (the
    monitor has not seen them anywhere else); `arrived` here would end the monitoring
    of the whole trip before it starts."""
    plan = plan_for(ROUND_TRIP, CAR)
    start = T0 + late_by * (plan.arrival - plan.departure)
    moves = [Stop(60), Drive(3000, CAR)]
    fixes = sim(ROUND_TRIP, moves, 5.0, 0, start_t=start)
    evals, events = run(plan, fixes)
    assert K.ARRIVED not in kinds(events)
    assert evals[0].progress_m < 100
    assert evals[-1].progress_m == pytest.approx(3000, abs=50)


@pytest.mark.parametrize("gap", [600.0, 1200.0])
@pytest.mark.parametrize("before_turn", [1500.0, 3000.0])
def test_round_trip_phone_silent_while_parked_keeps_its_place(
    gap: float, before_turn: float
) -> None:
    """OwnTracks (significant-changes mode) and Traccar Client with a distance filter send
    nothing while the phone stands still. Parked on the outgoing leg with the phone
    silent, then driving on: the first fix after the silence is where they parked, not
    the same street on the way home (progress would then run backwards: backtracking)."""
    stop_s = TURN - before_turn
    moves = [Drive(stop_s, CAR), Stop(gap), Drive(ROUND_TRIP.length_m, CAR), Stop(60)]
    t_park = T0 + math.ceil(stop_s / CAR / DT) * DT
    fixes = [
        f
        for f in sim(ROUND_TRIP, moves, 5.0, 1, outliers=0.0)
        if not t_park + DT < f.t < t_park + gap
    ]
    plan = plan_for(ROUND_TRIP, CAR, slack=gap)
    evals, events = run(plan, fixes)
    resumed = next(e for e in evals if e.t >= t_park + gap)
    assert resumed.progress_m == pytest.approx(stop_s, abs=100)
    assert K.BACKTRACKING not in kinds(events)


# -- battery ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_low_battery_reported_once_when_crossing(seed: int) -> None:
    fixes = sim(
        ROUTE,
        [Drive(L, CAR), Stop(60)],
        10.0,
        seed,
        battery_start=18.0,
        battery_drain_per_hour=12.0,
    )
    expected_t = next(
        f.t for f in fixes if f.battery is not None and f.battery <= TH.low_battery_percent
    )
    _, events = run(plan_for(ROUTE, CAR), fixes)
    assert kinds(events) == [K.LOW_BATTERY, K.ARRIVED], timeline(events, T0)
    assert events[0].t == expected_t


def test_low_battery_hovering_at_the_threshold_is_reported_once() -> None:
    """A battery reading that flickers 16/15/16/14/17 is one report; charging to above
    threshold + 5 and draining again is a new one."""
    fixes = sim(ROUTE, [Drive(8000, CAR)], 5.0, 0, outliers=0.0)
    levels = [40, 16, 15, 16, 14, 17, 15, 19, 20, 15, 26, 30, 22, 15, 14]
    levels += [14] * (len(fixes) - len(levels))
    fixes = [dataclasses.replace(f, battery=float(b)) for f, b in zip(fixes, levels, strict=True)]
    _, events = run(plan_for(ROUTE, CAR), fixes)
    assert [(e.kind, e.t) for e in events] == [
        (K.LOW_BATTERY, fixes[2].t),
        (K.LOW_BATTERY, fixes[13].t),
    ]
