"""The monitor's state: checkpointing through JSON, and resent or late fixes.

A worker may die between two fixes of a trip; another one restores the trip's
``MonitorState`` from its JSON checkpoint and must carry on exactly as the first would
have. Phones resend what was not acknowledged and deliver buffered fixes late: only the
fixes the filter accepts may move the state, so the events are those of the clean
sequence of accepted fixes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from sigueme.geo import (
    Evaluation,
    EventKind,
    Fix,
    MonitorState,
    Route,
    Status,
    TripMonitor,
    TripPlan,
    Verdict,
)
from sigueme.simulate import Drive, Noise, Offset, Stop, simulate

GEOD = Geod(ellps="WGS84")
T0 = 1_717_243_200.0  # 2024-06-01T12:00:00Z
DT = 5.0
CAR = 12.0
ZOCALO = (-99.2340, 18.9220)


def winding_positions(
    n: int = 200, step_m: float = 50.0, seed: int = 11
) -> list[tuple[float, float]]:
    """Cuernavaca's centre towards Jiutepec: heading 120 deg +/- 25 deg, jittered."""
    rng = np.random.default_rng(seed)
    lon, lat = ZOCALO
    out = [(lon, lat)]
    for i in range(n - 1):
        az = 120.0 + 25.0 * math.sin(2 * math.pi * i * step_m / 6000.0) + rng.uniform(-4, 4)
        lon, lat, _ = GEOD.fwd(lon, lat, az, step_m)
        out.append((float(lon), float(lat)))
    return out


ROUTE = Route(winding_positions())  # 9.95 km
L = ROUTE.length_m
PLAN = TripPlan(ROUTE, T0, T0 + L / CAR + 1500)


def _far(f: Fix) -> Fix:
    """The same moment, 30 km away (a GPS glitch)."""
    lon, lat, _ = GEOD.fwd(f.lon, f.lat, 80.0, 30_000.0)
    return Fix(t=f.t, lat=float(lat), lon=float(lon), accuracy=f.accuracy, battery=f.battery)


@cache
def eventful_stream() -> tuple[tuple[Fix, float], ...]:
    """(fix, server time) of a trip that goes through every state: it leaves the route
    by 800 m and comes back, stops for 7 minutes, drives 1 km back, its battery runs
    low and it arrives; with a resend, a stale fix, two glitches, a vague fix, one with a
    lost minus sign and one from a fast device clock mixed in."""
    moves = [
        Drive(2000, CAR),
        Offset(800),
        Drive(3000, CAR),
        Offset(0),
        Drive(4500, CAR),
        Stop(420),
        Drive(3500, CAR),
        Drive(L, CAR),
        Stop(60),
    ]
    fixes = simulate(
        ROUTE,
        moves,
        start_t=T0,
        interval_s=DT,
        noise=Noise(5.0, 0.02),
        seed=3,
        battery_start=22.0,
        battery_drain_per_hour=20.0,
    )
    stream = [(f, f.t + 1.0) for f in fixes]
    stream.insert(31, stream[30])  # resent
    stream.insert(61, stream[50])  # stale
    stream[90] = (_far(stream[90][0]), stream[90][1])  # glitch
    stream[91] = (_far(stream[91][0]), stream[91][1])  # glitch, same place
    f = stream[120][0]
    stream[120] = (Fix(t=f.t, lat=f.lat, lon=f.lon, accuracy=800.0), f.t + 1)  # vague
    f = stream[140][0]
    lost_sign = Fix(t=f.t, lat=f.lat, lon=-f.lon, accuracy=f.accuracy)  # the far side of Earth
    stream[140] = (lost_sign, stream[140][1])
    stream.insert(150, (stream[150][0], stream[150][0].t - 900.0))  # fast device clock
    return tuple(stream)


def feed(monitor: TripMonitor, stream: Sequence[tuple[Fix, float]]) -> list[Evaluation]:
    return [monitor.update(f, now=now) for f, now in stream]


@cache
def uninterrupted() -> tuple[tuple[Evaluation, ...], dict[str, object]]:
    m = TripMonitor(PLAN)
    evals = tuple(feed(m, eventful_stream()))
    return evals, m.state.to_dict()


def checkpoint(monitor: TripMonitor) -> TripMonitor:
    """What a worker stores, and what another one restores."""
    text = json.dumps(monitor.state.to_dict(), allow_nan=False)
    return TripMonitor(PLAN, MonitorState.from_dict(json.loads(text)))


def test_the_eventful_trip_goes_through_every_state() -> None:
    """Guard for the checkpoint tests: the split points land in every state."""
    evals, _ = uninterrupted()
    verdicts = {e.verdict for e in evals}
    assert verdicts == set(Verdict)
    statuses = {e.status for e in evals}
    assert {Status.ON_ROUTE, Status.DRIFTING, Status.OFF_ROUTE, Status.STOPPED} <= statuses
    assert evals[-1].status is Status.ARRIVED
    kinds = [e.kind for ev in evals for e in ev.events]
    for kind in (
        EventKind.OFF_ROUTE,
        EventKind.BACK_ON_ROUTE,
        EventKind.STOPPED,
        EventKind.MOVING,
        EventKind.BACKTRACKING,
        EventKind.LOW_BATTERY,
        EventKind.ARRIVED,
    ):
        assert kinds.count(kind) == 1, kinds


def test_fresh_state_is_pending_and_serialisable() -> None:
    state = MonitorState()
    assert state.status is Status.PENDING
    data = json.loads(json.dumps(state.to_dict(), allow_nan=False))
    assert MonitorState.from_dict(data) == state


@settings(max_examples=60, deadline=None)
@given(split=st.integers(min_value=0, max_value=len(eventful_stream())))
def test_checkpoint_and_resume_is_invisible(split: int) -> None:
    expected, final = uninterrupted()
    stream = eventful_stream()
    first = TripMonitor(PLAN)
    before = feed(first, stream[:split])
    resumed = checkpoint(first)
    assert resumed.state == first.state
    after = feed(resumed, stream[split:])
    assert before + after == list(expected)
    assert resumed.state.to_dict() == final


@settings(max_examples=30, deadline=None)
@given(splits=st.lists(st.integers(min_value=0, max_value=len(eventful_stream())), max_size=6))
def test_many_checkpoints_are_invisible(splits: list[int]) -> None:
    """A trip that moves from worker to worker several times."""
    expected, _ = uninterrupted()
    stream = eventful_stream()
    monitor = TripMonitor(PLAN)
    evals: list[Evaluation] = []
    done = 0
    for cut in sorted(set(splits)):
        evals += feed(monitor, stream[done:cut])
        monitor = checkpoint(monitor)
        done = cut
    evals += feed(monitor, stream[done:])
    assert evals == list(expected)


# -- resent and late fixes --------------------------------------------------------------


@cache
def clean_trip() -> tuple[Fix, ...]:
    """Off the route by 800 m and back, 1 km back along it, battery low, arrival."""
    moves = [
        Drive(2000, CAR),
        Offset(800),
        Drive(3000, CAR),
        Offset(0),
        Drive(5000, CAR),
        Drive(4000, CAR),
        Drive(L, CAR),
        Stop(60),
    ]
    return tuple(
        simulate(
            ROUTE,
            moves,
            start_t=T0,
            interval_s=DT,
            noise=Noise(8.0, 0.02),
            seed=5,
            battery_start=20.0,
            battery_drain_per_hour=20.0,
        )
    )


def run_all(fixes: Sequence[Fix]) -> list[Evaluation]:
    m = TripMonitor(PLAN)
    return [m.update(f) for f in fixes]


def kinds_of(evals: Sequence[Evaluation]) -> list[EventKind]:
    return [e.kind for ev in evals for e in ev.events]


def test_clean_trip_events() -> None:
    """Guard for the next test: what the clean trip raises."""
    assert kinds_of(run_all(clean_trip())) == [
        EventKind.OFF_ROUTE,
        EventKind.BACK_ON_ROUTE,
        EventKind.BACKTRACKING,
        EventKind.LOW_BATTERY,
        EventKind.ARRIVED,
    ]


N_CLEAN = len(clean_trip())
perturbation = st.tuples(
    st.integers(min_value=1, max_value=N_CLEAN - 5),
    st.sampled_from(["resend", "late"]),
    st.integers(min_value=0, max_value=3),
)


def deliver(n: int, perturbations: Sequence[tuple[int, str, int]]) -> list[int]:
    """The order in which the server receives fixes 0..n-1: ``late`` moves fix i to just
    after fix i+k+1; ``resend`` sends fix i again k fixes after its first delivery."""
    order = list(range(n))
    for i, op, k in perturbations:
        if op == "late" and i in order:
            order.remove(i)
            order.insert(order.index(min(i + k + 1, n - 1)) + 1, i)
    for i, op, k in perturbations:
        if op == "resend":
            pos = order.index(i) + 1 + k
            order.insert(min(pos, len(order)), i)
    return order


@settings(max_examples=60, deadline=None)
@given(perturbations=st.lists(perturbation, max_size=6, unique_by=lambda p: p[0]))
def test_resent_and_late_fixes_change_nothing_but_their_own_verdict(
    perturbations: list[tuple[int, str, int]],
) -> None:
    fixes = clean_trip()
    order = deliver(len(fixes), perturbations)
    got = run_all([fixes[i] for i in order])

    # The filter's rule: a fix is taken if it is newer than the last one taken; the
    # last one again is a duplicate; anything older is out of order.
    accepted: list[int] = []
    for i, ev in zip(order, got, strict=True):
        if not accepted or i > accepted[-1]:
            assert ev.verdict is Verdict.ACCEPTED
            accepted.append(i)
        elif i == accepted[-1]:
            assert ev.verdict is Verdict.DUPLICATE
        else:
            assert ev.verdict is Verdict.OUT_OF_ORDER
        if ev.verdict is not Verdict.ACCEPTED:
            assert ev.events == ()

    # Exactly what the monitor makes of the accepted fixes alone ...
    clean = run_all([fixes[i] for i in accepted])
    assert [ev for ev in got if ev.verdict is Verdict.ACCEPTED] == clean
    # ... which, for a few fixes dropped, is what the dispatcher would have seen anyway.
    assert kinds_of(got) == kinds_of(run_all(fixes))
