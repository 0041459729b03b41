"""Location fixes and the fix filter.

A phone's fixes are noisy, repeated, late and sometimes absurd. The filter, in the
spirit of Traccar's ``FilterHandler``, gives every fix a :class:`Verdict`: only
``accepted`` fixes move a trip's monitor; the others are reported with their
verdict (and stored by the service), never silently lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from sigueme.geo.errors import FixError

EARLIEST_FIX_TIME = 946_684_800.0  # 2000-01-01T00:00:00Z: older device clocks are broken
LATEST_FIX_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z


class Verdict(StrEnum):
    """What the filter made of a fix."""

    ACCEPTED = "accepted"
    """Used by the monitor."""
    INACCURATE = "inaccurate"
    """Reported accuracy worse than ``max_accuracy_m``: too vague to judge the route by."""
    DUPLICATE = "duplicate"
    """Same time and place as the last accepted fix (a resend)."""
    OUT_OF_ORDER = "out_of_order"
    """Older than the last accepted fix: stored in time order, never raises an alert."""
    FUTURE = "future"
    """Device time too far ahead of the server's clock."""
    JUMP = "jump"
    """Implies a speed no traveller reaches: a GPS glitch."""
    FAR = "far"
    """Over 1,500 km from the route: not this trip (a lost minus sign, a glitch)."""


@dataclass(frozen=True, slots=True)
class Fix:
    """One position report. ``t`` is UTC epoch seconds (device time); ``speed`` m/s;
    ``heading`` degrees from north; ``battery`` percent; ``accuracy`` metres (68 %)."""

    t: float
    lat: float
    lon: float
    accuracy: float | None = None
    speed: float | None = None
    heading: float | None = None
    battery: float | None = None

    def __post_init__(self) -> None:
        validate_fix(self)


def _number(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FixError(name, f"must be a number, got {type(v).__name__}")
    try:
        f = float(v)
    except OverflowError:  # an integer too large for a float
        raise FixError(name, "must be a finite number") from None
    if not math.isfinite(f):
        raise FixError(name, f"must be finite, got {v}")
    return f


def validate_fix(fix: Fix) -> None:
    """Raise :class:`FixError` unless the fix is a position on Earth at a plausible time."""
    t = _number("t", fix.t)
    if not EARLIEST_FIX_TIME <= t <= LATEST_FIX_TIME:
        raise FixError("t", f"timestamp {t} is not between 2000 and 2100 (seconds since 1970)")
    lat = _number("lat", fix.lat)
    lon = _number("lon", fix.lon)
    if not -90.0 <= lat <= 90.0:
        raise FixError("lat", f"latitude {lat} is outside [-90, 90]")
    if not -180.0 <= lon <= 180.0:
        raise FixError("lon", f"longitude {lon} is outside [-180, 180]")
    if lat == 0.0 and lon == 0.0:
        raise FixError("lat", "0,0 is what a phone sends without a position")
    if fix.accuracy is not None and not 0.0 <= _number("accuracy", fix.accuracy) <= 1e6:
        raise FixError("accuracy", "must be between 0 and 1,000,000 m")
    if fix.speed is not None and not 0.0 <= _number("speed", fix.speed) <= 1_000.0:
        raise FixError("speed", "must be between 0 and 1,000 m/s")
    if fix.heading is not None and not -1.0 <= _number("heading", fix.heading) <= 360.0:
        raise FixError("heading", "must be between 0 and 360 degrees (-1 for unknown)")
    if fix.battery is not None and not 0.0 <= _number("battery", fix.battery) <= 100.0:
        raise FixError("battery", "must be a percentage between 0 and 100")
