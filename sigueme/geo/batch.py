"""The batched path: many trips' monitors as columns, evaluated with numpy.

:class:`MonitorBank` holds the state of many trips as arrays (one row per trip) and
evaluates a batch of fixes of many trips at once: one pyproj call puts every fix in
earth-centred coordinates, each row's tangent plane is a 3x3 rotation away
(:func:`sigueme.geo.frame.enu_rows`), the route windows are matched as one ragged
array (:func:`sigueme.geo.matching.match_many`), and the state machine of
:class:`sigueme.geo.monitor.TripMonitor` runs as array expressions. It gives the same
answers as feeding the same fixes to one ``TripMonitor`` per trip.

Fixes of one trip inside a batch depend on each other (each moves the trip's
window), so a batch is evaluated in rounds: round k takes every trip's k-th fix.
A batch of one fix for each of a thousand trips is one round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from sigueme.geo.fixes import Verdict
from sigueme.geo.frame import FloatArray, enu_rows, to_ecef
from sigueme.geo.matching import IntArray, match_many
from sigueme.geo.monitor import (
    _DRIFTING,
    _OFF,
    _ON,
    FAR_M,
    MATCH_TOLERANCE_M,
    REACH_BACK_MPS,
    REACH_FORWARD_MPS,
    REACH_SLACK_M,
    STILL_SPEED_MPS,
    Event,
    EventKind,
    MonitorState,
    Status,
)
from sigueme.geo.plan import Thresholds, TripPlan

BoolArray = npt.NDArray[np.bool_]

VERDICTS: tuple[Verdict, ...] = tuple(Verdict)
"""Verdict codes in :attr:`BatchResult.verdict` index this tuple."""
STATUSES: tuple[Status, ...] = tuple(Status)
"""Status codes in :attr:`BatchResult.status` index this tuple."""
_V = {v: np.int8(i) for i, v in enumerate(VERDICTS)}
_S = {s: np.int8(i) for i, s in enumerate(STATUSES)}

_INT_FIELDS = {f.name for f in fields(MonitorState) if f.type == "int" and f.name != "route_state"}
_BOOL_FIELDS = {f.name for f in fields(MonitorState) if f.type == "bool"}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per fix of the batch (in the batch's order): what :class:`Evaluation` holds."""

    verdict: npt.NDArray[np.int8]
    distance_m: FloatArray
    progress_m: FloatArray
    progress_fraction: FloatArray
    remaining_m: FloatArray
    speed_mps: FloatArray
    """NaN where neither reported nor derivable."""
    predicted_arrival: FloatArray
    delay_s: FloatArray
    status: npt.NDArray[np.int8]
    events: list[tuple[int, Event]]
    """(index in the batch, event), in batch order."""


class MonitorBank:
    """The monitors of many trips, as arrays."""

    def __init__(self) -> None:
        self._plans: list[TripPlan] = []
        self._cols: dict[str, list[float]] = {}
        self._state: dict[str, np.ndarray] = {}
        self._dirty = True

    def __len__(self) -> int:
        return len(self._plans)

    def add(self, plan: TripPlan, state: MonitorState | None = None) -> int:
        """Add a trip (resumed from ``state`` if given); returns its row."""
        if not self._dirty:
            self._store_state()
        self._plans.append(plan)
        st = state if state is not None else MonitorState()
        for f in fields(MonitorState):
            self._cols.setdefault(f.name, []).append(getattr(st, f.name))
        self._dirty = True
        return len(self._plans) - 1

    def state(self, row: int) -> MonitorState:
        """A trip's state, for a checkpoint or a per-fix ``TripMonitor``."""
        kwargs: dict[str, Any]
        if self._dirty:
            kwargs = {name: col[row] for name, col in self._cols.items()}
        else:
            kwargs = {name: arr[row].item() for name, arr in self._state.items()}
        return MonitorState(**kwargs)

    def _store_state(self) -> None:
        self._cols = {name: arr.tolist() for name, arr in self._state.items()}

    def _build(self) -> None:
        """(Re)build the route tables and per-trip constants after trips were added."""
        plans = self._plans
        n_vert = np.array([len(p.route.x) for p in plans], dtype=np.int64)
        vbase = np.zeros(len(plans), dtype=np.int64)
        np.cumsum(n_vert[:-1], out=vbase[1:])
        lengths = np.array([p.route.length_m for p in plans])
        offset = np.zeros(len(plans))
        np.cumsum(lengths[:-1] + 1.0, out=offset[1:])
        self._vbase, self._nvert, self._offset = vbase, n_vert, offset
        self._gcum = np.concatenate([p.route.cum_m + offset[i] for i, p in enumerate(plans)])

        # Global segment tables; segment i of trip k is entry vbase[k] + i (one padding
        # entry per route keeps that arithmetic simple and is never inside a window).
        def cat(name: str) -> FloatArray:
            return np.concatenate([np.append(getattr(p.route, name), 0.0) for p in plans])

        self._ax, self._ay = cat("seg_ax"), cat("seg_ay")
        self._dx, self._dy = cat("seg_dx"), cat("seg_dy")
        self._ux, self._uy, self._k0 = cat("seg_ux"), cat("seg_uy"), cat("seg_k0")
        self._seg = cat("seg_m")
        self._cum0 = np.concatenate([p.route.cum_m for p in plans])
        self._origin = np.array([p.route.frame.origin_ecef for p in plans])
        self._rot = np.array([p.route.frame.rotation for p in plans])
        self._length = lengths
        self._corridor = np.array([p.corridor_m for p in plans])
        self._dest_r = np.array([p.destination_radius_m for p in plans])
        self._dep = np.array([p.departure for p in plans])
        self._arr = np.array([p.arrival for p in plans])
        self._vplan = np.array([p.planned_speed_mps for p in plans])
        self._has_stops = np.array([bool(p.stops) for p in plans], dtype=bool)
        self._dest = np.array([(p.route.x[-1], p.route.y[-1]) for p in plans])
        self._th = {
            name: np.array([getattr(p.thresholds, name) for p in plans], dtype=np.float64)
            for name in Thresholds().as_dict()
        }
        self._state = {}
        for f in fields(MonitorState):
            col = self._cols[f.name]
            if f.name in _BOOL_FIELDS:
                self._state[f.name] = np.array(col, dtype=bool)
            elif f.name in _INT_FIELDS or f.name == "route_state":
                self._state[f.name] = np.array(col, dtype=np.int64)
            else:
                self._state[f.name] = np.array(col, dtype=np.float64)
        self._dirty = False

    def update(
        self,
        rows: Sequence[int] | IntArray,
        t: FloatArray,
        lat: FloatArray,
        lon: FloatArray,
        *,
        accuracy: FloatArray | None = None,
        speed: FloatArray | None = None,
        battery: FloatArray | None = None,
        now: float | None = None,
    ) -> BatchResult:
        """Evaluate fixes; ``rows[i]`` is the trip of fix i. Optional columns use NaN
        for a missing value. Fixes must already be valid (see :class:`sigueme.geo.Fix`)."""
        if self._dirty:
            self._build()
        rows_a = np.asarray(rows, dtype=np.int64)
        n = rows_a.size
        t = np.asarray(t, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        nan = np.full(n, np.nan)
        acc_raw = nan if accuracy is None else np.asarray(accuracy, dtype=np.float64)
        spd = nan if speed is None else np.asarray(speed, dtype=np.float64)
        bat = nan if battery is None else np.asarray(battery, dtype=np.float64)
        acc = np.where(np.isnan(acc_raw), 0.0, acc_raw)
        xy = enu_rows(to_ecef(lon, lat), self._origin[rows_a], self._rot[rows_a])
        out = _Out(n, lon, lat)
        # Round k holds each trip's k-th fix of the batch.
        order = np.argsort(rows_a, kind="stable")
        sorted_rows = rows_a[order]
        group_start = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        sizes = np.diff(np.r_[group_start, n])
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n) - np.repeat(group_start, sizes)
        with np.errstate(invalid="ignore", divide="ignore"):
            if n and rank.max() == 0:
                self._round(np.arange(n), rows_a, t, xy, acc, spd, bat, now, out)
            else:
                for k in range(int(rank.max()) + 1 if n else 0):
                    idx = np.flatnonzero(rank == k)
                    self._round(idx, rows_a[idx], t, xy, acc, spd, bat, now, out)
        out.events.sort(key=lambda e: (e[0], e[1]))
        return BatchResult(
            verdict=out.verdict,
            distance_m=out.distance,
            progress_m=out.progress,
            progress_fraction=out.progress / self._length[rows_a],
            remaining_m=self._length[rows_a] - out.progress,
            speed_mps=out.speed,
            predicted_arrival=out.predicted,
            delay_s=out.predicted - self._arr[rows_a],
            status=out.status,
            events=[(i, ev) for i, _, ev in out.events],
        )

    def _round(
        self,
        k: IntArray,
        r: IntArray,
        t_all: FloatArray,
        xy: FloatArray,
        acc_all: FloatArray,
        spd_all: FloatArray,
        bat_all: FloatArray,
        now: float | None,
        out: _Out,
    ) -> None:
        """One round: fixes ``k`` of the batch, each of a different trip ``r``."""
        state = self._state
        th = {name: arr[r] for name, arr in self._th.items()}
        t, acc = t_all[k], acc_all[k]
        x, y = xy[k, 0], xy[k, 1]
        length, corridor = self._length[r], self._corridor[r]
        fixes = state["fixes"][r]
        has = fixes > 0
        last_t, last_x, last_y = state["last_t"][r], state["last_x"][r], state["last_y"][r]

        # The filter.
        far = ~((np.abs(x) < FAR_M) & (np.abs(y) < FAR_M))  # also inf and NaN
        verdict = np.full(k.size, _V[Verdict.ACCEPTED], dtype=np.int8)
        max_acc, max_speed = th["max_accuracy_m"], th["max_speed_mps"]
        jumps = state["jumps"][r]
        since = np.where(jumps > 0, state["jump_since"][r], t)
        hop = np.hypot(x - last_x, y - last_y)
        jumpish = has & (hop > max_speed * (since - last_t) + 2.0 * max_acc)
        jx, jy, jt = state["jump_x"][r], state["jump_y"][r], state["jump_t"][r]
        agree = (jumps > 0) & (np.hypot(x - jx, y - jy) <= max_speed * (t - jt) + 2.0 * max_acc)
        streak = np.where(agree, jumps + 1, 1)
        verdict[jumpish & (streak <= th["jump_reset_fixes"])] = _V[Verdict.JUMP]
        verdict[acc > max_acc] = _V[Verdict.INACCURATE]
        verdict[far] = _V[Verdict.FAR]
        verdict[(t == last_t) & (x == last_x) & (y == last_y)] = _V[Verdict.DUPLICATE]
        verdict[t < last_t] = _V[Verdict.OUT_OF_ORDER]
        if now is not None:
            verdict[t > now + th["future_seconds"]] = _V[Verdict.FUTURE]
        jumped = verdict == _V[Verdict.JUMP]
        rj = r[jumped]
        state["jump_since"][rj] = np.where(jumps[jumped] > 0, state["jump_since"][rj], t[jumped])
        state["jumps"][rj] = streak[jumped]
        state["jump_x"][rj], state["jump_y"][rj], state["jump_t"][rj] = (
            x[jumped],
            y[jumped],
            t[jumped],
        )
        placed = verdict != _V[Verdict.FAR]
        x, y = np.where(placed, x, 0.0), np.where(placed, y, 0.0)

        # The match.
        anchor_s, anchor_t = state["anchor_s"][r], state["anchor_t"][r]
        elapsed = np.abs(t - anchor_t)
        slack = REACH_SLACK_M + 2.0 * acc
        lo = np.where(has, anchor_s - slack - REACH_BACK_MPS * elapsed, 0.0)
        hi = np.where(has, anchor_s + slack + REACH_FORWARD_MPS * elapsed, length)
        lo, hi = np.maximum(lo, 0.0), np.minimum(hi, length)
        empty = hi < lo
        if empty.any():
            lo = np.where(empty, np.clip(anchor_s, 0.0, length), lo)
            hi = np.where(empty, lo, hi)
        off = self._offset[r]
        vb, nv = self._vbase[r], self._nvert[r]
        i0 = np.maximum(np.searchsorted(self._gcum, lo + off, side="right") - 1 - vb, 0)
        i0 = np.minimum(i0, nv - 2)
        i1 = np.minimum(np.searchsorted(self._gcum, hi + off, side="left") - vb, nv - 1)
        i1 = np.maximum(i1, i0 + 1)
        d, m_s, _ = match_many(
            x, y, lo, hi, anchor_s, MATCH_TOLERANCE_M + acc, i0 + vb, i1 + vb,
            self._ax, self._ay, self._dx, self._dy, self._ux, self._uy, self._k0,
            self._cum0, self._seg,
        )  # fmt: skip
        for j in np.flatnonzero(~placed):
            d[j] = self._plans[r[j]].route.far_distance_m(*out.lonlat(int(k[j])))
        margin = th["accuracy_factor"] * np.minimum(acc, max_acc)
        confident = placed & (d <= corridor + margin)

        a = verdict == _V[Verdict.ACCEPTED]
        progress = np.where(confident, m_s, anchor_s)
        speed = np.full(k.size, np.nan)
        if a.any():
            speed = self._advance(k, r, a, t, x, y, acc, d, m_s, confident, margin, th,
                                  spd_all[k], bat_all[k], out)  # fmt: skip
            progress = np.where(a, state["anchor_s"][r], progress)

        predicted = self._predict(r, t, progress)
        out.verdict[k] = verdict
        out.distance[k] = d
        out.progress[k] = progress
        out.speed[k] = speed
        out.predicted[k] = predicted
        out.status[k] = self._status(r)

    def _advance(
        self,
        k: IntArray,
        r: IntArray,
        a: BoolArray,
        t: FloatArray,
        x: FloatArray,
        y: FloatArray,
        acc: FloatArray,
        d: FloatArray,
        m_s: FloatArray,
        confident: BoolArray,
        margin: FloatArray,
        th: dict[str, FloatArray],
        spd: FloatArray,
        bat: FloatArray,
        out: _Out,
    ) -> FloatArray:
        """Advance the state of the trips whose fix was accepted (mask ``a``)."""
        state = self._state
        plans = self._plans
        corridor, length = self._corridor[r], self._length[r]
        fixes = state["fixes"][r]
        first = fixes == 0
        last_t, last_x, last_y = state["last_t"][r], state["last_x"][r], state["last_y"][r]
        derive = np.isnan(spd) & ~first & (t > last_t)
        speed = np.where(derive, np.hypot(x - last_x, y - last_y) / (t - last_t), spd)
        speed = np.where(a, speed, np.nan)
        ra = r[a]
        state["fixes"][ra] += 1
        state["jumps"][ra] = 0
        state["last_t"][ra], state["last_x"][ra], state["last_y"][ra] = t[a], x[a], y[a]
        move = a & (confident | first)
        state["anchor_s"][r[move]] = m_s[move]
        state["anchor_t"][r[move]] = t[move]
        s = state["anchor_s"][r]
        active = ~state["arrived"][r]
        events: list[tuple[BoolArray, int, EventKind]] = []

        # Corridor, with hysteresis.
        rs = state["route_state"][r]
        was_off = a & (rs == _OFF)
        back_in = d <= corridor * th["back_on_route_ratio"]
        in_count = np.where(
            was_off, np.where(back_in, state["in_count"][r] + 1, 0), state["in_count"][r]
        )
        back = was_off & back_in & (in_count >= th["back_on_route_fixes"])
        in_count[back] = 0
        out_count = state["out_count"][r]
        out_count[back] = 0
        rs = np.where(back, _ON, rs)
        events.append((back & active, 0, EventKind.BACK_ON_ROUTE))
        not_off = a & ~was_off
        outside = not_off & (d > corridor + margin)
        out_since = np.where(outside & (out_count == 0), t, state["out_since"][r])
        out_count = np.where(outside, out_count + 1, out_count)
        rs = np.where(outside, _DRIFTING, rs)
        went = (
            outside
            & (out_count >= th["off_route_fixes"])
            & (t - out_since >= th["off_route_seconds"])
        )
        rs = np.where(went, _OFF, rs)
        in_count[went] = 0
        events.append((went & active, 0, EventKind.OFF_ROUTE))
        inside = not_off & ~outside
        rs = np.where(inside, _ON, rs)
        out_count[inside] = 0
        state["route_state"][r], state["in_count"][r] = rs, in_count
        state["out_count"][r], state["out_since"][r] = out_count, out_since

        # Standing still: a circle around the running mean of the fixes since the stop.
        sx, sy, stt = state["stop_x"][r], state["stop_y"][r], state["stop_t"][r]
        out_of_circle = np.hypot(x - sx, y - sy) > np.maximum(th["stop_radius_m"], 2.0 * margin)
        settled = state["stop_n"][r] > th["move_fixes"]
        mv = a & ~first & out_of_circle & ~(settled & (spd < STILL_SPEED_MPS))
        move_count = np.where(mv, state["move_count"][r] + 1, state["move_count"][r])
        reset = mv & (move_count >= th["move_fixes"])
        renew = (a & first) | reset
        still = a & ~first & ~out_of_circle
        sn = np.where(renew, 1, np.where(still, state["stop_n"][r] + 1, state["stop_n"][r]))
        sx = np.where(renew, x, np.where(still, sx + (x - sx) / sn, sx))
        sy = np.where(renew, y, np.where(still, sy + (y - sy) / sn, sy))
        stt = np.where(renew, t, stt)
        move_count[reset | still] = 0
        stopped = state["stopped"][r]
        resumed = reset & stopped
        stopped = stopped & ~resumed
        events.append((resumed & active, 1, EventKind.MOVING))
        cand = still & ~stopped & active & (t - stt >= th["stop_seconds"]) & (t >= self._dep[r])
        for j in np.flatnonzero(cand):
            if plans[r[j]].at_rest_zone(float(sx[j]), float(sy[j])):
                cand[j] = False
        stopped = stopped | cand
        events.append((cand, 1, EventKind.STOPPED))
        state["stop_x"][r], state["stop_y"][r], state["stop_t"][r] = sx, sy, stt
        state["stop_n"][r], state["move_count"][r], state["stopped"][r] = sn, move_count, stopped

        # Going back along the route.
        c = a & confident
        behind = state["max_s"][r] - s
        b_far = c & (behind > th["backtrack_m"])
        back_count = np.where(b_far, state["back_count"][r] + 1, state["back_count"][r])
        backtracking = state["backtracking"][r]
        turned = b_far & (back_count >= th["backtrack_fixes"]) & ~backtracking
        backtracking = backtracking | turned
        events.append((turned & active, 2, EventKind.BACKTRACKING))
        recovered = c & ~b_far & (behind <= th["backtrack_m"] / 2)
        back_count[recovered] = 0
        backtracking = backtracking & ~recovered
        state["back_count"][r], state["backtracking"][r] = back_count, backtracking
        state["max_s"][r] = np.where(c & (s > state["max_s"][r]), s, state["max_s"][r])

        # Arrival.
        dest = self._dest[r]
        dest_r = self._dest_r[r]
        aa = a & active
        at_dest = (
            aa
            & (np.hypot(x - dest[:, 0], y - dest[:, 1]) <= dest_r + margin)
            & (s >= length - dest_r - corridor)
        )
        arrive_count = np.where(
            at_dest, state["arrive_count"][r] + 1, np.where(aa, 0, state["arrive_count"][r])
        )
        arrived_now = at_dest & (arrive_count >= th["arrival_fixes"])
        state["arrive_count"][r] = arrive_count
        arrived = state["arrived"][r] | arrived_now
        state["arrived"][r] = arrived
        events.append((arrived_now, 3, EventKind.ARRIVED))

        # Schedule.
        delay = self._predict(r, t, s) - self._arr[r]
        late = state["late"][r]
        grace = th["late_grace_seconds"]
        na = a & ~arrived
        got_late = na & ~late & (delay > grace)
        caught_up = na & late & (delay <= grace / 2)
        state["late"][r] = (late | got_late) & ~caught_up
        events.append((got_late, 4, EventKind.LATE))
        events.append((caught_up, 4, EventKind.ON_SCHEDULE))

        # Battery.
        hb = a & ~np.isnan(bat)
        low = state["low_battery"][r]
        drained = hb & ~low & (bat <= th["low_battery_percent"])
        charged = hb & low & (bat > th["low_battery_percent"] + 5)
        state["low_battery"][r] = (low | drained) & ~charged
        events.append((drained & active, 5, EventKind.LOW_BATTERY))

        delay_out = delay
        for mask, rank, kind in events:
            for j in np.flatnonzero(mask):
                i = int(k[j])
                ev = Event(
                    kind, float(t[j]), *out.lonlat(i), float(d[j]), float(s[j]), float(delay_out[j])
                )
                out.events.append((i, rank, ev))
        return speed

    def _predict(self, r: IntArray, t: FloatArray, progress: FloatArray) -> FloatArray:
        """:meth:`TripPlan.predict_arrival`, row by row."""
        moving = (self._length[r] - progress) / self._vplan[r]
        predicted: FloatArray = np.maximum(t, self._dep[r]) + moving
        for j in np.flatnonzero(self._has_stops[r]):
            predicted[j] += self._plans[r[j]].dwell_ahead(float(progress[j]))
        return predicted

    def _status(self, r: IntArray) -> npt.NDArray[np.int8]:
        state = self._state
        rs = state["route_state"][r]
        conditions = [
            state["arrived"][r],
            state["fixes"][r] == 0,
            rs == _OFF,
            state["stopped"][r],
            state["late"][r],
            rs == _DRIFTING,
        ]
        choices = [Status.ARRIVED, Status.PENDING, Status.OFF_ROUTE, Status.STOPPED, Status.LATE]
        codes = [_S[c] for c in [*choices, Status.DRIFTING]]
        return np.select(conditions, codes, _S[Status.ON_ROUTE]).astype(np.int8)


class _Out:
    def __init__(self, n: int, lon: FloatArray, lat: FloatArray) -> None:
        self.verdict = np.zeros(n, dtype=np.int8)
        self.distance = np.zeros(n)
        self.progress = np.zeros(n)
        self.speed = np.full(n, np.nan)
        self.predicted = np.zeros(n)
        self.status = np.zeros(n, dtype=np.int8)
        self.events: list[tuple[int, int, Event]] = []
        self._lon, self._lat = lon, lat

    def lonlat(self, i: int) -> tuple[float, float]:
        return float(self._lon[i]), float(self._lat[i])
