"""A trip's plan (route, corridor, schedule, destination, stops) and its thresholds."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any

from sigueme.geo.errors import RouteError, ThresholdError
from sigueme.geo.fixes import EARLIEST_FIX_TIME, LATEST_FIX_TIME
from sigueme.geo.route import PlannedStop, Route


def _bounded(lo: float, hi: float, doc: str) -> Any:
    return field(metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True, slots=True)
class Thresholds:
    """How the monitor tells noise from trouble. Every value can be overridden per trip.

    The defaults follow what navigation SDKs use to avoid false off-route calls
    (Mapbox: beyond max(50 m, accuracy + 10-15 m) for 4 fixes; ferrostar: a lower
    threshold to come back) and what phone GPS does in cities (5-15 m, outliers of
    50-150 m).
    """

    off_route_fixes: int = _bounded(1, 50, "consecutive fixes beyond the corridor before off_route")
    off_route_seconds: float = _bounded(0, 3600, "and for at least this many seconds")
    accuracy_factor: float = _bounded(0, 5, "the corridor widens by this times the fix accuracy")
    back_on_route_ratio: float = _bounded(0.1, 1, "back on route within this share of the corridor")
    back_on_route_fixes: int = _bounded(1, 50, "for this many consecutive fixes")
    max_accuracy_m: float = _bounded(10, 10_000, "fixes vaguer than this are flagged inaccurate")
    max_speed_mps: float = _bounded(10, 400, "faster implied movement is a GPS jump")
    jump_reset_fixes: int = _bounded(
        1, 100, "after this many agreeing jumps in a row, the next is trusted"
    )
    future_seconds: float = _bounded(0, 86_400, "device clocks may run this far ahead")
    stop_radius_m: float = _bounded(5, 2_000, "moving less than this counts as standing still")
    stop_seconds: float = _bounded(30, 86_400, "standing still this long away from planned stops")
    move_fixes: int = _bounded(1, 50, "consecutive fixes out of the stop circle to be moving")
    late_grace_seconds: float = _bounded(0, 86_400, "late when predicted arrival exceeds plan by")
    backtrack_m: float = _bounded(20, 100_000, "going back along the route by more than this")
    backtrack_fixes: int = _bounded(1, 50, "for this many consecutive fixes")
    arrival_fixes: int = _bounded(1, 20, "consecutive fixes in the destination zone to arrive")
    low_battery_percent: float = _bounded(0, 100, "battery at or below this is reported")

    def __init__(self, **overrides: float) -> None:
        defaults = _DEFAULTS
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise ThresholdError(sorted(unknown)[0], "is not a threshold")
        for f in fields(Thresholds):
            value = overrides.get(f.name, defaults[f.name])
            lo, hi = f.metadata["range"]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ThresholdError(f.name, "must be a number")
            if not (lo <= value <= hi):  # also NaN; huge integers compare fine
                raise ThresholdError(f.name, f"must be between {lo:g} and {hi:g}")
            if f.type == "int":
                if value != int(value):
                    raise ThresholdError(f.name, "must be a whole number")
                value = int(value)
            object.__setattr__(self, f.name, value)

    def with_overrides(self, **overrides: float) -> Thresholds:
        return Thresholds(**{**self.as_dict(), **overrides})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(Thresholds)}

    @staticmethod
    def describe() -> list[tuple[str, float, str]]:
        """(name, default, meaning) of every threshold, for docs and the CLI."""
        return [(f.name, _DEFAULTS[f.name], f.metadata["doc"]) for f in fields(Thresholds)]


_DEFAULTS: dict[str, float] = {
    "off_route_fixes": 4,
    "off_route_seconds": 30.0,
    "accuracy_factor": 1.0,
    "back_on_route_ratio": 0.8,
    "back_on_route_fixes": 2,
    "max_accuracy_m": 100.0,
    "max_speed_mps": 70.0,
    "jump_reset_fixes": 3,
    "future_seconds": 300.0,
    "stop_radius_m": 50.0,
    "stop_seconds": 300.0,
    "move_fixes": 3,
    "late_grace_seconds": 600.0,
    "backtrack_m": 300.0,
    "backtrack_fixes": 2,
    "arrival_fixes": 2,
    "low_battery_percent": 15.0,
}


def _within(value: object, lo: float, hi: float) -> bool:
    """A real number (not a bool, not NaN) in ``[lo, hi]``."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and lo <= value <= hi


MIN_CORRIDOR_M = 20.0
MAX_CORRIDOR_M = 5_000.0
MAX_STOPS = 50


@dataclass(frozen=True, eq=False)
class TripPlan:
    """What the traveller filed: the route, how far from it is still fine, when they
    leave and when they expect to arrive (UTC epoch seconds)."""

    route: Route
    departure: float
    arrival: float
    corridor_m: float = 150.0
    destination_radius_m: float = 100.0
    stops: Sequence[PlannedStop] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)

    def __post_init__(self) -> None:
        for name in ("departure", "arrival"):
            if not _within(getattr(self, name), EARLIEST_FIX_TIME, LATEST_FIX_TIME):
                raise RouteError(name, "must be a time between the years 2000 and 2100")
        if self.arrival <= self.departure:
            raise RouteError("arrival", "the expected arrival must come after the departure")
        if self.arrival - self.departure > 7 * 86_400:
            raise RouteError("arrival", "a trip may last at most 7 days")
        if not _within(self.corridor_m, MIN_CORRIDOR_M, MAX_CORRIDOR_M):
            raise RouteError(
                "corridor_m", f"must be between {MIN_CORRIDOR_M:g} and {MAX_CORRIDOR_M:g} m"
            )
        if not _within(self.destination_radius_m, 10, 5_000):
            raise RouteError("destination_radius_m", "must be between 10 and 5,000 m")
        if len(self.stops) > MAX_STOPS:
            raise RouteError("stops", f"at most {MAX_STOPS} planned stops")
        for i, stop in enumerate(self.stops):
            if not (_within(stop.lon, -180, 180) and _within(stop.lat, -90, 90)):
                raise RouteError(f"stops[{i}]", "lon/lat out of range")
            if not _within(stop.radius_m, 10, 5_000):
                raise RouteError(f"stops[{i}].radius_m", "must be between 10 and 5,000 m")
            if not _within(stop.dwell_s, 0, 7 * 86_400):
                raise RouteError(f"stops[{i}].dwell_s", "must be zero or more seconds")
            if self.route.far_distance_m(stop.lon, stop.lat) > stop.radius_m + 20_000:
                raise RouteError(f"stops[{i}]", "is more than 20 km from the route")
        if sum(s.dwell_s for s in self.stops) > 0.9 * (self.arrival - self.departure):
            raise RouteError("stops", "the planned stops take (almost) all of the trip's time")

    @cached_property
    def planned_speed_mps(self) -> float:
        """The average speed the schedule implies while moving (planned stops left out)."""
        dwell = sum(s.dwell_s for s in self.stops)
        return self.route.length_m / (self.arrival - self.departure - dwell)

    @cached_property
    def _dwell_marks(self) -> tuple[list[float], list[float]]:
        """Progress where each planned stop's zone begins, ascending, and the planned
        dwell of the stops from there to the end."""
        route = self.route
        marks = sorted(
            (route.nearest(*route.frame.forward(s.lon, s.lat))[1] - s.radius_m, s.dwell_s)
            for s in self.stops
            if s.dwell_s > 0
        )
        suffix = [0.0] * (len(marks) + 1)
        for i in range(len(marks) - 1, -1, -1):
            suffix[i] = suffix[i + 1] + marks[i][1]
        return [m for m, _ in marks], suffix

    def dwell_ahead(self, progress_m: float) -> float:
        """Seconds of planned stops not reached yet at ``progress_m`` along the route."""
        marks, suffix = self._dwell_marks
        if not marks:
            return 0.0
        return suffix[bisect_right(marks, progress_m)]

    def predict_arrival(self, t: float, progress_m: float) -> float:
        """When a traveller at ``progress_m`` at time ``t`` arrives if they go on at the
        planned speed and keep the planned stops still ahead (epoch seconds)."""
        remaining = self.route.length_m - progress_m
        predicted = max(t, self.departure) + remaining / self.planned_speed_mps
        if self.stops:
            predicted += self.dwell_ahead(progress_m)
        return predicted

    @cached_property
    def rest_zones(self) -> list[tuple[float, float, float]]:
        """Circles (x, y, radius in frame metres) where standing still is expected:
        the origin, the planned stops and the destination."""
        route = self.route
        zones = [(float(route.x[0]), float(route.y[0]), self.destination_radius_m)]
        zones += [(*route.frame.forward(s.lon, s.lat), s.radius_m) for s in self.stops]
        zones.append((float(route.x[-1]), float(route.y[-1]), self.destination_radius_m))
        return zones

    def at_rest_zone(self, x: float, y: float) -> bool:
        return any(math.hypot(x - zx, y - zy) <= r for zx, zy, r in self.rest_zones)

    def replace(self, **changes: Any) -> TripPlan:
        return replace(self, **changes)
