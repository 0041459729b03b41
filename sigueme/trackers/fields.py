"""What the tracker-app parsers share: the fix they produce, the error they raise, and
how one field is read (numbers, times, units).

Pure: values in, values out; no I/O, no settings, no web framework.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

KNOT_MPS = 1852.0 / 3600.0
"""One knot in m/s."""
KMH_MPS = 1000.0 / 3600.0
"""One km/h in m/s."""

MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC).timestamp()
MAX_DEVICE_ID = 100
"""The longest device identifier accepted (the ``devices.device_id`` column)."""
MAX_TEXT = 200
"""The longest free-text value read (an alarm name, a timestamp)."""


class TrackerError(ValueError):
    """A tracker app's message that cannot be read: ``field`` names the protocol's own
    field (``lat``, ``timestamp``, ``location.coords.speed``, ``vel``), ``reason`` says
    what is wrong. The message never quotes the value (it may be a position)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TrackerFix:
    """One position as a tracker app reported it, in Sígueme's units."""

    t: float
    """Device time, UTC epoch seconds."""
    lat: float
    lon: float
    accuracy: float | None = None
    """Metres (a rough 68 % radius)."""
    speed: float | None = None
    """m/s."""
    heading: float | None = None
    """Degrees clockwise from north, [0, 360)."""
    battery: float | None = None
    """Percent, 0–100."""
    alarm: str | None = None
    """An alarm the app raised with this fix, lower case (``sos``); ``None`` for none."""

    @property
    def sos(self) -> bool:
        return self.alarm == "sos"

    @property
    def seq(self) -> int:
        """A sequence number for the fix, stable across resends: its device time in
        milliseconds since the epoch. These apps number nothing; a resend of the same fix
        carries the same time, so it is stored once."""
        return round(self.t * 1000.0)


# -- reading one field -------------------------------------------------------------------

_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def number(field: str, value: object) -> float:
    """``value`` (a JSON number or a decimal string) as a finite float, or
    :class:`TrackerError` naming ``field``. Booleans, NaN, infinities, hex and the
    like are refused."""
    if isinstance(value, bool):
        raise TrackerError(field, "must be a number")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise TrackerError(field, "is empty")
        if len(text) > 64 or not _NUMBER.match(text):
            raise TrackerError(field, "must be a decimal number")
        result = float(text)
    else:
        raise TrackerError(field, "must be a number")
    if not math.isfinite(result):
        raise TrackerError(field, "must be a finite number")
    return result


def optional_number(field: str, value: object) -> float | None:
    """Like :func:`number`, with ``None`` and the empty string meaning "not sent"."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return number(field, value)


def latitude(field: str, value: object) -> float:
    lat = number(field, value)
    if not -90.0 <= lat <= 90.0:
        raise TrackerError(field, "latitude must be within [-90, 90]")
    return lat


def longitude(field: str, value: object) -> float:
    lon = number(field, value)
    if not -180.0 <= lon <= 180.0:
        raise TrackerError(field, "longitude must be within [-180, 180]")
    return lon


def check_position(lat: float, lon: float, lat_field: str) -> None:
    """Refuse ``0,0``: what apps send when they have no fix, not a place anyone is."""
    if lat == 0.0 and lon == 0.0:
        raise TrackerError(lat_field, "0,0 is not a position (the phone has no fix yet)")


def unknown_if_negative(value: float | None) -> float | None:
    """Apps report an unknown speed, heading or accuracy as a negative number (iOS's
    -1): that is "not known", not an error."""
    return None if value is None or value < 0 else value


def heading(field: str, value: object) -> float | None:
    """Degrees, negative for unknown; any other angle is brought into [0, 360)."""
    deg = unknown_if_negative(optional_number(field, value))
    return None if deg is None else deg % 360.0


def battery_percent(field: str, value: float | None) -> float | None:
    """A battery level in percent (negative: unknown); over 100 is refused."""
    value = unknown_if_negative(value)
    if value is not None and value > 100.0:
        raise TrackerError(field, "battery level is a percentage, at most 100")
    return value


def alarm(field: str, value: object) -> str | None:
    """An alarm name (``sos``, ``lowBattery``...), lower-cased; empty means none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TrackerError(field, "must be text")
    text = value.strip().lower()
    if len(text) > MAX_TEXT:
        raise TrackerError(field, f"at most {MAX_TEXT} characters")
    return text or None


def device_id(field: str, value: object) -> str:
    """A device identifier: 1 to :data:`MAX_DEVICE_ID` printable characters."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise TrackerError(field, "must be text")
    text = str(value).strip()
    if not text:
        raise TrackerError(field, "is missing: set the device identifier in the app")
    if len(text) > MAX_DEVICE_ID or not text.isprintable():
        raise TrackerError(field, f"1 to {MAX_DEVICE_ID} printable characters")
    return text


def check_time(field: str, t: float) -> float:
    if not MIN_TIME <= t < MAX_TIME:
        raise TrackerError(field, "time must be between the years 2000 and 2100")
    return t


def epoch_seconds(field: str, value: object) -> float:
    """Epoch seconds (a JSON number or a decimal string), checked to lie in 2000–2100."""
    return check_time(field, number(field, value))


_SPACE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?$")
_INT_MAX = 2**31 - 1


def flexible_time(field: str, value: object) -> float:
    """A time as the OsmAnd protocol allows it, to UTC epoch seconds:

    - a number: epoch seconds, or epoch milliseconds when it is 2^31 or more (as
      Traccar reads it);
    - ISO 8601 (``2025-06-15T13:45:12.862Z``, with an offset or ``Z``; without one, UTC);
    - ``yyyy-MM-dd HH:mm:ss`` (UTC).
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise TrackerError(field, "is empty")
        if len(text) > MAX_TEXT:
            raise TrackerError(field, f"at most {MAX_TEXT} characters")
        if _NUMBER.match(text):
            return _epoch(field, number(field, text))
        if "T" in text or "t" in text or _SPACE_TIME.match(text):
            return check_time(field, _iso(field, text))
        raise TrackerError(
            field,
            "a time as epoch seconds or milliseconds, ISO 8601, or yyyy-MM-dd HH:mm:ss (UTC)",
        )
    return _epoch(field, number(field, value))


def _epoch(field: str, value: float) -> float:
    return check_time(field, value / 1000.0 if value >= _INT_MAX else value)


def _iso(field: str, text: str) -> float:
    candidate = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise TrackerError(field, "not a valid ISO 8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
