"""The trip API: filing (GeoJSON and polyline), validation that names the field,
reading, listing, the track, finishing and cancelling; shares and links."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import shapely
from sqlalchemy import func, select
from trip_world import (
    DEPARTURE,
    PUBLIC_URL,
    ROUTE,
    ROUTE_POLYLINE,
    ROUTE_POLYLINE6,
    add_fixes,
    auth,
    running_app,
    trip_body,
)

from sigueme.api.schemas import Track, TripOut
from sigueme.store.models import Trip
from sigueme.store.users import add_user, disable_user


class Api:
    """A running app, its client, and tokens of a few users."""

    def __init__(self, client: httpx.AsyncClient, app: Any) -> None:
        self.client = client
        self.app = app
        self.tokens: dict[str, str] = {}

    async def user(self, name: str, role: str = "traveller") -> dict[str, str]:
        async with self.app.state.sessions() as session:
            _, token = await add_user(session, name, role)
            await session.commit()
        self.tokens[name] = token
        return auth(token)

    async def file(self, headers: dict[str, str], **changes: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/trips", json=trip_body(**changes), headers=headers)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def trips_in_db(self) -> int:
        async with self.app.state.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Trip)) or 0)


@pytest_asyncio.fixture(loop_scope="session")
async def api(database_url: str) -> AsyncIterator[Api]:
    async with running_app(database_url) as (client, app):
        yield Api(client, app)


# -- filing ----------------------------------------------------------------------------


async def test_file_a_trip_from_geojson(api: Api) -> None:
    ana = await api.user("ana")

    response = await api.client.post("/v1/trips", json=trip_body(), headers=ana)

    assert response.status_code == 201, response.text
    trip = response.json()
    TripOut.model_validate(trip)
    assert response.headers["Location"] == f"/v1/trips/{trip['id']}"
    assert trip["owner"] == "ana"
    assert trip["label"] == "Mitin en Jiutepec 🎤"
    assert (trip["status"], trip["route_status"]) == ("active", "pending")
    assert trip["plan"]["departure"] == "2026-05-28T14:00:00Z"
    assert trip["plan"]["arrival"] == "2026-05-28T14:30:00Z"
    assert trip["plan"]["duration_min"] == 30
    assert trip["plan"]["corridor_m"] == 150
    assert trip["plan"]["route_length_m"] == pytest.approx(3115.1, abs=0.1)
    assert trip["route"]["type"] == "LineString"
    assert trip["route"]["coordinates"][0] == ROUTE[0]
    assert trip["route"]["coordinates"][-1] == ROUTE[-1]
    # The corridor holds the route and reaches about 150 m out from it (1° lat ≈ 110.6 km).
    corridor = shapely.geometry.shape(trip["corridor"])
    assert trip["corridor"]["type"] == "Polygon"
    assert corridor.contains(shapely.LineString(ROUTE))
    assert corridor.bounds[3] - ROUTE[0][1] == pytest.approx(150 / 110_600, rel=0.02)
    assert trip["last_fix"] is None
    assert trip["progress"] is None
    assert trip["links"]["track"] == f"/v1/trips/{trip['id']}/track"


@pytest.mark.parametrize(
    ("route", "length"),
    [
        ({"polyline": ROUTE_POLYLINE}, 3115.1),
        ({"polyline": ROUTE_POLYLINE, "precision": 5}, 3115.1),
        ({"polyline": ROUTE_POLYLINE6, "precision": 6}, 3115.1),
    ],
)
async def test_file_a_trip_from_an_encoded_polyline(
    api: Api, route: dict[str, Any], length: float
) -> None:
    ana = await api.user("ana")

    trip = await api.file(ana, route=route)

    assert trip["plan"]["route_length_m"] == pytest.approx(length, abs=0.5)
    assert trip["route"]["coordinates"][0] == pytest.approx(ROUTE[0])


async def test_file_with_arrival_stops_thresholds(api: Api) -> None:
    ana = await api.user("ana")
    body = trip_body(
        duration_min=None,
        arrival="2026-05-28T09:10:00-06:00",
        corridor_m=300,
        destination_radius_m=60,
        stops=[{"lon": -99.2280, "lat": 18.9150, "radius_m": 80, "dwell_min": 20, "label": "Café"}],
        thresholds={"off_route_fixes": 6, "stop_seconds": 180.5},
    )

    response = await api.client.post("/v1/trips", json=body, headers=ana)

    assert response.status_code == 201, response.text
    plan = response.json()["plan"]
    assert plan["arrival"] == "2026-05-28T15:10:00Z"
    assert plan["duration_min"] == 70
    assert (plan["corridor_m"], plan["destination_radius_m"]) == (300, 60)
    assert plan["stops"] == [
        {"lon": -99.228, "lat": 18.915, "radius_m": 80, "dwell_min": 20, "label": "Café"}
    ]
    assert plan["thresholds"] == {"off_route_fixes": 6, "stop_seconds": 180.5}


async def test_an_admin_files_on_their_own_behalf(api: Api) -> None:
    root = await api.user("root", "admin")

    trip = await api.file(root)

    assert trip["owner"] == "root"


def _far_route(km: float) -> list[list[float]]:
    """A route north from Cuernavaca, ``km`` long (1° of latitude ≈ 110.6 km)."""
    return [[-99.23, 18.9], [-99.23, 18.9 + km / 110.6]]


def _line(coordinates: Any, **extra: Any) -> dict[str, Any]:
    return {"route": {"type": "LineString", "coordinates": coordinates, **extra}}


GEOJSON = ["route", "LineString"]  # where the schema's own errors point in a GeoJSON route
SOON = "2026-05-28T07:00:00-06:00"
STOP = {"lon": -99.228, "lat": 18.915}

VALIDATION = [
    # (changes to a valid body, the loc that must be named, a piece of the reason)
    ({"route": {"type": "Point", "coordinates": [-99.2, 18.9]}}, [*GEOJSON, "type"], "LineString"),
    (_line([[-99.2, 18.9]]), [*GEOJSON, "coordinates"], "at least 2"),
    (_line([[-99.2, "x"], [-99.3, 18.9]]), [*GEOJSON, "coordinates", 0, 1], "number"),
    (_line([[200, 18.9], [-99.2, 18.9]]), ["route", "coordinates", 0], "outside [-180, 180]"),
    (_line([[-99.2, 95], [-99.2, 18.9]]), ["route", "coordinates", 0], "outside [-90, 90]"),
    (_line([[-99.2, 18.9]] * 20_001), [*GEOJSON, "coordinates"], "at most 20000"),
    (_line(_far_route(520)), ["route", "coordinates"], "at most 500 km"),
    (_line([[-99.2, 18.9], [-99.2, 18.9]]), ["route", "coordinates"], "two distinct points"),
    (_line([[-99.2, 18.9], [-99.2, 18.90001]]), ["route", "coordinates"], "at least 10 m"),
    (_line(ROUTE, colour="red"), [*GEOJSON, "colour"], "not permitted"),
    ({"route": {"polyline": "!!"}}, ["route", "polyline"], "characters"),
    ({"route": {"polyline": "_p~iF"}}, ["route", "polyline"], "cannot be decoded"),
    ({"route": {"polyline": "_p~iF", "precision": 7}}, ["route", "polyline", "precision"], "5 or"),
    ({"corridor_m": 10}, ["corridor_m"], "greater than or equal to 20"),
    ({"corridor_m": 5001}, ["corridor_m"], "less than or equal to 5000"),
    ({"departure": "2026-05-28T08:00:00"}, ["departure"], "timezone"),
    ({"departure": "1999-05-28T08:00:00Z"}, ["departure"], "2000 and 2100"),
    ({"duration_min": None, "arrival": SOON}, ["arrival"], "after the departure"),
    ({"duration_min": None}, ["arrival"], "give the expected arrival"),
    ({"arrival": "2026-05-28T09:00:00-06:00"}, ["duration_min"], "not both"),
    ({"duration_min": 0}, ["duration_min"], "greater than 0"),
    ({"duration_min": 8 * 24 * 60}, ["duration_min"], "less than or equal"),
    ({"destination_radius_m": 5}, ["destination_radius_m"], "greater than or equal to 10"),
    ({"stops": [{**STOP, "radius_m": 5}]}, ["stops", 0, "radius_m"], "greater than or equal"),
    ({"stops": [STOP, {"lon": -98.0, "lat": 18.9}]}, ["stops", 1], "20 km"),
    ({"stops": [{**STOP, "dwell_min": 29}]}, ["stops"], "all of the trip's time"),
    ({"stops": [STOP] * 51}, ["stops"], "at most 50"),
    ({"thresholds": {"nope": 3}}, ["thresholds", "nope"], "is not a threshold"),
    ({"thresholds": {"off_route_fixes": 0}}, ["thresholds", "off_route_fixes"], "between 1 and 50"),
    ({"thresholds": {"off_route_fixes": 2.5}}, ["thresholds", "off_route_fixes"], "whole number"),
    ({"thresholds": {"off_route_fixes": True}}, ["thresholds", "off_route_fixes"], "valid"),
    ({"label": "x" * 201}, ["label"], "at most 200 characters"),
    ({"colour": "red"}, ["colour"], "not permitted"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "loc", "reason"), VALIDATION, ids=[".".join(map(str, v[1])) for v in VALIDATION]
)
async def test_refused_input_names_the_field_and_the_reason(
    api: Api, changes: dict[str, Any], loc: list[str | int], reason: str
) -> None:
    ana = await api.user("ana")

    response = await api.client.post("/v1/trips", json=trip_body(**changes), headers=ana)

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][: len(loc) + 1] == ["body", *loc] for e in errors), errors
    assert any(reason in e["msg"] for e in errors), errors
    assert await api.trips_in_db() == 0


_LINE = '{"type": "LineString", "coordinates": [[-99.2, 18.9], [-99.3, 18.8]]}'


@pytest.mark.parametrize(
    ("route", "corridor", "loc"),
    [
        (_LINE.replace("18.9]", "NaN]"), "150", ["route", "LineString", "coordinates", 0, 1]),
        (_LINE.replace("-99.2", "Infinity"), "150", ["route", "LineString", "coordinates", 0, 0]),
        (_LINE, "-Infinity", ["corridor_m"]),
    ],
)
async def test_nan_and_infinity_are_refused_by_the_schema(
    api: Api, route: str, corridor: str, loc: list[str | int]
) -> None:
    ana = await api.user("ana")
    # Python's JSON parser reads NaN and Infinity, so a client can send them.
    body = (
        f'{{"route": {route}, "corridor_m": {corridor}, '
        f'"departure": "{DEPARTURE}", "duration_min": 30}}'
    )

    response = await api.client.post(
        "/v1/trips", content=body, headers={**ana, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == ["body", *loc] and "finite" in e["msg"] for e in errors), errors
    assert await api.trips_in_db() == 0


# -- reading ---------------------------------------------------------------------------


async def _with_fixes(api: Api, trip_id: str) -> None:
    async with api.app.state.sessions() as session:
        trip = await session.get(Trip, trip_id)
        assert trip is not None
        await add_fixes(session, trip)
        await session.commit()


async def test_read_a_trip_with_its_last_position(api: Api) -> None:
    ana = await api.user("ana")
    filed = await api.file(ana)
    await _with_fixes(api, filed["id"])

    response = await api.client.get(f"/v1/trips/{filed['id']}", headers=ana)

    assert response.status_code == 200, response.text
    trip = response.json()
    assert trip["route_status"] == "on_route"
    assert trip["last_fix"] == {
        "t": "2026-05-28T14:02:00Z",
        "position": {"type": "Point", "coordinates": ROUTE[2]},
        "accuracy_m": 8.0,
        "battery": 78.0,
        "off_route_m": 4.0,
    }
    assert trip["progress"]["m"] == 1600.0
    assert trip["progress"]["percent"] == pytest.approx(100 * 1600 / 3115.13, abs=0.01)
    assert trip["progress"]["remaining_m"] == pytest.approx(3115.13 - 1600, abs=0.01)
    assert trip["predicted_arrival"] == "2026-05-28T14:33:00Z"
    assert trip["delay_s"] == 180.0
    assert trip["plan"] == filed["plan"]
    assert trip["route"] == filed["route"]


async def test_an_unknown_trip_is_not_found(api: Api) -> None:
    ana = await api.user("ana")

    response = await api.client.get("/v1/trips/no-such-trip", headers=ana)

    assert (response.status_code, response.json()) == (404, {"detail": "no such trip"})


async def test_list_scopes_status_and_bbox(api: Api) -> None:
    ana, beto = await api.user("ana"), await api.user("beto")
    root = await api.user("root", "admin")
    first = await api.file(ana, label="uno")
    second = await api.file(ana, label="dos")
    far = [[-106.09, 28.63], [-106.07, 28.64]]  # Chihuahua
    third = await api.file(beto, label="tres", route={"type": "LineString", "coordinates": far})
    await api.client.post(f"/v1/trips/{first['id']}/finish", headers=ana)

    async def labels(headers: dict[str, str], query: str = "") -> list[str]:
        response = await api.client.get(f"/v1/trips{query}", headers=headers)
        assert response.status_code == 200, response.text
        return [t["label"] for t in response.json()["trips"]]

    assert await labels(ana) == ["dos", "uno"]  # newest first
    assert await labels(ana, "?status=active") == ["dos"]
    assert await labels(ana, "?limit=1") == ["dos"]
    assert await labels(root) == ["tres", "dos"]  # admins: active trips
    assert await labels(root, "?scope=active&bbox=-99.3,18.8,-99.1,19.0") == ["dos"]
    assert await labels(root, "?scope=active&bbox=-106.2,28.5,-106.0,28.7") == ["tres"]
    assert await labels(root, "?bbox=-90,10,-89,11") == []
    # The bbox filter overlaps: a box touching only the corridor's edge still finds it.
    edge = second["corridor"]["coordinates"][0]
    west = min(lon for lon, _ in edge)
    assert await labels(root, f"?bbox={west - 1},18,{west + 1e-9},20") == ["dos"]
    summary = (await api.client.get("/v1/trips", headers=beto)).json()
    assert summary["scope"] == "mine"
    assert summary["trips"][0]["id"] == third["id"]
    assert summary["trips"][0]["bbox"][0] == pytest.approx(-106.09, abs=0.01)


@pytest.mark.parametrize(
    "bbox",
    ["1,2,3", "a,b,c,d", "10,0,-10,1", "0,10,1,-10", "-200,0,0,1", "0,0,1,NaN", "0,-91,1,1"],
)
async def test_a_bad_bbox_is_refused(api: Api, bbox: str) -> None:
    root = await api.user("root", "admin")

    response = await api.client.get(f"/v1/trips?bbox={bbox}", headers=root)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "bbox"]


async def test_a_bad_scope_is_refused(api: Api) -> None:
    ana = await api.user("ana")

    response = await api.client.get("/v1/trips?scope=everything", headers=ana)

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "scope"]


# -- the track -------------------------------------------------------------------------


async def test_the_track_is_geojson_in_device_time_order(api: Api) -> None:
    ana = await api.user("ana")
    filed = await api.file(ana)
    await _with_fixes(api, filed["id"])

    response = await api.client.get(f"/v1/trips/{filed['id']}/track", headers=ana)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/geo+json"
    track = Track.model_validate(response.json())
    route, *fixes = response.json()["features"]
    assert track.type == "FeatureCollection"
    assert route["geometry"] == filed["route"]
    assert route["properties"] == {"kind": "route", "trip_id": filed["id"]}
    assert [f["geometry"]["coordinates"] for f in fixes] == ROUTE[:3]
    assert [f["properties"] for f in fixes] == [
        {
            "kind": "fix",
            "t": f"2026-05-28T14:0{i}:00Z",
            "accuracy": 8.0,
            "speed": 5.0,
            "battery": 80.0 - i,
            "verdict": "accepted",
        }
        for i in range(3)
    ]


async def test_the_track_window_and_limit(api: Api) -> None:
    ana = await api.user("ana")
    filed = await api.file(ana)
    await _with_fixes(api, filed["id"])
    url = f"/v1/trips/{filed['id']}/track"

    async def times(query: str) -> list[str]:
        response = await api.client.get(url + query, headers=ana)
        assert response.status_code == 200, response.text
        return [f["properties"]["t"][11:16] for f in response.json()["features"][1:]]

    assert await times("?since=2026-05-28T14:01:00Z") == ["14:01", "14:02"]
    assert await times("?until=2026-05-28T14:02:00Z") == ["14:00", "14:01"]
    assert await times("?since=2026-05-28T08:01:00-06:00&limit=1") == ["14:01"]
    bad = await api.client.get(
        url + "?since=2026-05-28T14:02:00Z&until=2026-05-28T14:01Z", headers=ana
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "until"]
    naive = await api.client.get(url + "?since=2026-05-28T14:02:00", headers=ana)
    assert naive.status_code == 422


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?since=0001-01-01T00:00:00%2B05:00", "since"),
        ("?until=9999-12-31T23:59:59-05:00", "until"),
    ],
)
async def test_track_bounds_beyond_the_calendar_are_refused(
    api: Api, query: str, field: str
) -> None:
    ana = await api.user("ana")
    filed = await api.file(ana)
    response = await api.client.get(f"/v1/trips/{filed['id']}/track{query}", headers=ana)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", field]


async def test_many_tracks_read_at_once_all_succeed(api: Api) -> None:
    """More concurrent readers than the database pool has connections: each reads its
    track on its own request's connection, so none waits for another."""
    ana = await api.user("ana")
    filed = await api.file(ana)
    await _with_fixes(api, filed["id"])
    url = f"/v1/trips/{filed['id']}/track"
    responses = await asyncio.gather(*(api.client.get(url, headers=ana) for _ in range(40)))
    assert [r.status_code for r in responses] == [200] * 40
    assert all(len(r.json()["features"]) == 4 for r in responses)


# -- ending ----------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "status"), [("finish", "finished"), ("cancel", "cancelled")])
async def test_finish_or_cancel_once(api: Api, first: str, status: str) -> None:
    ana = await api.user("ana")
    trip = await api.file(ana)

    ended = await api.client.post(f"/v1/trips/{trip['id']}/{first}", headers=ana)
    again = [
        await api.client.post(f"/v1/trips/{trip['id']}/{how}", headers=ana)
        for how in ("finish", "cancel")
    ]

    assert ended.status_code == 200, ended.text
    assert ended.json()["status"] == status
    ended_at = datetime.fromisoformat(ended.json()["ended_at"])
    assert abs(datetime.now(UTC) - ended_at) < timedelta(minutes=1)
    assert [r.status_code for r in again] == [409, 409]
    assert status in again[0].json()["detail"]
    read = await api.client.get(f"/v1/trips/{trip['id']}", headers=ana)
    assert read.json()["status"] == status


# -- shares and links ------------------------------------------------------------------


async def test_share_with_a_user_who_then_sees_the_trip(api: Api) -> None:
    ana = await api.user("ana")
    marta = await api.user("marta", "monitor")
    trip = await api.file(ana)
    url = f"/v1/trips/{trip['id']}"
    assert (await api.client.get(url, headers=marta)).status_code == 404

    expires = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    shared = await api.client.post(
        f"{url}/shares", json={"user": "marta", "expires_at": expires.isoformat()}, headers=ana
    )

    assert shared.status_code == 201, shared.text
    share = shared.json()
    assert (share["kind"], share["user"], share["live"]) == ("user", "marta", True)
    assert datetime.fromisoformat(share["expires_at"]) == expires
    assert (await api.client.get(url, headers=marta)).status_code == 200
    listed = (await api.client.get("/v1/trips?scope=shared", headers=marta)).json()
    assert [t["id"] for t in listed["trips"]] == [trip["id"]]
    again = await api.client.post(f"{url}/shares", json={"user": "marta", "hours": 1}, headers=ana)
    assert again.status_code == 409

    revoked = await api.client.delete(share["url"], headers=ana)

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["live"] is False
    assert revoked.json()["revoked_at"] is not None
    assert (await api.client.get(url, headers=marta)).status_code == 404
    twice = await api.client.delete(share["url"], headers=ana)
    assert twice.status_code == 200
    assert twice.json()["revoked_at"] == revoked.json()["revoked_at"]


async def test_a_share_link_opens_its_trip_read_only_until_revoked(api: Api) -> None:
    ana = await api.user("ana")
    trip = await api.file(ana)
    url = f"/v1/trips/{trip['id']}"

    made = await api.client.post(f"{url}/links", json={"hours": 3, "label": "Mamá"}, headers=ana)

    assert made.status_code == 201, made.text
    link = made.json()
    assert link["token"].startswith("sgl_")
    assert link["link"] == f"{PUBLIC_URL}/s/{link['token']}"
    assert (link["kind"], link["label"], link["user"]) == ("link", "Mamá", None)
    expires = datetime.fromisoformat(link["expires_at"])
    assert abs(expires - datetime.now(UTC) - timedelta(hours=3)) < timedelta(minutes=1)
    holder = auth(link["token"])
    assert (await api.client.get(url, headers=holder)).status_code == 200
    assert (await api.client.get(f"{url}/track", headers=holder)).status_code == 200
    assert (await api.client.post(f"{url}/finish", headers=holder)).status_code == 403
    listed = (await api.client.get(f"{url}/shares", headers=ana)).json()["shares"]
    assert [s["id"] for s in listed] == [link["id"]]
    assert "token" not in listed[0]
    assert "sgl_" not in str(listed)

    assert (await api.client.delete(link["url"], headers=ana)).status_code == 200

    assert (await api.client.get(url, headers=holder)).status_code == 401


SHARE_VALIDATION = [
    ({"user": "nadie", "hours": 1}, ["user"], "no active user"),
    ({"user": "ana", "hours": 1}, ["user"], "yours already"),
    ({"user": "off", "hours": 1}, ["user"], "no active user"),
    ({"user": "marta"}, ["expires_at"], "must end"),
    ({"user": "marta", "hours": 1, "expires_at": "2030-01-01T00:00:00Z"}, ["hours"], "not both"),
    ({"user": "marta", "hours": 0}, ["hours"], "greater than 0"),
    ({"user": "marta", "hours": 721}, ["hours"], "less than or equal to 720"),
    ({"user": "marta", "expires_at": "2020-01-01T00:00:00Z"}, ["expires_at"], "in the future"),
    ({"user": "marta", "expires_at": "2099-01-01T00:00:00Z"}, ["expires_at"], "30 days"),
    ({"user": "marta", "expires_at": "2099-01-01T00:00:00"}, ["expires_at"], "timezone"),
    ({"user": "", "hours": 1}, ["user"], "at least 1"),
]


@pytest.mark.parametrize(("body", "loc", "reason"), SHARE_VALIDATION)
async def test_refused_shares_name_the_field(
    api: Api, body: dict[str, Any], loc: list[str], reason: str
) -> None:
    ana = await api.user("ana")
    await api.user("marta", "monitor")
    await api.user("off", "monitor")
    async with api.app.state.sessions() as session:
        await disable_user(session, "off")
        await session.commit()
    trip = await api.file(ana)

    response = await api.client.post(f"/v1/trips/{trip['id']}/shares", json=body, headers=ana)

    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"][:2] == ["body", *loc] and reason in e["msg"] for e in errors), errors
    listed = await api.client.get(f"/v1/trips/{trip['id']}/shares", headers=ana)
    assert listed.json()["shares"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, "expires_at"),
        ({"hours": 24 * 31}, "hours"),
        ({"hours": 1, "label": "x" * 201}, "label"),
    ],
)
async def test_refused_links_name_the_field(api: Api, body: dict[str, Any], loc: str) -> None:
    ana = await api.user("ana")
    trip = await api.file(ana)

    response = await api.client.post(f"/v1/trips/{trip['id']}/links", json=body, headers=ana)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", loc]


async def test_an_ended_trip_is_not_shared_any_more(api: Api) -> None:
    ana = await api.user("ana")
    await api.user("marta", "monitor")
    trip = await api.file(ana)
    await api.client.post(f"/v1/trips/{trip['id']}/finish", headers=ana)

    share = await api.client.post(
        f"/v1/trips/{trip['id']}/shares", json={"user": "marta", "hours": 1}, headers=ana
    )
    link = await api.client.post(f"/v1/trips/{trip['id']}/links", json={"hours": 1}, headers=ana)

    assert (share.status_code, link.status_code) == (409, 409)


# -- the schema ------------------------------------------------------------------------


async def test_every_route_is_documented(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    routes = {
        (method, path): op
        for path, ops in schema["paths"].items()
        if path.startswith(("/v1/trips", "/v1/shares"))
        for method, op in ops.items()
    }

    assert set(routes) == {
        ("post", "/v1/trips"),
        ("get", "/v1/trips"),
        ("get", "/v1/trips/{trip_id}"),
        ("get", "/v1/trips/{trip_id}/track"),
        ("post", "/v1/trips/{trip_id}/finish"),
        ("post", "/v1/trips/{trip_id}/cancel"),
        ("post", "/v1/trips/{trip_id}/shares"),
        ("get", "/v1/trips/{trip_id}/shares"),
        ("post", "/v1/trips/{trip_id}/links"),
        ("delete", "/v1/shares/{share_id}"),
        ("get", "/v1/trips/{trip_id}/alerts"),
        ("post", "/v1/trips/{trip_id}/sos"),
        ("post", "/v1/trips/{trip_id}/cancel-alerts"),
    }
    for (method, path), op in routes.items():
        assert op["summary"], (method, path)
        assert op["description"], (method, path)
        assert "401" in op["responses"], (method, path)
        ok = next(code for code in op["responses"] if code.startswith("2"))
        assert op["responses"][ok]["content"], (method, path)
    track = routes[("get", "/v1/trips/{trip_id}/track")]["responses"]["200"]["content"]
    assert "application/geo+json" in track
