"""OwnTracks in HTTP mode (the OwnTracks booklet's JSON format). Pure: a request body in,
a :class:`~sigueme.trackers.fields.TrackerFix` (or nothing) out, or
:class:`~sigueme.trackers.fields.TrackerError` naming the field.

A ``_type: "location"`` message carries ``lat``, ``lon`` and ``tst`` (epoch seconds),
and optionally ``acc`` (m), ``vel`` (km/h), ``cog`` (degrees) and ``batt`` (%); zero
values are left out by the app. Every other ``_type`` (``waypoint``, ``waypoints``,
``transition``, ``lwt``, ``card``, ``status``...) is acknowledged and ignored, except
``encrypted``, which Sígueme cannot read and refuses, saying so.

The phone names itself in the headers ``X-Limit-U`` (user) and ``X-Limit-D`` (device)
(or ``?u=&d=``); :func:`device_identifier` makes the ``user/device`` a device is
registered under.
"""

from __future__ import annotations

import json

from sigueme.trackers.fields import (
    KMH_MPS,
    TrackerError,
    TrackerFix,
    battery_percent,
    check_position,
    epoch_seconds,
    heading,
    latitude,
    longitude,
    optional_number,
    unknown_if_negative,
)
from sigueme.trackers.fields import device_id as check_device_id

LOCATION = "location"
ENCRYPTED = "encrypted"


def device_identifier(user: str | None, device: str | None) -> str:
    """The identifier a device is registered under: ``user/device``, or ``user`` alone
    when the app names no device. :class:`TrackerError` without a user."""
    if user is None or not user.strip():
        raise TrackerError(
            "X-Limit-U", "is missing: set the username (and the device ID) in OwnTracks"
        )
    user = user.strip()
    if "/" in user:
        raise TrackerError("X-Limit-U", "a username cannot contain /")
    if device is None or not device.strip():
        return check_device_id("X-Limit-U", user)
    return check_device_id("X-Limit-D", f"{user}/{device.strip()}")


def parse_body(body: bytes) -> TrackerFix | None:
    """Read one OwnTracks message from a request body: a fix for a location, ``None``
    for a message type Sígueme does not use."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise TrackerError("body", "not UTF-8 text") from None
    if not text.strip():
        raise TrackerError("body", "is empty: OwnTracks sends one JSON message per request")
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise TrackerError(
            "body", f"not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise TrackerError("body", "JSON nested too deeply") from None
    return parse_message(doc)


def parse_message(doc: object) -> TrackerFix | None:
    """Read one decoded OwnTracks message (see the module's description)."""
    if not isinstance(doc, dict):
        raise TrackerError("body", "must be a JSON object (one OwnTracks message)")
    kind = doc.get("_type")
    if kind is None:
        raise TrackerError("_type", "is missing")
    if not isinstance(kind, str):
        raise TrackerError("_type", "must be text")
    if kind == ENCRYPTED:
        raise TrackerError(
            "_type",
            "encrypted payloads are not supported: clear the encryption key in OwnTracks",
        )
    if kind != LOCATION:
        return None
    for key in ("lat", "lon", "tst"):
        if doc.get(key) is None:
            raise TrackerError(key, "is missing")
    lat = latitude("lat", doc["lat"])
    lon = longitude("lon", doc["lon"])
    check_position(lat, lon, "lat")
    kmh = unknown_if_negative(optional_number("vel", doc.get("vel")))
    return TrackerFix(
        t=epoch_seconds("tst", doc["tst"]),
        lat=lat,
        lon=lon,
        accuracy=unknown_if_negative(optional_number("acc", doc.get("acc"))),
        speed=None if kmh is None else kmh * KMH_MPS,
        heading=heading("cog", doc.get("cog")),
        battery=battery_percent("batt", optional_number("batt", doc.get("batt"))),
    )


def _refuse_constant(name: str) -> object:
    raise TrackerError("body", f"{name} is not a number JSON allows")
