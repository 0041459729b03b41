"""The OwnTracks parser: the booklet's example, units, ignored message types, refusals
that name the field, and the user/device identifier."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sigueme.trackers.fields import KMH_MPS, TrackerError
from sigueme.trackers.owntracks import device_identifier, parse_body, parse_message

EXAMPLE: dict[str, Any] = {
    "_type": "location",
    "tst": 1440405601,
    "acc": 10,
    "alt": 262,
    "lon": 13.6028,
    "vac": 6,
    "vel": 18,
    "lat": 51.0626,
    "cog": 82,
    "tid": "NE",
    "batt": 99,
}


def test_the_booklet_example() -> None:
    fix = parse_body(json.dumps(EXAMPLE).encode())
    assert fix is not None
    assert (fix.t, fix.lat, fix.lon, fix.accuracy, fix.heading, fix.battery) == (
        1440405601.0,
        51.0626,
        13.6028,
        10.0,
        82.0,
        99.0,
    )
    assert fix.speed == pytest.approx(5.0)  # 18 km/h
    assert fix.seq == 1440405601000
    assert fix.alarm is None


def test_only_the_required_fields() -> None:
    # Zero values are left out by the app: no acc, vel, cog or batt.
    fix = parse_message({"_type": "location", "lat": 18.9211, "lon": -99.2345, "tst": 1779978615})
    assert fix is not None
    assert (fix.accuracy, fix.speed, fix.heading, fix.battery) == (None, None, None, None)


@pytest.mark.parametrize(("kmh", "mps"), [(0, 0.0), (1, KMH_MPS), (36, 10.0), (120, 33.3333)])
def test_velocity_in_kmh_becomes_metres_per_second(kmh: int, mps: float) -> None:
    fix = parse_message({**EXAMPLE, "vel": kmh})
    assert fix is not None
    assert fix.speed == pytest.approx(mps, abs=1e-4)


@pytest.mark.parametrize(
    "kind", ["waypoint", "waypoints", "transition", "lwt", "card", "status", "beacon", "cmd"]
)
def test_other_message_types_are_ignored(kind: str) -> None:
    assert parse_message({"_type": kind, "desc": "Casa", "tst": 1}) is None


def test_encrypted_messages_are_refused_saying_why() -> None:
    with pytest.raises(TrackerError, match="encryption key") as info:
        parse_message({"_type": "encrypted", "data": "abc"})
    assert info.value.field == "_type"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"_type": None}, "_type"),
        ({"_type": 5}, "_type"),
        ({"lat": None}, "lat"),
        ({"lon": None}, "lon"),
        ({"tst": None}, "tst"),
        ({"lat": "north"}, "lat"),
        ({"lat": 95.0}, "lat"),
        ({"lon": 200}, "lon"),
        ({"lat": 0, "lon": 0}, "lat"),
        ({"tst": 99}, "tst"),
        ({"tst": 1440405601000}, "tst"),  # milliseconds are not OwnTracks
        ({"tst": "soon"}, "tst"),
        ({"vel": "fast"}, "vel"),
        ({"cog": [1]}, "cog"),
        ({"acc": True}, "acc"),
        ({"batt": 120}, "batt"),
    ],
)
def test_refusals_name_the_field(change: dict[str, Any], field: str) -> None:
    # None: the field is left out.
    doc = {k: v for k, v in {**EXAMPLE, **change}.items() if v is not None}
    with pytest.raises(TrackerError) as info:
        parse_message(doc)
    assert info.value.field == field


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b"[1, 2]",
        b'"location"',
        b"\xff\xfe",
        b'{"_type": "location", "lat": NaN, "lon": 1, "tst": 1440405601}',
        b'{"_type": "location", "lat": Infinity, "lon": 1, "tst": 1440405601}',
    ],
)
def test_garbage_is_refused(body: bytes) -> None:
    with pytest.raises(TrackerError) as info:
        parse_body(body)
    assert info.value.field == "body"


def test_negative_values_mean_unknown() -> None:
    fix = parse_message({**EXAMPLE, "vel": -1, "cog": -1, "acc": -1, "batt": -1})
    assert fix is not None
    assert (fix.speed, fix.heading, fix.accuracy, fix.battery) == (None, None, None, None)


@pytest.mark.parametrize(
    ("user", "device", "expected"),
    [("ana", "pixel", "ana/pixel"), (" ana ", " pixel ", "ana/pixel"), ("ana", None, "ana")],
)
def test_device_identifier(user: str, device: str | None, expected: str) -> None:
    assert device_identifier(user, device) == expected


@pytest.mark.parametrize(
    ("user", "device", "field"),
    [(None, "pixel", "X-Limit-U"), ("", "pixel", "X-Limit-U"), ("a/b", "c", "X-Limit-U")],
)
def test_device_identifier_refusals(user: str | None, device: str | None, field: str) -> None:
    with pytest.raises(TrackerError) as info:
        device_identifier(user, device)
    assert info.value.field == field
