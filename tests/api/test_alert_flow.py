"""The whole path of an alert through a running app, on both backends: the phone's SOS
committed and acknowledged, on the police queue and on the feeds of the dispatcher
watching the area and of the monitor the trip is shared with; the app's own watchdog
raising ``signal_lost`` for a phone that fell silent, and escalating what nobody
acknowledged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest_asyncio
from asgi_websocket import AsgiWebSocket, connect
from fastapi import FastAPI
from pydantic import SecretStr
from trip_world import ROUTE

from sigueme.api.app import create_app
from sigueme.geo import Route, TripPlan
from sigueme.settings import Settings
from sigueme.store import trips as store
from sigueme.store.models import Role, utcnow
from sigueme.store.users import add_user


@pytest_asyncio.fixture(loop_scope="session")
async def live_app(database_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = Settings(
        database_url=SecretStr(database_url),
        watchdog_interval_s=0.1,
        escalate_after_s=1.5,
        public_url="https://sigueme.example.mx",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield app, c


async def _user(app: FastAPI, name: str, role: Role) -> tuple[int, dict[str, str]]:
    async with app.state.sessions() as session:
        user, token = await add_user(session, name, role, display_name=name.title())
        await session.commit()
    return user.id, {"Authorization": f"Bearer {token}"}


async def _trip(app: FastAPI, owner: int, *, silence_s: float = 300, ago_s: float = 30) -> str:
    start = time.time() - ago_s
    plan = TripPlan(route=Route(ROUTE), departure=start, arrival=start + 1800)
    async with app.state.sessions() as session:
        trip = await store.create_trip(
            session,
            owner_id=owner,
            plan=plan,
            overrides={},
            label="Mitin",
            silence_timeout_s=silence_s,
        )
        await session.commit()
        return trip.id


async def _until(check: Callable[[], Awaitable[Any]], seconds: float = 15) -> Any:
    """``check()``'s first truthy answer, asked every 50 ms for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.05)


async def _next_alert(ws: AsgiWebSocket) -> dict[str, Any]:
    """The next alert Feature of a watcher's feed (skipping snapshots and positions)."""
    while True:
        frame = await asyncio.wait_for(ws.receive_json(), 10)
        if frame.get("type") == "Feature" and frame["properties"]["kind"] == "alert":
            return dict(frame)


async def test_an_sos_reaches_the_police_queue_the_dispatcher_and_the_monitor(
    live_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = live_app
    ana, ana_h = await _user(app, "ana", Role.TRAVELLER)
    _, police_h = await _user(app, "despacho", Role.DISPATCHER)
    _, marta_h = await _user(app, "marta", Role.MONITOR)
    trip_id = await _trip(app, ana)
    r = await client.post(
        f"/v1/trips/{trip_id}/shares",
        json={"user": "marta", "hours": 1},
        headers=ana_h,
    )
    assert r.status_code == 201, r.text

    async with (
        connect(app, "/v1/live", police_h) as dispatcher,
        connect(app, "/v1/live", marta_h) as monitor,
        connect(app, f"/v1/trips/{trip_id}/phone", ana_h) as phone,
    ):
        for ws in (dispatcher, monitor, phone):
            assert (await ws.receive_json())["type"] == "ready"
        await dispatcher.send_json({"type": "subscribe", "bbox": [-99.3, 18.8, -99.1, 19.0]})
        assert (await dispatcher.receive_json())["trips"] == []  # nothing to see yet
        await monitor.send_json({"type": "subscribe", "trips": [trip_id]})
        assert (await monitor.receive_json())["trips"] == [trip_id]

        where = {"seq": 1, "t": time.time(), "lat": ROUTE[1][1], "lon": ROUTE[1][0]}
        await phone.send_json({"type": "sos", "fix": where})
        ack = await phone.receive_json()
        assert ack["type"] == "sos_ack"

        # The dispatcher's area takes the trip in, then the alert follows.
        alert = await _next_alert(dispatcher)
        assert alert["geometry"] == {"type": "Point", "coordinates": ROUTE[1]}
        assert alert["properties"]["event"] == "raised"
        assert alert["properties"]["alert"]["id"] == ack["alert_id"]
        assert alert["properties"]["alert"]["severity"] == 4
        seen = await _next_alert(monitor)
        assert seen["properties"]["alert"]["id"] == ack["alert_id"]

    async def police_entries() -> list[dict[str, Any]]:
        r = await client.post(
            "/v1/queue/read", json={"consumer": "consola-1", "count": 10}, headers=police_h
        )
        assert r.status_code == 200, r.text
        entries: list[dict[str, Any]] = r.json()["entries"]
        return entries

    entries = await _until(police_entries)
    assert [(e["fields"]["alert_id"], e["fields"]["event"]) for e in entries] == [
        (ack["alert_id"], "raised")
    ]
    r = await client.post(
        "/v1/queue/ack", json={"ids": [e["id"] for e in entries]}, headers=police_h
    )
    assert r.json() == {"acknowledged": 1}


async def test_the_apps_watchdog_raises_signal_lost_and_escalates_it(
    live_app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = live_app
    ana, ana_h = await _user(app, "ana", Role.TRAVELLER)
    _, police_h = await _user(app, "despacho", Role.DISPATCHER)
    # Leaving now, silent after 3 s: the phone's one fix comes first.
    trip_id = await _trip(app, ana, silence_s=3, ago_s=0)
    async with connect(app, f"/v1/trips/{trip_id}/phone", ana_h) as phone:
        assert (await phone.receive_json())["type"] == "ready"
        sent = utcnow()
        await phone.send_json(
            {
                "type": "fix",
                "seq": 1,
                "t": time.time(),
                "lat": ROUTE[0][1],
                "lon": ROUTE[0][0],
                "battery": 17,
                "accuracy": 9,
            }
        )
        assert (await phone.receive_json())["type"] == "ack"

    async def signal_lost() -> list[dict[str, Any]]:
        r = await client.get("/v1/alerts?kind=signal_lost", headers=police_h)
        alerts: list[dict[str, Any]] = r.json()["alerts"]
        return alerts

    [alert] = await _until(signal_lost)
    assert alert["trip"]["id"] == trip_id
    assert alert["position"]["coordinates"] == ROUTE[0]
    assert (alert["battery"], alert["accuracy_m"]) == (17, 9)
    opened = alert["opened_at"]
    # Not before the timeout ran out after the fix was received.
    assert datetime.fromisoformat(opened) >= sent + timedelta(seconds=3)

    async def escalated() -> list[dict[str, Any]]:
        return [a for a in await signal_lost() if a["escalations"] >= 1]

    [alert] = await _until(escalated)
    assert alert["severity"] == 4  # severe, one step up
    assert alert["history"][-1]["action"] == "escalated"
