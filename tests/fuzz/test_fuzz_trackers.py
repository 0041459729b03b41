"""Tracker-app protocols under hypothesis: the OsmAnd and OwnTracks parsers answer a
report or a :class:`~sigueme.trackers.fields.TrackerError` naming the field (never
another exception), what they accept is a position at a time, and over HTTP, with a
registered device's real secret, every request they refuse is answered 400 and stores
nothing; wrong secrets and unknown devices 401, also with a readable fix."""

from __future__ import annotations

import base64
import time
from collections import Counter
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fuzz_world import Fuzzed, changed, examples, fingerprint
from hypothesis import given
from hypothesis import strategies as st
from junk import BAD_NUMBERS, DECADES_AWAY, JSON, WEIRD_TEXT, dumps, poisoned

from sigueme.geo.fixes import EARLIEST_FIX_TIME, LATEST_FIX_TIME
from sigueme.trackers import osmand, owntracks
from sigueme.trackers.fields import TrackerError, TrackerFix

NOW = time.time()
DEVICE = "48241179"
OSMAND_KEYS = (
    "id",
    "deviceid",
    "lat",
    "lon",
    "location",
    "timestamp",
    "speed",
    "bearing",
    "heading",
    "accuracy",
    "batt",
    "alarm",
    "altitude",
)
PARAM_VALUES = st.one_of(
    WEIRD_TEXT,
    BAD_NUMBERS.map(str),
    DECADES_AWAY.map(str),
    st.sampled_from(["18.92", "-99.23", "18.92,-99.23", "0", "nan", "inf", "-inf", "1e400", ""]),
)
GOOD_PARAMS = [("id", DEVICE), ("lat", "18.92"), ("lon", "-99.23"), ("timestamp", str(int(NOW)))]
PARAMS = st.tuples(
    st.lists(st.sampled_from(GOOD_PARAMS), max_size=4),
    st.lists(st.tuples(st.sampled_from(OSMAND_KEYS), PARAM_VALUES), max_size=4),
).map(lambda parts: [*parts[0], *parts[1]])
"""Some of a good request's parameters, then (a later one wins) anything."""
GOOD_LOCATION = {
    "timestamp": "2026-05-28T14:00:05Z",
    "coords": {"latitude": 18.92, "longitude": -99.23, "accuracy": 8, "speed": 3, "heading": 90},
    "battery": {"level": 0.8},
}
JSON_BODIES = st.one_of(
    JSON,
    poisoned(
        {"device_id": DEVICE, "location": GOOD_LOCATION},
        {
            "device_id": st.one_of(WEIRD_TEXT, st.just("x" * 101)),
            "location": st.one_of(
                poisoned(
                    GOOD_LOCATION,
                    {
                        "timestamp": DECADES_AWAY,
                        "coords": st.fixed_dictionaries(
                            {"latitude": BAD_NUMBERS, "longitude": BAD_NUMBERS}
                        ),
                        "battery": st.fixed_dictionaries({"level": BAD_NUMBERS}),
                    },
                ),
                st.builds(lambda n: [GOOD_LOCATION] * n, st.integers(501, 520)),
                st.just([]),
            ),
        },
    ),
)
OSMAND_REQUESTS = st.one_of(
    # (query, body, content type)
    st.tuples(PARAMS.map(urlencode), st.just(b""), st.none()),
    # raw query strings, as a client could put them on the wire (percent-encoded)
    st.tuples(
        st.text(max_size=100).map(lambda q: quote(q, safe="=&;,+%")),
        st.binary(max_size=100),
        st.none(),
    ),
    st.tuples(
        st.just(""),
        PARAMS.map(lambda p: urlencode(p).encode()),
        st.just("application/x-www-form-urlencoded"),
    ),
    st.tuples(
        st.just(""),
        JSON_BODIES.map(lambda d: dumps(d).encode()),
        st.sampled_from(["application/json", None, "text/plain", "application/geo+json"]),
    ),
    st.tuples(st.just(""), st.binary(max_size=200), st.sampled_from(["application/json", None])),
)
GOOD_OWNTRACKS = {"_type": "location", "lat": 18.92, "lon": -99.23, "tst": int(NOW), "acc": 8}
OWNTRACKS_BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda d: dumps(d).encode()),
    poisoned(
        GOOD_OWNTRACKS,
        {
            "_type": st.one_of(WEIRD_TEXT, st.sampled_from(["encrypted", "transition"])),
            "lat": BAD_NUMBERS,
            "lon": BAD_NUMBERS,
            "tst": DECADES_AWAY,
            "acc": BAD_NUMBERS,
            "vel": BAD_NUMBERS,
            "cog": BAD_NUMBERS,
            "batt": BAD_NUMBERS,
        },
    ).map(lambda d: dumps(d).encode()),
)


def _check_fix(fix: TrackerFix) -> None:
    assert EARLIEST_FIX_TIME <= fix.t <= LATEST_FIX_TIME
    assert -90 <= fix.lat <= 90
    assert -180 <= fix.lon <= 180
    assert (fix.lat, fix.lon) != (0, 0)
    assert fix.battery is None or 0 <= fix.battery <= 100


def _osmand(request: tuple[str, bytes, str | None]) -> osmand.OsmAndReport | TrackerError:
    query, body, content_type = request
    try:
        return osmand.parse_request(query, body, content_type, now=NOW)
    except TrackerError as exc:
        return exc


def _owntracks(body: bytes) -> TrackerFix | TrackerError | None:
    try:
        return owntracks.parse_body(body)
    except TrackerError as exc:
        return exc


def _identifier(user: str | None, device: str) -> str | TrackerError:
    try:
        return owntracks.device_identifier(user, device)
    except TrackerError as exc:
        return exc


def test_the_osmand_parser_answers_a_report_or_a_tracker_error() -> None:
    seen: Counter[str] = Counter()

    @examples(500)
    @given(request=OSMAND_REQUESTS)
    def run(request: tuple[str, bytes, str | None]) -> None:
        report = _osmand(request)
        if isinstance(report, TrackerError):
            seen["refused"] += 1
            assert report.field
            assert report.reason
            return
        seen["accepted"] += 1
        assert 1 <= len(report.fixes) <= osmand.MAX_FIXES
        for fix in report.fixes:
            _check_fix(fix)

    run()
    print(f"\n[fuzz] osmand (parser): {sum(seen.values())} cases, {dict(seen)}")
    assert seen["refused"] > seen["accepted"] > 0


def test_the_owntracks_parser_answers_a_fix_or_a_tracker_error() -> None:
    seen: Counter[str] = Counter()

    @examples(400)
    @given(body=OWNTRACKS_BODIES, user=st.one_of(st.none(), WEIRD_TEXT), device=WEIRD_TEXT)
    def run(body: bytes, user: str | None, device: str) -> None:
        ident = _identifier(user, device)
        assert not isinstance(ident, TrackerError) or ident.reason
        fix = _owntracks(body)
        if isinstance(fix, TrackerError):
            seen["refused"] += 1
            assert fix.field
            assert fix.reason
        elif fix is None:
            seen["ignored"] += 1
        else:
            seen["accepted"] += 1
            _check_fix(fix)

    run()
    print(f"\n[fuzz] owntracks (parser): {sum(seen.values())} cases, {dict(seen)}")
    assert seen["refused"] > seen["accepted"] > 0


async def _register(fuzzed: Fuzzed, protocol: str, device_id: str) -> str:
    r = await fuzzed.client.post(
        "/v1/devices",
        json={"protocol": protocol, "device_id": device_id, "trip_id": fuzzed.trip_id},
        headers=fuzzed.people["ana"].headers,
    )
    assert r.status_code == 201, r.text
    secret: str = r.json()["secret"]
    return secret


def _basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


async def test_junk_to_the_tracker_endpoints_is_refused_and_stores_nothing(
    fuzzed: Fuzzed,
) -> None:
    osmand_secret = await _register(fuzzed, "osmand", DEVICE)
    owntracks_secret = await _register(fuzzed, "owntracks", "ana/pixel")
    osmand_junk: list[tuple[str, bytes, str | None]] = []
    owntracks_junk: list[bytes] = []

    @examples(80)
    @given(request=OSMAND_REQUESTS.filter(lambda r: isinstance(_osmand(r), TrackerError)))
    def collect_osmand(request: tuple[str, bytes, str | None]) -> None:
        osmand_junk.append(request)

    @examples(60)
    @given(body=OWNTRACKS_BODIES.filter(lambda b: isinstance(_owntracks(b), TrackerError)))
    def collect_owntracks(body: bytes) -> None:
        owntracks_junk.append(body)

    collect_osmand()
    collect_owntracks()
    before = await fingerprint(fuzzed.engine)
    statuses: Counter[int] = Counter()
    client = fuzzed.client
    for query, body, content_type in osmand_junk:
        headers = {"content-type": content_type} if content_type else {}
        url = f"/osmand/{osmand_secret}" + (f"?{query}" if query else "")
        r = await (client.post(url, content=body, headers=headers) if body else client.get(url))
        statuses[r.status_code] += 1
        assert r.status_code == 400, (query, body, r.status_code, r.text)
        detail = r.json()["detail"]  # the field and why; or, for a NUL, the reason alone
        assert detail[0]["msg"] if isinstance(detail, list) else "NUL" in detail
    owntracks_auth = _basic("ana", owntracks_secret) | {"X-Limit-D": "pixel"}
    for body in owntracks_junk:
        r = await client.post("/owntracks", content=body, headers=owntracks_auth)
        statuses[r.status_code] += 1
        assert r.status_code == 400, (body, r.status_code, r.text)
    # A fix that reads well, with a wrong secret or from an unknown device: 401 alike.
    good = urlencode({"id": DEVICE, "lat": 18.92, "lon": -99.23, "timestamp": int(NOW)})
    for url in (
        f"/osmand/sgd_wrong?{good}",
        f"/osmand/{osmand_secret}?{good.replace(DEVICE, '9')}",
    ):
        r = await client.get(url)
        statuses[r.status_code] += 1
        assert r.status_code == 401, r.text
    for headers in (_basic("ana", "sgd_wrong") | {"X-Limit-D": "pixel"}, {}):
        r = await client.post("/owntracks", content=dumps(GOOD_OWNTRACKS), headers=headers)
        statuses[r.status_code] += 1
        assert r.status_code == 401, r.text
    # Bigger than a tracker request may be: 413, before it is read.
    r = await client.post(f"/osmand/{osmand_secret}", content=b"x" * (512 * 1024 + 1))
    statuses[r.status_code] += 1
    assert r.status_code == 413
    after = await fingerprint(fuzzed.engine)
    assert not changed(before, after)
    print(
        f"\n[fuzz] trackers (HTTP): {sum(statuses.values())} refused requests "
        f"({len(osmand_junk)} OsmAnd, {len(owntracks_junk)} OwnTracks), {dict(statuses)}"
    )
    assert len(osmand_junk) >= 60
    assert len(owntracks_junk) >= 40


@pytest.mark.parametrize(
    "body",
    [
        {"device_id": DEVICE, "location": {**GOOD_LOCATION, "coords": {"latitude": 91}}},
        {"device_id": DEVICE, "location": [GOOD_LOCATION] * (osmand.MAX_FIXES + 1)},
    ],
)
def test_osmand_json_refusals_name_the_field(body: dict[str, Any]) -> None:
    with pytest.raises(TrackerError) as refused:
        osmand.parse_request("", dumps(body).encode(), "application/json", now=NOW)
    assert refused.value.field.startswith("location")
