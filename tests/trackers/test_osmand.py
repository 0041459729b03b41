"""The OsmAnd protocol parser: Traccar's own examples, Traccar Client's three forms, every
time form, units, and refusals that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from sigueme.trackers.fields import KNOT_MPS, TrackerError
from sigueme.trackers.osmand import MAX_FIXES, OsmAndReport, parse_json, parse_request

NOW = datetime(2026, 5, 28, 14, 0, tzinfo=UTC).timestamp()
FORM = "application/x-www-form-urlencoded"


def _query(query: str) -> OsmAndReport:
    return parse_request(query, b"", None, now=NOW)


def _form(body: str, content_type: str | None = FORM) -> OsmAndReport:
    return parse_request("", body.encode(), content_type, now=NOW)


def _refused(query: str) -> TrackerError:
    with pytest.raises(TrackerError) as info:
        _query(query)
    return info.value


# -- Traccar's examples (REFERENCE.md) -------------------------------------------------------


def test_traccar_example_with_timestamp_in_seconds() -> None:
    report = _query(
        "id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0&hdop=0.0"
    )
    assert report.device_id == "123456"
    (fix,) = report.fixes
    assert (fix.t, fix.lat, fix.lon) == (1377177267.0, 60.0, 30.0)
    assert (fix.speed, fix.heading, fix.accuracy, fix.battery, fix.alarm) == (
        0.0,
        0.0,
        None,
        None,
        None,
    )
    assert fix.seq == 1377177267000


def test_traccar_example_without_timestamp_takes_the_server_time() -> None:
    report = _query(
        "id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87"
    )
    (fix,) = report.fixes
    assert report.device_id == "861001000719969"
    assert (fix.lat, fix.lon, fix.battery, fix.t) == (41.666667, -0.883333, 87.0, NOW)


# -- Traccar Client's forms ---------------------------------------------------------------------


def test_form_post_as_traccar_client_sends_it() -> None:
    report = _form(
        "id=48241179&lat=18.9211&lon=-99.2345&timestamp=1779976800&accuracy=7.5"
        "&altitude=1510.0&speed=10.0&bearing=271.5&batt=64.0&charge=false"
    )
    (fix,) = report.fixes
    assert report.device_id == "48241179"
    assert (fix.lat, fix.lon, fix.t, fix.accuracy, fix.heading, fix.battery) == (
        18.9211,
        -99.2345,
        1779976800.0,
        7.5,
        271.5,
        64.0,
    )
    assert fix.speed == pytest.approx(5.144444, abs=1e-6)  # 10 knots


def test_a_form_body_without_a_content_type_is_read_as_a_form() -> None:
    (fix,) = _form("id=1&lat=18.9&lon=-99.2", content_type=None).fixes
    assert (fix.lat, fix.lon) == (18.9, -99.2)


def test_query_and_form_are_read_together_the_form_winning() -> None:
    report = parse_request("id=7&lat=1.5", b"lat=18.9&lon=-99.2", FORM, now=NOW)
    assert report.device_id == "7"
    assert (report.fixes[0].lat, report.fixes[0].lon) == (18.9, -99.2)


JSON_EXAMPLE: dict[str, Any] = {
    "location": {
        "timestamp": "2025-06-15T13:45:12.862Z",
        "coords": {
            "latitude": 18.9211,
            "longitude": -99.2345,
            "accuracy": 5,
            "speed": 3.5,
            "heading": -1,
            "altitude": 5,
        },
        "is_moving": False,
        "odometer": 0,
        "event": "motionchange",
        "battery": {"level": 0.42, "is_charging": False},
        "activity": {"type": "still"},
        "extras": {},
        "_": "&id=48241179&lat=18.9211&lon=-99.2345&timestamp=2025-06-15T13:45:12.862Z&",
    },
    "device_id": "48241179",
}


def test_json_body_as_traccar_client_9_posts_it() -> None:
    report = parse_request("", json.dumps(JSON_EXAMPLE).encode(), "application/json", now=NOW)
    assert report.device_id == "48241179"
    (fix,) = report.fixes
    assert fix.t == datetime(2025, 6, 15, 13, 45, 12, 862000, tzinfo=UTC).timestamp()
    assert fix.seq == 1749995112862
    assert (fix.lat, fix.lon, fix.accuracy) == (18.9211, -99.2345, 5.0)
    assert fix.speed == 3.5  # already m/s
    assert fix.heading is None  # -1: unknown
    assert fix.battery == pytest.approx(42.0)  # level 0–1 → percent
    assert fix.alarm is None


def test_json_body_is_recognised_without_a_content_type() -> None:
    report = parse_request("", b"  " + json.dumps(JSON_EXAMPLE).encode(), None, now=NOW)
    assert report.device_id == "48241179"


def test_json_sos_from_the_extras_is_flagged() -> None:
    doc = json.loads(json.dumps(JSON_EXAMPLE))
    doc["location"]["extras"] = {"alarm": "sos"}
    report = parse_json(doc, now=NOW)
    assert report.fixes[0].sos
    assert report.alarms == ("sos",)


def test_json_batch_of_locations() -> None:
    doc = json.loads(json.dumps(JSON_EXAMPLE))
    second = json.loads(json.dumps(doc["location"]))
    second["timestamp"] = "2025-06-15T13:45:17.862Z"
    doc["location"] = [doc["location"], second]
    report = parse_json(doc, now=NOW)
    assert [f.t for f in report.fixes] == [
        pytest.approx(1749995112.862),
        pytest.approx(1749995117.862),
    ]


def test_json_unknown_speed_accuracy_and_battery() -> None:
    doc = json.loads(json.dumps(JSON_EXAMPLE))
    doc["location"]["coords"].update(speed=-1, accuracy=-1)
    doc["location"]["battery"]["level"] = -1
    (fix,) = parse_json(doc, now=NOW).fixes
    assert (fix.speed, fix.accuracy, fix.battery) == (None, None, None)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.pop("device_id"), "device_id"),
        (lambda d: d.pop("location"), "location"),
        (lambda d: d.update(location=[]), "location"),
        (lambda d: d.update(location="here"), "location"),
        (lambda d: d["location"].pop("coords"), "location.coords"),
        (lambda d: d["location"]["coords"].pop("latitude"), "location.coords.latitude"),
        (lambda d: d["location"]["coords"].update(longitude="x"), "location.coords.longitude"),
        (lambda d: d["location"]["coords"].update(latitude=91), "location.coords.latitude"),
        (lambda d: d["location"].pop("timestamp"), "location.timestamp"),
        (lambda d: d["location"].update(timestamp="yesterday"), "location.timestamp"),
        (lambda d: d["location"]["battery"].update(level=87), "location.battery.level"),
        (lambda d: d["location"].update(battery=1), "location.battery"),
        (lambda d: d["location"]["coords"].update(speed=True), "location.coords.speed"),
        (lambda d: d["location"]["extras"].update(alarm=1), "location.extras.alarm"),
        (lambda d: d.update(device_id=""), "device_id"),
    ],
)
def test_json_refusals_name_the_field(change: Any, field: str) -> None:
    doc = json.loads(json.dumps(JSON_EXAMPLE))
    change(doc)
    with pytest.raises(TrackerError) as info:
        parse_json(doc, now=NOW)
    assert info.value.field == field


def test_json_batch_refusal_names_the_item() -> None:
    doc = json.loads(json.dumps(JSON_EXAMPLE))
    bad = json.loads(json.dumps(doc["location"]))
    bad["coords"]["latitude"] = None
    doc["location"] = [doc["location"], bad]
    with pytest.raises(TrackerError) as info:
        parse_json(doc, now=NOW)
    assert info.value.field == "location[1].coords.latitude"


def test_json_batch_is_bounded() -> None:
    doc = json.loads(json.dumps(JSON_EXAMPLE))
    doc["location"] = [doc["location"]] * (MAX_FIXES + 1)
    with pytest.raises(TrackerError, match="at most 500"):
        parse_json(doc, now=NOW)


@pytest.mark.parametrize(
    "body",
    [b'{"device_id": "1", "location": {"coords": {"latitude": NaN', b"{not json", b"\xff\xfe{}"],
)
def test_garbage_json_is_refused(body: bytes) -> None:
    with pytest.raises(TrackerError) as info:
        parse_request("", body, "application/json", now=NOW)
    assert info.value.field == "body"


def test_nan_in_json_is_refused() -> None:
    doc = json.dumps(JSON_EXAMPLE).replace('"latitude": 18.9211', '"latitude": NaN')
    with pytest.raises(TrackerError, match="NaN"):
        parse_request("", doc.encode(), "application/json", now=NOW)


# -- times ------------------------------------------------------------------------------------

T = datetime(2026, 5, 28, 14, 30, 15, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1779978615", T),  # epoch seconds
        ("1779978615000", T),  # epoch milliseconds
        ("1779978615250", T + 0.25),
        ("1779978615.5", T + 0.5),
        ("2026-05-28T14:30:15Z", T),
        ("2026-05-28T14:30:15.000Z", T),
        ("2026-05-28T08:30:15-06:00", T),  # Morelos time
        ("2026-05-28T14:30:15", T),  # no offset: UTC
        ("2026-05-28 14:30:15", T),  # yyyy-MM-dd HH:mm:ss, UTC
        ("2026-05-28%2014:30:15", T),  # the same, URL-encoded
    ],
)
def test_every_time_form(value: str, expected: float) -> None:
    (fix,) = _query(f"id=1&lat=18.9&lon=-99.2&timestamp={value}").fixes
    assert fix.t == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value",
    ["yesterday", "28/05/2026", "2026-13-45T99:00:00Z", "", "NaN", "inf", "0x10", "1e400", "-5"],
)
def test_bad_times_are_refused(value: str) -> None:
    assert _refused(f"id=1&lat=18.9&lon=-99.2&timestamp={value}").field == "timestamp"


@pytest.mark.parametrize("value", ["946684799", "4102444800", "99999999999999"])
def test_times_outside_2000_2100_are_refused(value: str) -> None:
    error = _refused(f"id=1&lat=18.9&lon=-99.2&timestamp={value}")
    assert (error.field, error.reason) == (
        "timestamp",
        "time must be between the years 2000 and 2100",
    )


def test_resends_keep_their_sequence_number() -> None:
    first = _query("id=1&lat=18.9&lon=-99.2&timestamp=1779978615")
    again = _form("id=1&lat=18.9&lon=-99.2&timestamp=1779978615000")
    assert first.fixes[0].seq == again.fixes[0].seq == 1779978615000


# -- fields -----------------------------------------------------------------------------------


def test_deviceid_location_and_heading_spellings() -> None:
    report = _query("deviceid=abc&location=18.9211,-99.2345&heading=90&timestamp=1779978615")
    (fix,) = report.fixes
    assert report.device_id == "abc"
    assert (fix.lat, fix.lon, fix.heading) == (18.9211, -99.2345, 90.0)


def test_id_wins_over_deviceid() -> None:
    assert _query("deviceid=b&id=a&lat=18.9&lon=-99.2").device_id == "a"


@pytest.mark.parametrize(("knots", "mps"), [("0", 0.0), ("1", KNOT_MPS), ("19.4384", 10.0)])
def test_speed_in_knots_becomes_metres_per_second(knots: str, mps: float) -> None:
    (fix,) = _query(f"id=1&lat=18.9&lon=-99.2&speed={knots}").fixes
    assert fix.speed == pytest.approx(mps, abs=1e-4)


def test_alarm_sos_is_flagged_and_the_fix_kept() -> None:
    (fix,) = _query("id=1&lat=18.9&lon=-99.2&timestamp=1779978615&alarm=SOS").fixes
    assert fix.alarm == "sos"
    assert fix.sos
    assert (fix.lat, fix.lon) == (18.9, -99.2)


def test_other_keys_are_accepted_and_unused() -> None:
    (fix,) = _query("id=1&lat=18.9&lon=-99.2&altitude=1500&hdop=1.2&charge=true&valid=1&x=y").fixes
    assert (fix.lat, fix.lon) == (18.9, -99.2)


def test_negative_speed_bearing_and_accuracy_mean_unknown() -> None:
    (fix,) = _query("id=1&lat=18.9&lon=-99.2&speed=-1&bearing=-1&accuracy=-1&batt=-1").fixes
    assert (fix.speed, fix.heading, fix.accuracy, fix.battery) == (None, None, None, None)


def test_a_bearing_of_a_full_turn_or_more_wraps() -> None:
    (fix,) = _query("id=1&lat=18.9&lon=-99.2&bearing=450").fixes
    assert fix.heading == 90.0


def test_empty_optional_values_mean_not_sent() -> None:
    (fix,) = _query("id=1&lat=18.9&lon=-99.2&speed=&accuracy=&batt=&bearing=").fixes
    assert (fix.speed, fix.accuracy, fix.battery, fix.heading) == (None, None, None, None)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("lat=18.9&lon=-99.2", "id"),
        ("id=&lat=18.9&lon=-99.2", "id"),
        ("id=1&lon=-99.2", "lat"),
        ("id=1&lat=18.9", "lon"),
        ("id=1", "lat"),
        ("id=1&lat=abc&lon=-99.2", "lat"),
        ("id=1&lat=NaN&lon=-99.2", "lat"),
        ("id=1&lat=18.9&lon=inf", "lon"),
        ("id=1&lat=91&lon=-99.2", "lat"),
        ("id=1&lat=18.9&lon=-180.5", "lon"),
        ("id=1&lat=0&lon=0", "lat"),
        ("id=1&location=18.9", "location"),
        ("id=1&location=18.9,-99.2,5", "location"),
        ("id=1&location=x,y", "location"),
        ("id=1&location=0,0", "location"),
        ("id=1&lat=18.9&lon=-99.2&speed=fast", "speed"),
        ("id=1&lat=18.9&lon=-99.2&speed=nan", "speed"),
        ("id=1&lat=18.9&lon=-99.2&bearing=north", "bearing"),
        ("id=1&lat=18.9&lon=-99.2&accuracy=1e999", "accuracy"),
        ("id=1&lat=18.9&lon=-99.2&batt=101", "batt"),
        ("id=1&lat=18.9&lon=-99.2&batt=full", "batt"),
        (f"id={'x' * 101}&lat=18.9&lon=-99.2", "id"),
        ("id=a%00b&lat=18.9&lon=-99.2", "id"),
    ],
)
def test_refusals_name_the_field(query: str, field: str) -> None:
    error = _refused(query)
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


def test_refusals_never_quote_the_value() -> None:
    error = _refused("id=1&lat=18.123456789&lon=-99.2&batt=250")
    assert "250" not in str(error)


def test_too_many_parameters_are_refused() -> None:
    query = "&".join(f"k{i}=v" for i in range(200))
    assert _refused(f"id=1&lat=18.9&lon=-99.2&{query}").field == "query string"


def test_an_empty_request_names_the_device_identifier() -> None:
    assert _refused("").field == "id"


def test_non_utf8_form_is_refused() -> None:
    with pytest.raises(TrackerError) as info:
        parse_request("", b"id=\xff&lat=1&lon=2", FORM, now=NOW)
    assert info.value.field == "body"
