"""The OsmAnd HTTP protocol, as Traccar Client and other trackers send it (Traccar's
``OsmAndProtocolDecoder``). Pure: a request's query string, body and content type in,
an :class:`OsmAndReport` out, or :class:`~sigueme.trackers.fields.TrackerError` naming
the field.

Three forms, told apart by content type (or, without one, by the body's first byte):

- parameters, in the query string (GET) and/or a form body (POST
  ``application/x-www-form-urlencoded``): ``id`` or ``deviceid``; ``lat`` and ``lon``
  (or ``location=lat,lon``); ``timestamp`` (epoch seconds or milliseconds, ISO 8601, or
  ``yyyy-MM-dd HH:mm:ss`` UTC; the server's clock when absent); ``speed`` in knots;
  ``bearing`` or ``heading`` (degrees); ``accuracy`` (m); ``batt`` (%); ``alarm``
  (``sos``...). ``altitude``, ``hdop``, ``charge``, ``valid`` and anything else are
  accepted and not used.
- JSON (the body Traccar Client 9 posts): ``{"location": {"timestamp", "coords":
  {"latitude", "longitude", "accuracy", "speed" (m/s), "heading"}, "battery": {"level"
  (0–1)}, "extras": {"alarm"}}, "device_id"}``; ``location`` may also be a list (a
  batch). Negative speed, heading, accuracy or battery level mean "unknown".
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sigueme.trackers.fields import (
    KNOT_MPS,
    TrackerError,
    TrackerFix,
    alarm,
    battery_percent,
    check_position,
    device_id,
    flexible_time,
    heading,
    latitude,
    longitude,
    optional_number,
    unknown_if_negative,
)

MAX_FIXES = 500
"""The most locations one JSON batch may carry."""
MAX_PARAMS = 100
"""The most parameters one request may carry (a query string or form is bounded)."""


@dataclass(frozen=True, slots=True)
class OsmAndReport:
    """What one request said: which device, and its fixes (one, or a JSON batch)."""

    device_id: str
    fixes: tuple[TrackerFix, ...]

    @property
    def alarms(self) -> tuple[str, ...]:
        return tuple(f.alarm for f in self.fixes if f.alarm is not None)


def parse_request(query: str, body: bytes, content_type: str | None, *, now: float) -> OsmAndReport:
    """Read one OsmAnd request: its raw query string, body and ``Content-Type``.

    A JSON body (by content type, or a body starting with ``{`` or ``[``) is the JSON
    form; otherwise the query string's and the form body's parameters are read together
    (a form parameter wins over a query parameter of the same name). ``now`` (epoch
    seconds) stands in for a missing ``timestamp``."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    stripped = body.lstrip()
    if kind == "application/json" or kind.endswith("+json") or stripped[:1] in (b"{", b"["):
        return parse_json(_json(body), now=now)
    pairs = _pairs("query string", query)
    if stripped:
        pairs += _pairs("body", _text(body))
    return parse_params(pairs, now=now)


def parse_params(
    params: Mapping[str, str] | Iterable[tuple[str, str]], *, now: float
) -> OsmAndReport:
    """Read the parameter form (a mapping, or pairs where the last of a name wins)."""
    values: dict[str, str] = dict(params.items() if isinstance(params, Mapping) else params)
    if "id" in values:
        ident = device_id("id", values["id"])
    elif "deviceid" in values:
        ident = device_id("deviceid", values["deviceid"])
    else:
        raise TrackerError("id", "is missing: set the device identifier in the app")

    if "lat" in values or "lon" in values or "location" not in values:
        if "lat" not in values:
            raise TrackerError("lat", "is missing")
        if "lon" not in values:
            raise TrackerError("lon", "is missing")
        lat = latitude("lat", values["lat"])
        lon = longitude("lon", values["lon"])
        lat_field = "lat"
    else:
        parts = values["location"].split(",")
        if len(parts) != 2:
            raise TrackerError("location", "must be lat,lon")
        lat = latitude("location", parts[0])
        lon = longitude("location", parts[1])
        lat_field = "location"
    check_position(lat, lon, lat_field)

    t = flexible_time("timestamp", values["timestamp"]) if "timestamp" in values else now
    knots = unknown_if_negative(optional_number("speed", values.get("speed")))
    if "bearing" in values:
        course = heading("bearing", values["bearing"])
    else:
        course = heading("heading", values.get("heading"))
    fix = TrackerFix(
        t=t,
        lat=lat,
        lon=lon,
        accuracy=unknown_if_negative(optional_number("accuracy", values.get("accuracy"))),
        speed=None if knots is None else knots * KNOT_MPS,
        heading=course,
        battery=battery_percent("batt", optional_number("batt", values.get("batt"))),
        alarm=alarm("alarm", values.get("alarm")),
    )
    return OsmAndReport(device_id=ident, fixes=(fix,))


def parse_json(doc: object, *, now: float) -> OsmAndReport:
    """Read the JSON form (already decoded). ``now`` is unused (the JSON form always
    carries its time) and kept for a uniform signature."""
    del now
    if not isinstance(doc, dict):
        raise TrackerError("body", "must be a JSON object")
    for key in ("device_id", "id", "deviceid"):
        if key in doc:
            ident = device_id(key, doc[key])
            break
    else:
        raise TrackerError("device_id", "is missing: set the device identifier in the app")
    if "location" not in doc:
        raise TrackerError("location", "is missing")
    location = doc["location"]
    if isinstance(location, list):
        if not location:
            raise TrackerError("location", "is an empty list")
        if len(location) > MAX_FIXES:
            raise TrackerError("location", f"at most {MAX_FIXES} locations per request")
        fixes = tuple(_json_location(f"location[{i}]", item) for i, item in enumerate(location))
    else:
        fixes = (_json_location("location", location),)
    return OsmAndReport(device_id=ident, fixes=fixes)


def _json_location(where: str, location: object) -> TrackerFix:
    if not isinstance(location, dict):
        raise TrackerError(where, "must be a JSON object")
    coords = _object(location, "coords", where, required=True)
    lat_field = f"{where}.coords.latitude"
    lat = latitude(lat_field, _required(coords, "latitude", f"{where}.coords"))
    lon = longitude(f"{where}.coords.longitude", _required(coords, "longitude", f"{where}.coords"))
    check_position(lat, lon, lat_field)
    t = flexible_time(f"{where}.timestamp", _required(location, "timestamp", where))
    battery = _object(location, "battery", where, required=False)
    level = unknown_if_negative(optional_number(f"{where}.battery.level", battery.get("level")))
    if level is not None and level > 1.0:
        raise TrackerError(f"{where}.battery.level", "a fraction from 0 to 1")
    extras = _object(location, "extras", where, required=False)
    return TrackerFix(
        t=t,
        lat=lat,
        lon=lon,
        accuracy=unknown_if_negative(
            optional_number(f"{where}.coords.accuracy", coords.get("accuracy"))
        ),
        speed=unknown_if_negative(optional_number(f"{where}.coords.speed", coords.get("speed"))),
        heading=heading(f"{where}.coords.heading", coords.get("heading")),
        battery=battery_percent(f"{where}.battery.level", None if level is None else level * 100.0),
        alarm=alarm(f"{where}.extras.alarm", extras.get("alarm")),
    )


def _object(parent: dict[str, Any], key: str, where: str, *, required: bool) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        if required:
            raise TrackerError(f"{where}.{key}", "is missing")
        return {}
    if not isinstance(value, dict):
        raise TrackerError(f"{where}.{key}", "must be a JSON object")
    return value


def _required(parent: dict[str, Any], key: str, where: str) -> object:
    if parent.get(key) is None:
        raise TrackerError(f"{where}.{key}", "is missing")
    return parent[key]


def _refuse_constant(name: str) -> object:
    raise TrackerError("body", f"{name} is not a number JSON allows")


def _json(body: bytes) -> object:
    text = _text(body)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise TrackerError(
            "body", f"not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise TrackerError("body", "JSON nested too deeply") from None


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise TrackerError("body", "not UTF-8 text") from None


def _pairs(where: str, text: str) -> list[tuple[str, str]]:
    if not text:
        return []
    try:
        return parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_PARAMS
        )
    except ValueError:
        raise TrackerError(where, f"at most {MAX_PARAMS} parameters") from None
