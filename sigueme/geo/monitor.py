"""The per-trip monitor: a small state machine that turns fixes into events.

For each fix it answers: how far from the route, how far along it, how much is
left, how fast, when will they arrive, and did anything happen. It is built so that
GPS noise stays quiet and real trouble does not:

* ``off_route`` only after ``off_route_fixes`` consecutive fixes beyond the
  corridor (widened by ``accuracy_factor`` x the fix's accuracy) spanning at least
  ``off_route_seconds``; ``back_on_route`` only within the narrower
  ``back_on_route_ratio`` x corridor for ``back_on_route_fixes`` fixes.
* ``stopped`` after ``stop_seconds`` inside a circle of ``stop_radius_m`` (widened
  by the fixes' accuracy) around the mean of the fixes since the trip stood still,
  except at the origin, planned stops and the destination. Only ``move_fixes``
  fixes in a row outside the circle are movement (``moving``): outliers are not.
* ``late`` when the predicted arrival (now + remaining distance at the planned
  speed + the planned stops still ahead) passes the planned one by
  ``late_grace_seconds``; ``on_schedule`` once it is back within half of that.
* ``backtracking`` when progress falls back by more than ``backtrack_m``.
* ``arrived`` in the destination zone at the end of the route.
* ``low_battery`` at or below ``low_battery_percent``.

Only fixes the filter accepts move the state: duplicates, out-of-order, future,
far, inaccurate and jumping fixes are evaluated and reported, but raise nothing.
The state is a plain dataclass (:class:`MonitorState`) that serialises to JSON, so
a trip can be checkpointed and resumed on another worker.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any, NamedTuple

from sigueme.geo.fixes import Fix, Verdict
from sigueme.geo.matching import match_point
from sigueme.geo.plan import TripPlan

MATCH_TOLERANCE_M = 30.0
"""Legs within this (plus the fix's accuracy) of the nearest are all candidates."""
REACH_SLACK_M = 20.0
"""The matching window reaches this far (plus twice the fix's accuracy: the anchor and
the fix both carry noise) beyond what the traveller could have covered since the last
match within the corridor ..."""
REACH_FORWARD_MPS = 45.0
"""... going forward at this speed (162 km/h) ..."""
REACH_BACK_MPS = 20.0
"""... or back along the route at this one (72 km/h): turning round is slower."""
STILL_SPEED_MPS = 1.0
"""A fix reporting less speed than this is no sign of leaving a stop."""
FAR_M = 1_500_000.0
"""Fixes farther than this from the route's frame centre (x or y) are not this trip."""


class Status(StrEnum):
    """A trip's status as monitors see it (most serious first when several apply)."""

    PENDING = "pending"
    ON_ROUTE = "on_route"
    DRIFTING = "drifting"
    OFF_ROUTE = "off_route"
    STOPPED = "stopped"
    LATE = "late"
    ARRIVED = "arrived"


class EventKind(StrEnum):
    OFF_ROUTE = "off_route"
    BACK_ON_ROUTE = "back_on_route"
    STOPPED = "stopped"
    MOVING = "moving"
    LATE = "late"
    ON_SCHEDULE = "on_schedule"
    BACKTRACKING = "backtracking"
    ARRIVED = "arrived"
    LOW_BATTERY = "low_battery"


class Event(NamedTuple):
    kind: EventKind
    t: float
    lon: float
    lat: float
    distance_m: float
    progress_m: float
    delay_s: float


class Evaluation(NamedTuple):
    """What one fix says about the trip."""

    t: float
    lon: float
    lat: float
    verdict: Verdict
    distance_m: float
    """Metres from the route (the leg the trip is on)."""
    progress_m: float
    """Metres along the route, from the last fix matched within the corridor."""
    progress_fraction: float
    remaining_m: float
    speed_mps: float | None
    """Reported by the phone, else derived from the previous accepted fix."""
    predicted_arrival: float
    delay_s: float
    """Predicted minus planned arrival, seconds (negative: early)."""
    status: Status
    events: tuple[Event, ...]


# Route position states (the corridor part of the state machine).
_ON, _DRIFTING, _OFF = 0, 1, 2


@dataclass(slots=True)
class MonitorState:
    """Everything the monitor remembers about a trip: small, plain, JSON-serialisable."""

    fixes: int = 0
    last_t: float = -math.inf
    last_x: float = 0.0
    last_y: float = 0.0
    jumps: int = 0
    jump_x: float = 0.0
    jump_y: float = 0.0
    jump_t: float = 0.0
    jump_since: float = 0.0
    anchor_s: float = 0.0
    anchor_t: float = -math.inf
    max_s: float = 0.0
    route_state: int = _ON
    out_count: int = 0
    out_since: float = 0.0
    in_count: int = 0
    stop_x: float = 0.0
    stop_y: float = 0.0
    stop_t: float = 0.0
    stop_n: int = 0
    move_count: int = 0
    stopped: bool = False
    late: bool = False
    back_count: int = 0
    backtracking: bool = False
    arrive_count: int = 0
    arrived: bool = False
    low_battery: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; infinities (never seen) become ``None``."""
        return {
            k: (None if isinstance(v, float) and math.isinf(v) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MonitorState:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in data:
                v = data[f.name]
                kwargs[f.name] = -math.inf if v is None else v
        return cls(**kwargs)

    @property
    def status(self) -> Status:
        if self.arrived:
            return Status.ARRIVED
        if self.fixes == 0:
            return Status.PENDING
        if self.route_state == _OFF:
            return Status.OFF_ROUTE
        if self.stopped:
            return Status.STOPPED
        if self.late:
            return Status.LATE
        if self.route_state == _DRIFTING:
            return Status.DRIFTING
        return Status.ON_ROUTE


class TripMonitor:
    """Evaluates one trip's fixes, one at a time, in the order they arrive."""

    def __init__(self, plan: TripPlan, state: MonitorState | None = None) -> None:
        self.plan = plan
        self.state = state if state is not None else MonitorState()
        route = plan.route
        self._dest = (float(route.x[-1]), float(route.y[-1]))
        self._forward = route.frame.forward
        self._length = route.length_m

    def update(self, fix: Fix, now: float | None = None) -> Evaluation:
        """Evaluate one fix. ``now`` is the server's receive time (epoch seconds), used to
        refuse fixes from the future; without it the fix's own time is trusted."""
        plan = self.plan
        th = plan.thresholds
        st = self.state
        length = self._length
        t = fix.t
        acc = fix.accuracy if fix.accuracy is not None else 0.0
        x, y = self._forward(fix.lon, fix.lat)
        max_acc = th.max_accuracy_m

        # -- the filter -------------------------------------------------------------------
        if now is not None and t > now + th.future_seconds:
            verdict = Verdict.FUTURE
        elif t < st.last_t:
            verdict = Verdict.OUT_OF_ORDER
        elif t == st.last_t and x == st.last_x and y == st.last_y:
            verdict = Verdict.DUPLICATE
        elif not (-FAR_M < x < FAR_M and -FAR_M < y < FAR_M):  # also inf and NaN
            verdict = Verdict.FAR
        elif acc > max_acc:
            verdict = Verdict.INACCURATE
        else:
            verdict = Verdict.ACCEPTED
            if st.fixes:
                # How far the traveller could be from the last accepted fix. While the
                # phone is glitching the clock stops at the first glitch: scattered
                # glitches must not become plausible just because they went on long.
                since = st.jump_since if st.jumps else t
                reach = th.max_speed_mps * (since - st.last_t) + 2.0 * max_acc
                if math.hypot(x - st.last_x, y - st.last_y) > reach:
                    # A glitch, unless the far fixes agree with each other for more than
                    # jump_reset_fixes in a row: then the old place was the glitch.
                    streak = 1
                    if st.jumps:
                        reach = th.max_speed_mps * (t - st.jump_t) + 2.0 * max_acc
                        if math.hypot(x - st.jump_x, y - st.jump_y) <= reach:
                            streak = st.jumps + 1
                    if streak <= th.jump_reset_fixes:
                        verdict = Verdict.JUMP
                        if not st.jumps:
                            st.jump_since = t
                        st.jumps, st.jump_x, st.jump_y, st.jump_t = streak, x, y, t

        if verdict is Verdict.FAR:
            d = plan.route.far_distance_m(fix.lon, fix.lat)
            return self._evaluation(fix, verdict, d, st.anchor_s, None, ())

        # -- where on the route -------------------------------------------------------------
        anchor = st.anchor_s
        if st.fixes:
            elapsed = abs(t - st.anchor_t)
            slack = REACH_SLACK_M + 2.0 * acc
            lo = anchor - slack - REACH_BACK_MPS * elapsed
            hi = anchor + slack + REACH_FORWARD_MPS * elapsed
        else:
            lo, hi = 0.0, length
        m = match_point(plan.route, x, y, lo, hi, anchor, MATCH_TOLERANCE_M + acc)
        d = m.distance_m
        margin = th.accuracy_factor * min(acc, max_acc)
        confident = d <= plan.corridor_m + margin

        if verdict is not Verdict.ACCEPTED:
            progress = m.progress_m if confident else anchor
            return self._evaluation(fix, verdict, d, progress, None, ())

        # -- accepted: advance the state ------------------------------------------------------
        speed = fix.speed
        first = st.fixes == 0
        if speed is None and not first and t > st.last_t:
            speed = math.hypot(x - st.last_x, y - st.last_y) / (t - st.last_t)
        st.fixes += 1
        st.jumps = 0
        st.last_t, st.last_x, st.last_y = t, x, y
        if confident or first:
            st.anchor_s, st.anchor_t = m.progress_m, t
        s = st.anchor_s
        events: list[EventKind] = []
        active = not st.arrived

        # Corridor, with hysteresis.
        if st.route_state == _OFF:
            if d <= plan.corridor_m * th.back_on_route_ratio:
                st.in_count += 1
                if st.in_count >= th.back_on_route_fixes:
                    st.route_state, st.in_count, st.out_count = _ON, 0, 0
                    if active:
                        events.append(EventKind.BACK_ON_ROUTE)
            else:
                st.in_count = 0
        elif d > plan.corridor_m + margin:
            if st.out_count == 0:
                st.out_since = t
            st.out_count += 1
            st.route_state = _DRIFTING
            if st.out_count >= th.off_route_fixes and t - st.out_since >= th.off_route_seconds:
                st.route_state, st.in_count = _OFF, 0
                if active:
                    events.append(EventKind.OFF_ROUTE)
        else:
            st.route_state, st.out_count = _ON, 0

        # Standing still: a circle around the running mean of the fixes since the stop.
        if first:
            st.stop_x, st.stop_y, st.stop_t, st.stop_n = x, y, t, 1
        elif math.hypot(x - st.stop_x, y - st.stop_y) > max(th.stop_radius_m, 2.0 * margin):
            # Outside the circle. Once a stop has gathered more fixes than it takes to
            # leave it, a phone that says it is not moving (Doppler speed is sound even
            # when multipath throws the position) is not leaving it.
            settled = st.stop_n > th.move_fixes
            if not settled or fix.speed is None or fix.speed >= STILL_SPEED_MPS:
                st.move_count += 1
                if st.move_count >= th.move_fixes:
                    st.stop_x, st.stop_y, st.stop_t, st.stop_n, st.move_count = x, y, t, 1, 0
                    if st.stopped:
                        st.stopped = False
                        if active:
                            events.append(EventKind.MOVING)
        else:
            st.move_count = 0
            st.stop_n += 1
            st.stop_x += (x - st.stop_x) / st.stop_n
            st.stop_y += (y - st.stop_y) / st.stop_n
            if (
                not st.stopped
                and active
                and t - st.stop_t >= th.stop_seconds
                and t >= plan.departure
                and not plan.at_rest_zone(st.stop_x, st.stop_y)
            ):
                st.stopped = True
                events.append(EventKind.STOPPED)

        # Going back along the route.
        if confident:
            if st.max_s - s > th.backtrack_m:
                st.back_count += 1
                if st.back_count >= th.backtrack_fixes and not st.backtracking:
                    st.backtracking = True
                    if active:
                        events.append(EventKind.BACKTRACKING)
            elif st.max_s - s <= th.backtrack_m / 2:
                st.back_count = 0
                st.backtracking = False
            if s > st.max_s:
                st.max_s = s

        # Arrival.
        if active:
            if (
                s >= length - plan.destination_radius_m - plan.corridor_m
                and math.hypot(x - self._dest[0], y - self._dest[1])
                <= plan.destination_radius_m + margin
            ):
                st.arrive_count += 1
                if st.arrive_count >= th.arrival_fixes:
                    st.arrived = True
                    events.append(EventKind.ARRIVED)
            else:
                st.arrive_count = 0

        # Schedule.
        predicted = plan.predict_arrival(t, s)
        if not st.arrived:
            delay = predicted - plan.arrival
            if not st.late and delay > th.late_grace_seconds:
                st.late = True
                events.append(EventKind.LATE)
            elif st.late and delay <= th.late_grace_seconds / 2:
                st.late = False
                events.append(EventKind.ON_SCHEDULE)

        # Battery.
        if fix.battery is not None:
            if not st.low_battery and fix.battery <= th.low_battery_percent:
                st.low_battery = True
                if active:
                    events.append(EventKind.LOW_BATTERY)
            elif st.low_battery and fix.battery > th.low_battery_percent + 5:
                st.low_battery = False

        return self._evaluation(fix, verdict, d, s, speed, events, predicted)

    def _evaluation(
        self,
        fix: Fix,
        verdict: Verdict,
        distance: float,
        progress: float,
        speed: float | None,
        kinds: list[EventKind] | tuple[()],
        predicted: float | None = None,
    ) -> Evaluation:
        plan = self.plan
        if predicted is None:
            predicted = plan.predict_arrival(fix.t, progress)
        delay = predicted - plan.arrival
        events = (
            tuple(Event(k, fix.t, fix.lon, fix.lat, distance, progress, delay) for k in kinds)
            if kinds
            else ()
        )
        length = self._length
        return Evaluation(
            fix.t,
            fix.lon,
            fix.lat,
            verdict,
            distance,
            progress,
            progress / length,
            length - progress,
            speed,
            predicted,
            delay,
            self.state.status,
            events,
        )
