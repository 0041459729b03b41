"""The batched path gives the same answers as the per-fix path."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np
import pytest

from sigueme.geo import Fix, MonitorState, Route, TripMonitor, TripPlan
from sigueme.geo.batch import STATUSES, VERDICTS, MonitorBank
from sigueme.geo.route import GEOD
from sigueme.simulate import Drive, Noise, Offset, Stop, simulate

T0 = 1_780_000_000.0


def _route(
    seed: int, vertices: int = 120, step_m: float = 80.0, out_and_back: bool = False
) -> Route:
    rng = random.Random(seed)
    lon, lat = -99.23 + rng.uniform(-0.2, 0.2), 18.92 + rng.uniform(-0.2, 0.2)
    base = rng.uniform(0, 360)
    pts = [(lon, lat)]
    for i in range(vertices):
        lon, lat, _ = GEOD.fwd(lon, lat, base + 35 * math.sin(i / 9), step_m)
        pts.append((lon, lat))
    if out_and_back:
        pts += pts[-2::-1]
    return Route(pts)


def _scenario(route: Route, kind: int) -> list[Drive | Offset | Stop]:
    length = route.length_m
    return [
        [Drive(length)],
        [Drive(length * 0.3), Offset(700), Drive(length * 0.5), Offset(0), Drive(length)],
        [Drive(length * 0.4), Stop(900), Drive(length)],
        [Drive(length * 0.6), Drive(length * 0.4), Drive(length)],
        [Drive(length * 0.5, 3.0), Drive(length, 3.0)],
    ][kind % 5]


def _messy(fixes: list[Fix], rng: random.Random) -> list[Fix]:
    """What a weak phone connection delivers: resends, late arrivals, glitches."""
    out: list[Fix] = []
    for f in fixes:
        out.append(f)
        r = rng.random()
        if r < 0.05:
            out.append(f)  # resent
        elif r < 0.08 and len(out) > 3:
            out.append(out[-3])  # a late arrival from the past
        elif r < 0.10:
            out.append(replace(f, lat=f.lat + 0.3, t=f.t + 1))  # a 33 km glitch
        elif r < 0.12:
            out.append(replace(f, accuracy=800.0, t=f.t + 1))
    return out


def _compare(plans: list[TripPlan], streams: list[list[Fix]], batch: int, now: float | None) -> int:
    expected = []
    for plan, fixes in zip(plans, streams, strict=True):
        mon = TripMonitor(plan)
        expected.append([mon.update(f, now) for f in fixes])
    # Each phone's fixes arrive in its stream's order (resends and late ones included);
    # the phones interleave.
    arrivals = sorted((j, k, j) for k, fixes in enumerate(streams) for j in range(len(fixes)))
    bank = MonitorBank()
    for plan in plans:
        bank.add(plan)
    checked = 0
    for start in range(0, len(arrivals), batch):
        chunk = arrivals[start : start + batch]
        fx = [streams[k][j] for _, k, j in chunk]

        def col(name: str, fx: list[Fix] = fx) -> np.ndarray:
            return np.array(
                [math.nan if getattr(f, name) is None else getattr(f, name) for f in fx]
            )

        res = bank.update(
            [k for _, k, _ in chunk],
            col("t"),
            col("lat"),
            col("lon"),
            accuracy=col("accuracy"),
            speed=col("speed"),
            battery=col("battery"),
            now=now,
        )
        events: dict[int, list[tuple[str, float]]] = {}
        for i, ev in res.events:
            events.setdefault(i, []).append((ev.kind.value, ev.progress_m))
        for i, (_, k, j) in enumerate(chunk):
            e = expected[k][j]
            assert VERDICTS[res.verdict[i]] == e.verdict
            assert res.distance_m[i] == pytest.approx(e.distance_m, abs=1e-6)
            assert res.progress_m[i] == pytest.approx(e.progress_m, abs=1e-6)
            assert res.remaining_m[i] == pytest.approx(e.remaining_m, abs=1e-6)
            assert res.predicted_arrival[i] == pytest.approx(e.predicted_arrival, abs=1e-6)
            assert res.delay_s[i] == pytest.approx(e.delay_s, abs=1e-6)
            assert STATUSES[res.status[i]] == e.status
            if e.speed_mps is None:
                assert math.isnan(res.speed_mps[i])
            else:
                assert res.speed_mps[i] == pytest.approx(e.speed_mps, rel=1e-9)
            assert events.get(i, []) == [
                (ev.kind.value, pytest.approx(ev.progress_m, abs=1e-6)) for ev in e.events
            ]
            checked += 1
    for row, plan in enumerate(plans):
        mon = TripMonitor(plan)
        for f in streams[row]:
            mon.update(f, now)
        assert_same_state(bank.state(row), mon.state)
    return checked


def assert_same_state(a: MonitorState, b: MonitorState) -> None:
    # The batched path projects through earth-centred coordinates, the per-fix path
    # with PROJ's ortho: the same plane to nanometres, not to the last bit.
    da, db = a.to_dict(), b.to_dict()
    assert da.keys() == db.keys()
    for key, va in da.items():
        if isinstance(va, float):
            assert va == pytest.approx(db[key], abs=1e-6), key
        else:
            assert va == db[key], key


@pytest.mark.parametrize(
    ("seed", "trips", "batch", "messy"),
    [(0, 1, 1, False), (1, 5, 256, False), (2, 6, 17, True), (3, 3, 3, True), (4, 6, 1000, True),
     (5, 4, 64, True), (6, 2, 7, False), (7, 6, 256, True)],
)  # fmt: skip
def test_batched_path_matches_per_fix_path(seed: int, trips: int, batch: int, messy: bool) -> None:
    rng = random.Random(seed)
    plans, streams = [], []
    for k in range(trips):
        route = _route(seed + k, out_and_back=(k % 3 == 2))
        plans.append(TripPlan(route, departure=T0, arrival=T0 + route.length_m / 9.0))
        fixes = simulate(
            route,
            _scenario(route, seed + k),
            start_t=T0 + rng.uniform(0, 5),
            noise=Noise(rng.uniform(5, 20), 0.05),
            seed=seed + k,
        )
        streams.append(_messy(fixes, rng) if messy else fixes)
    now = max(f.t for s in streams for f in s) if messy else None
    assert _compare(plans, streams, batch, now) == sum(len(s) for s in streams)


def test_batch_raises_the_same_alerts_as_per_fix_on_a_detour() -> None:
    route = _route(5)
    plan = TripPlan(route, departure=T0, arrival=T0 + route.length_m / 10.0)
    fixes = simulate(route, _scenario(route, 1), start_t=T0, seed=3)
    mon = TripMonitor(plan)
    per_fix = [ev.kind.value for f in fixes for ev in mon.update(f).events]
    assert "off_route" in per_fix
    assert "back_on_route" in per_fix
    bank = MonitorBank()
    bank.add(plan)
    res = bank.update(
        [0] * len(fixes),
        np.array([f.t for f in fixes]),
        np.array([f.lat for f in fixes]),
        np.array([f.lon for f in fixes]),
        accuracy=np.array([f.accuracy for f in fixes]),
    )
    assert [ev.kind.value for _, ev in res.events] == per_fix


def test_a_trip_moves_between_the_bank_and_a_per_fix_monitor() -> None:
    """A worker can checkpoint a trip from the bank and resume it one fix at a time."""
    route = _route(9)
    plan = TripPlan(route, departure=T0, arrival=T0 + route.length_m / 10.0)
    fixes = simulate(route, _scenario(route, 1), start_t=T0, seed=4)
    half = len(fixes) // 2
    bank = MonitorBank()
    bank.add(plan)
    bank.update(
        [0] * half,
        np.array([f.t for f in fixes[:half]]),
        np.array([f.lat for f in fixes[:half]]),
        np.array([f.lon for f in fixes[:half]]),
        accuracy=np.array([f.accuracy for f in fixes[:half]]),
    )
    resumed = TripMonitor(plan, MonitorState.from_dict(bank.state(0).to_dict()))
    events_resumed = [ev.kind.value for f in fixes[half:] for ev in resumed.update(f).events]
    straight = TripMonitor(plan)
    events_straight = [ev.kind.value for f in fixes for ev in straight.update(f).events]
    assert events_straight[-len(events_resumed) :] == events_resumed
    assert_same_state(resumed.state, straight.state)
    # And back into a bank, beside a trip that was already there.
    bank.add(plan, resumed.state)
    assert_same_state(bank.state(1), straight.state)
