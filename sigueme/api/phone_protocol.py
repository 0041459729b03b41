"""The phone's websocket protocol: frames in, parsed and checked; frames out, built.

Frames are JSON text, at most :data:`MAX_FRAME_BYTES` (128 KiB). From the phone::

    {"type": "auth", "token": "sgm_..."}            first frame, when no header was sent
    {"type": "fix", "seq": 12, "t": ..., "lat": 18.92, "lon": -99.23,
     "accuracy": 8, "speed": 12.5, "heading": 270, "battery": 80}
    {"type": "fixes", "fixes": [{"seq": 12, "t": ..., ...}, ...]}   up to 500
    {"type": "sos", "fix": {"seq": 13, "t": ..., "lat": ..., "lon": ...}, "note": "..."}
                                                     fix and note optional
    {"type": "cancel", "pin": "1234"}                cancel the trip's live alerts
    {"type": "report", "text": ..., "media": [...]}  a report with small media
                                                     (:mod:`sigueme.api.phone_reports`)
    {"type": "ping"}

``t`` is the device time: an ISO 8601 string with a zone (``"2026-05-28T14:00:05Z"``),
epoch seconds (``1780000005``, ``1780000005.25``) or epoch milliseconds
(``1780000005000``: any number of 10^11 or more is milliseconds), between 2000 and
2100. ``seq`` (0 to 2^63 - 1) is required: resends carry the same one. ``speed`` is
m/s, ``heading`` degrees from north (-1 unknown), ``battery`` percent, ``accuracy``
metres. Unknown keys are ignored (a phone may send more than we use); NaN and
Infinity, which Python's ``json`` would accept, are refused.

Parsing never raises anything but :class:`FrameError`, which says why, which field
(``"fixes[3].lat"``) and, when it can tell, which ``seq``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from sigueme.geo.fixes import EARLIEST_FIX_TIME, LATEST_FIX_TIME
from sigueme.services.ingest import MAX_BATCH, MAX_SEQ, IncomingFix, TripStatus

MAX_FRAME_BYTES: Final = 128 * 1024
"""Largest frame a phone may send: room for :data:`MAX_FIXES_PER_FRAME` fixes with every
field (some 150 bytes each; 64 KiB would hold only about 430 of them)."""
MAX_FIXES_PER_FRAME: Final = MAX_BATCH
MAX_TOKEN_CHARS: Final = 200
MILLISECONDS_FROM: Final = 1e11
"""Epoch numbers at least this large are milliseconds (1e11 s is the year 5138; 1e11
ms is 1973)."""


class FrameError(Exception):
    """A frame the server refuses: nothing it carried was stored."""

    def __init__(self, reason: str, field: str | None = None, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.seq = seq


# -- frames in --------------------------------------------------------------------------


def epoch_seconds(value: object) -> float:
    """Device time in any of the three forms, as UTC epoch seconds in [2000, 2100]."""
    if isinstance(value, bool):
        raise ValueError("must be a time: ISO 8601 text, epoch seconds or milliseconds")
    if isinstance(value, int | float):
        try:
            t = float(value)
        except OverflowError:
            raise ValueError("must be a finite number") from None
        if not math.isfinite(t):
            raise ValueError("must be a finite number")
        if abs(t) >= MILLISECONDS_FROM:
            t /= 1000.0
    elif isinstance(value, str):
        if len(value) > 40:
            raise ValueError("is not an ISO 8601 time")
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("is not an ISO 8601 time") from None
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("needs a time zone (Z or ±hh:mm)")
        t = when.timestamp()
    else:
        raise ValueError("must be a time: ISO 8601 text, epoch seconds or milliseconds")
    if not EARLIEST_FIX_TIME <= t <= LATEST_FIX_TIME:
        raise ValueError("is not between 2000 and 2100")
    return t


DeviceTime = Annotated[float, BeforeValidator(epoch_seconds)]

_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)


class FixIn(BaseModel):
    model_config = _STRICT

    type: Literal["fix"] = "fix"
    seq: int = Field(ge=0, le=MAX_SEQ)
    t: DeviceTime
    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)
    accuracy: float | None = Field(default=None, ge=0.0, le=1e6)
    speed: float | None = Field(default=None, ge=0.0, le=1_000.0)
    heading: float | None = Field(default=None, ge=-1.0, le=360.0)
    battery: float | None = Field(default=None, ge=0.0, le=100.0)

    def incoming(self) -> IncomingFix:
        return IncomingFix(
            seq=self.seq,
            t=self.t,
            lat=self.lat,
            lon=self.lon,
            accuracy=self.accuracy,
            speed=self.speed,
            heading=self.heading,
            battery=self.battery,
        )


class FixesIn(BaseModel):
    model_config = _STRICT

    type: Literal["fixes"]
    fixes: list[FixIn] = Field(min_length=1, max_length=MAX_FIXES_PER_FRAME)


class SosIn(BaseModel):
    model_config = _STRICT

    type: Literal["sos"]
    fix: FixIn | None = None
    note: str | None = Field(default=None, max_length=500)


class CancelIn(BaseModel):
    model_config = _STRICT

    type: Literal["cancel"]
    pin: str = Field(min_length=1, max_length=8)


class AuthIn(BaseModel):
    model_config = _STRICT

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS)


@dataclass(frozen=True, slots=True)
class Auth:
    token: str


@dataclass(frozen=True, slots=True)
class Fixes:
    fixes: tuple[IncomingFix, ...]
    batch: bool
    """Sent as a ``fixes`` frame (field names in errors are ``fixes[i].name``)."""


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Sos:
    fix: IncomingFix | None
    """Where the phone was (stored like any fix first), if it knew."""
    note: str | None


@dataclass(frozen=True, slots=True)
class Cancel:
    pin: str


@dataclass(frozen=True, slots=True)
class ReportRaw:
    """A ``report`` frame, parsed further by :mod:`sigueme.api.phone_reports`."""

    raw: dict[str, Any]


Frame = Auth | Fixes | Ping | Sos | Cancel | ReportRaw

_MODELS: dict[str, type[BaseModel]] = {
    "fix": FixIn,
    "fixes": FixesIn,
    "auth": AuthIn,
    "sos": SosIn,
    "cancel": CancelIn,
}


def _no_constants(name: str) -> Any:
    raise FrameError(f"{name} is not a number in JSON")


def parse_frame(text: str) -> Frame:
    """The frame in ``text`` (already known to be within :data:`MAX_FRAME_BYTES`), or
    :class:`FrameError`."""
    try:
        raw = json.loads(text, parse_constant=_no_constants)
    except FrameError:
        raise
    except (ValueError, RecursionError):
        raise FrameError("not valid JSON") from None
    if not isinstance(raw, dict):
        raise FrameError("a frame is a JSON object")
    kind = raw.get("type")
    if kind == "ping":
        return Ping()
    if kind == "report":
        return ReportRaw(raw)
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise FrameError(
            "unknown frame type: one of auth, fix, fixes, sos, cancel, report, ping", "type"
        )
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        raise _frame_error(raw, exc) from None
    if isinstance(parsed, AuthIn):
        return Auth(parsed.token)
    if isinstance(parsed, SosIn):
        fix = parsed.fix.incoming() if parsed.fix is not None else None
        return Sos(fix, (parsed.note or "").strip() or None)
    if isinstance(parsed, CancelIn):
        return Cancel(parsed.pin)
    if isinstance(parsed, FixesIn):
        return Fixes(tuple(f.incoming() for f in parsed.fixes), batch=True)
    assert isinstance(parsed, FixIn)
    return Fixes((parsed.incoming(),), batch=False)


def _frame_error(raw: dict[str, Any], exc: ValidationError) -> FrameError:
    """The first problem of ``exc``, without echoing the input."""
    first = exc.errors(include_input=False, include_url=False)[0]
    loc = first.get("loc", ())
    msg = str(first.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg.removeprefix("Value error, ")
    field = field_name(loc)
    seq = None
    source: object = raw
    if len(loc) >= 2 and loc[0] == "fixes" and isinstance(loc[1], int):
        fixes = raw.get("fixes")
        source = fixes[loc[1]] if isinstance(fixes, list) and loc[1] < len(fixes) else None
    if isinstance(source, dict):
        candidate = source.get("seq")
        if isinstance(candidate, int) and not isinstance(candidate, bool):
            seq = candidate if 0 <= candidate <= MAX_SEQ else None
    if first.get("type") == "missing":
        msg = "required"
    return FrameError(msg, field or None, seq)


def field_name(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """``("fixes", 3, "lat")`` → ``"fixes[3].lat"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# -- frames out -------------------------------------------------------------------------


def iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def status_frame(status: TripStatus) -> dict[str, Any]:
    """The trip's status as the phone shows it."""
    return {
        "route_status": status.route_status,
        "distance_m": _round(status.distance_m, 1),
        "progress_m": _round(status.progress_m, 1),
        "progress_fraction": _round(status.progress_fraction, 4),
        "predicted_arrival": iso(status.predicted_arrival),
        "delay_s": _round(status.delay_s, 0),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def error_frame(
    reason: str,
    *,
    field: str | None = None,
    seq: int | None = None,
    retry: bool | None = None,
    retry_after_s: float | None = None,
) -> dict[str, Any]:
    """``{"type": "error", "reason": ...}`` with what else is known."""
    frame: dict[str, Any] = {"type": "error", "reason": reason}
    if field is not None:
        frame["field"] = field
    if seq is not None:
        frame["seq"] = seq
    if retry is not None:
        frame["retry"] = retry
    if retry_after_s is not None:
        frame["retry_after_s"] = round(retry_after_s, 2)
    return frame


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
