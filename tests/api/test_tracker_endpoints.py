"""Tracker apps end to end: requests as Traccar Client and OwnTracks send them, through
the path of a fix, into the trip's track; resends stored once; refusals."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from tracker_world import Api, tracker_api
from trip_world import ROUTE

from sigueme.api.ratelimit import RateLimiter
from sigueme.trackers.fields import KNOT_MPS

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest_asyncio.fixture(loop_scope="session")
async def api(database_url: str) -> AsyncIterator[Api]:
    async with tracker_api(database_url) as api:
        yield api


def _recent(minutes_ago: float) -> int:
    """An epoch second a little in the past (the filter flags fixes from the future)."""
    return int(time.time() - minutes_ago * 60)


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def _epoch(iso: str) -> float:
    """A track's ``t`` as epoch seconds."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _osmand_device(api: Api) -> tuple[dict[str, str], str, str, str]:
    """Ana's trip with a Traccar Client bound to it: (ana's headers, trip, device, the
    path of the server URL)."""
    ana = await api.user("ana")
    trip_id = await api.file_trip(ana)
    device = await api.register(ana, protocol="osmand", device_id="48241179", trip_id=trip_id)
    path = device["app"]["settings"]["Server URL"].split("://", 1)[1].split("/", 1)[1]
    return ana, trip_id, "48241179", "/" + path


# -- OsmAnd / Traccar Client ---------------------------------------------------------------------


async def test_query_string_get_lands_in_the_track(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    lon, lat = ROUTE[0]
    t = _recent(2)
    query = urlencode(
        {
            "id": ident,
            "timestamp": t,
            "lat": lat,
            "lon": lon,
            "speed": "10.0",
            "bearing": "120.0",
            "altitude": "1510",
            "accuracy": "6.0",
            "batt": "87",
        }
    )

    response = await api.client.get(f"{path}?{query}")

    assert response.status_code == 200, response.text
    assert response.content == b""
    (fix,) = await api.track(ana, trip_id)
    assert fix["geometry"]["coordinates"] == [lon, lat]
    props = fix["properties"]
    assert _epoch(props["t"]) == t
    assert props["speed"] == pytest.approx(10.0 * KNOT_MPS)
    assert (props["accuracy"], props["battery"]) == (6.0, 87.0)
    assert props["verdict"] is not None


async def test_form_post_as_traccar_client_sends_it(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    lon, lat = ROUTE[1]
    body = urlencode(
        {
            "id": ident,
            "lat": lat,
            "lon": lon,
            "timestamp": _recent(1),
            "accuracy": 5.0,
            "altitude": 1500.0,
            "speed": 0.0,
            "bearing": 0.0,
            "batt": 64.0,
            "charge": "false",
        }
    )
    response = await api.client.post(path, content=body, headers=FORM)
    assert response.status_code == 200, response.text
    (fix,) = await api.track(ana, trip_id)
    assert fix["geometry"]["coordinates"] == [lon, lat]
    assert fix["properties"]["battery"] == 64.0


async def test_json_post_as_traccar_client_9_sends_it(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    lon, lat = ROUTE[2]
    t = _recent(1) + 0.862
    doc = {
        "location": {
            "timestamp": _iso(t),
            "coords": {
                "latitude": lat,
                "longitude": lon,
                "accuracy": 5,
                "speed": 4.2,
                "heading": -1,
                "altitude": 5,
            },
            "is_moving": True,
            "odometer": 1200,
            "event": "motionchange",
            "battery": {"level": 0.5, "is_charging": False},
            "activity": {"type": "in_vehicle"},
            "extras": {},
        },
        "device_id": ident,
    }
    response = await api.client.post(path, json=doc)
    assert response.status_code == 200, response.text
    (fix,) = await api.track(ana, trip_id)
    assert fix["geometry"]["coordinates"] == [lon, lat]
    assert (fix["properties"]["speed"], fix["properties"]["battery"]) == (4.2, 50.0)
    assert _epoch(fix["properties"]["t"]) == pytest.approx(t, abs=1e-6)


async def test_a_resend_is_stored_once(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    lon, lat = ROUTE[0]
    t = _recent(3)
    first = {"id": ident, "lat": lat, "lon": lon, "timestamp": t}
    assert (await api.client.get(path, params=first)).status_code == 200
    # The app did not hear the answer and sends the same fix again, this time as a form
    # with the time in milliseconds.
    again = urlencode({**first, "timestamp": t * 1000})
    assert (await api.client.post(path, content=again, headers=FORM)).status_code == 200
    later = {**first, "timestamp": t + 30, "lat": ROUTE[1][1], "lon": ROUTE[1][0]}
    assert (await api.client.get(path, params=later)).status_code == 200
    fixes = await api.track(ana, trip_id)
    assert [f["geometry"]["coordinates"] for f in fixes] == [[lon, lat], ROUTE[1]]


async def test_a_trailing_slash_works_too(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    params = {"id": ident, "lat": ROUTE[0][1], "lon": ROUTE[0][0], "timestamp": _recent(1)}
    assert (await api.client.get(path + "/", params=params)).status_code == 200
    assert len(await api.track(ana, trip_id)) == 1


async def test_sos_stores_the_fix_and_raises_the_sos_alert_there(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    params = {
        "id": ident,
        "lat": ROUTE[1][1],
        "lon": ROUTE[1][0],
        "timestamp": _recent(1),
        "alarm": "sos",
        "batt": "23",
    }
    response = await api.client.post(path, content=urlencode(params), headers=FORM)
    assert response.status_code == 200
    assert len(await api.track(ana, trip_id)) == 1
    # Committed before the answer: the dispatchers' queue has it already.
    police = await api.user("despacho", "dispatcher")
    queue = (await api.client.get("/v1/alerts?kind=sos", headers=police)).json()["alerts"]
    assert [(a["kind"], a["severity"], a["trip"]["id"]) for a in queue] == [("sos", 4, trip_id)]
    assert queue[0]["position"]["coordinates"] == ROUTE[1]
    assert queue[0]["battery"] == 23
    assert queue[0]["details"]["source"] == "osmand"
    # Pressed again: the same live alert, counted.
    params["timestamp"] = _recent(2)
    assert (await api.client.post(path, content=urlencode(params), headers=FORM)).status_code == 200
    queue = (await api.client.get("/v1/alerts?kind=sos", headers=police)).json()["alerts"]
    assert [(a["kind"], a["count"]) for a in queue] == [("sos", 2)]


async def test_unknown_devices_and_wrong_secrets_are_refused(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    fix = {"lat": ROUTE[0][1], "lon": ROUTE[0][0], "timestamp": _recent(1)}
    secret = path.rsplit("/", 1)[1]

    unknown = await api.client.get(path, params={**fix, "id": "999"})
    wrong = await api.client.get("/osmand/sgd_not-the-secret", params={**fix, "id": ident})
    for response in (unknown, wrong):
        assert response.status_code == 401
        assert response.json() == {"detail": "unknown device or wrong secret"}
    assert secret not in unknown.text
    assert await api.track(ana, trip_id) == []


async def test_a_revoked_or_rotated_secret_stops_working(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    (device,) = (await api.client.get("/v1/devices", headers=ana)).json()["devices"]
    fix = {"id": ident, "lat": ROUTE[0][1], "lon": ROUTE[0][0], "timestamp": _recent(2)}

    rotated = (await api.client.post(f"/v1/devices/{device['id']}/rotate", headers=ana)).json()
    assert (await api.client.get(path, params=fix)).status_code == 401
    new_path = "/osmand/" + rotated["secret"]
    assert (await api.client.get(new_path, params=fix)).status_code == 200

    assert (await api.client.delete(f"/v1/devices/{device['id']}", headers=ana)).status_code == 200
    later = {**fix, "timestamp": _recent(1)}
    assert (await api.client.get(new_path, params=later)).status_code == 401
    assert len(await api.track(ana, trip_id)) == 1


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"lat": "18.9"}, ["lon"]),
        ({"lat": "NaN", "lon": "-99.2"}, ["lat"]),
        ({"lat": "18.9", "lon": "-99.2", "timestamp": "ayer"}, ["timestamp"]),
        ({"lat": "18.9", "lon": "-99.2", "speed": "rápido"}, ["speed"]),
    ],
)
async def test_unreadable_requests_get_400_naming_the_field(
    api: Api, params: dict[str, str], loc: list[str]
) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    response = await api.client.get(path, params={"id": ident, **params})
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == loc
    assert await api.track(ana, trip_id) == []


async def test_garbage_bodies_get_400(api: Api) -> None:
    _, _, _, path = await _osmand_device(api)
    for body, content_type in (
        (b"{not json", "application/json"),
        (b"\x00\x01\x02\xff", "application/octet-stream"),
        (b'{"device_id": "48241179", "location": {"coords": {"latitude": NaN}}}', None),
    ):
        headers = {"Content-Type": content_type} if content_type else {}
        response = await api.client.post(path, content=body, headers=headers)
        assert response.status_code == 400, body


async def test_a_finished_trip_takes_no_more_fixes(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    assert (await api.client.post(f"/v1/trips/{trip_id}/finish", headers=ana)).status_code == 200
    params = {"id": ident, "lat": ROUTE[0][1], "lon": ROUTE[0][0], "timestamp": _recent(1)}
    response = await api.client.get(path, params=params)
    assert response.status_code == 409
    assert "ended" in response.json()["detail"]


async def test_a_device_that_floods_is_slowed_down(api: Api) -> None:
    ana, trip_id, ident, path = await _osmand_device(api)
    api.app.state.tracker_limiter = RateLimiter(rate=0.01, burst=2)
    t = _recent(5)
    answers = []
    for i in range(3):
        params = {"id": ident, "lat": ROUTE[0][1], "lon": ROUTE[0][0], "timestamp": t + i}
        answers.append(await api.client.get(path, params=params))
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert len(await api.track(ana, trip_id)) == 2
    # Another device is not slowed down by the first.
    beto = await api.user("beto")
    other_trip = await api.file_trip(beto)
    other = await api.register(beto, protocol="osmand", device_id="b", trip_id=other_trip)
    params = {"id": "b", "lat": ROUTE[0][1], "lon": ROUTE[0][0], "timestamp": t}
    assert (await api.client.get(f"/osmand/{other['secret']}", params=params)).status_code == 200


# -- OwnTracks ------------------------------------------------------------------------------------


async def _owntracks_device(api: Api) -> tuple[dict[str, str], str, str]:
    ana = await api.user("ana")
    trip_id = await api.file_trip(ana)
    device = await api.register(ana, protocol="owntracks", device_id="ana/pixel", for_me=True)
    return ana, trip_id, device["secret"]


def _location(minutes_ago: float, i: int = 0) -> dict[str, Any]:
    lon, lat = ROUTE[i]
    return {
        "_type": "location",
        "tst": _recent(minutes_ago),
        "acc": 10,
        "alt": 1510,
        "lon": lon,
        "vac": 6,
        "vel": 36,
        "lat": lat,
        "cog": 82,
        "tid": "AP",
        "batt": 77,
        "bs": 1,
        "t": "u",
        "conn": "m",
    }


async def test_owntracks_location_with_basic_auth_lands_in_the_track(api: Api) -> None:
    ana, trip_id, secret = await _owntracks_device(api)
    message = _location(2)

    response = await api.client.post(
        "/owntracks",
        content=json.dumps(message),
        headers={
            **_basic("ana", secret),
            "Content-Type": "application/json",
            "X-Limit-U": "ana",
            "X-Limit-D": "pixel",
        },
    )

    assert response.status_code == 200, response.text
    assert response.json() == []
    (fix,) = await api.track(ana, trip_id)
    assert fix["geometry"]["coordinates"] == [message["lon"], message["lat"]]
    props = fix["properties"]
    assert props["speed"] == pytest.approx(10.0)  # 36 km/h
    assert (props["accuracy"], props["battery"]) == (10.0, 77.0)
    assert _epoch(props["t"]) == message["tst"]


async def test_owntracks_resend_is_stored_once_and_query_names_work(api: Api) -> None:
    ana, trip_id, secret = await _owntracks_device(api)
    message = _location(2)
    for _ in range(2):
        response = await api.client.post(
            "/owntracks?u=ana&d=pixel", json=message, headers=_basic("ana", secret)
        )
        assert response.status_code == 200
    assert len(await api.track(ana, trip_id)) == 1


async def test_owntracks_other_messages_are_acknowledged_and_ignored(api: Api) -> None:
    ana, trip_id, secret = await _owntracks_device(api)
    headers = {**_basic("ana", secret), "X-Limit-U": "ana", "X-Limit-D": "pixel"}
    for message in (
        {"_type": "lwt", "tst": _recent(1)},
        {"_type": "transition", "event": "enter", "desc": "Casa", "tst": _recent(1)},
        {"_type": "waypoints", "waypoints": []},
    ):
        response = await api.client.post("/owntracks", json=message, headers=headers)
        assert response.status_code == 200
        assert response.json() == []
    assert await api.track(ana, trip_id) == []


async def test_owntracks_refusals(api: Api) -> None:
    ana, trip_id, secret = await _owntracks_device(api)
    names = {"X-Limit-U": "ana", "X-Limit-D": "pixel"}
    message = _location(1)

    no_auth = await api.client.post("/owntracks", json=message, headers=names)
    assert no_auth.status_code == 401
    assert no_auth.headers["WWW-Authenticate"].startswith("Basic")

    wrong = await api.client.post(
        "/owntracks", json=message, headers={**names, **_basic("ana", "sgd_wrong")}
    )
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic")

    other_device = await api.client.post(
        "/owntracks",
        json=message,
        headers={**_basic("ana", secret), "X-Limit-U": "ana", "X-Limit-D": "tablet"},
    )
    assert other_device.status_code == 401

    bad = await api.client.post(
        "/owntracks", json={**message, "lat": 95}, headers={**names, **_basic("ana", secret)}
    )
    assert bad.status_code == 400
    assert bad.json()["detail"][0]["loc"] == ["lat"]

    encrypted = await api.client.post(
        "/owntracks",
        json={"_type": "encrypted", "data": "xyz"},
        headers={**names, **_basic("ana", secret)},
    )
    assert encrypted.status_code == 400
    assert "encryption key" in encrypted.json()["detail"][0]["msg"]
    assert await api.track(ana, trip_id) == []


async def test_a_travellers_device_without_an_active_trip_is_refused_with_a_reason(
    api: Api,
) -> None:
    ana, trip_id, secret = await _owntracks_device(api)
    assert (await api.client.post(f"/v1/trips/{trip_id}/cancel", headers=ana)).status_code == 200
    headers = {**_basic("ana", secret), "X-Limit-U": "ana", "X-Limit-D": "pixel"}

    response = await api.client.post("/owntracks", json=_location(1), headers=headers)
    assert response.status_code == 409
    assert "no active trip" in response.json()["detail"]
    # Messages that carry no fix are still acknowledged.
    lwt = await api.client.post("/owntracks", json={"_type": "lwt"}, headers=headers)
    assert lwt.status_code == 200

    # A new trip: the same device feeds it, no change in the app.
    new_trip = await api.file_trip(ana)
    assert (
        await api.client.post("/owntracks", json=_location(1), headers=headers)
    ).status_code == 200
    assert len(await api.track(ana, new_trip)) == 1
