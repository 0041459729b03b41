"""The watchers' live feed, /v1/live, on both backends: who gets which trips, the
snapshot and its audit rows, a phone's fix arriving as a Feature, access that ends,
the slow watcher dropped, and a fix crossing from one worker to another through Redis."""

from __future__ import annotations

import asyncio
import socket
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from asgi_websocket import AsgiWebSocket, Closed, connect
from conftest import Account, AddAccount
from fastapi import FastAPI
from pydantic import SecretStr
from trip_world import ROUTE

from sigueme.api.app import create_app
from sigueme.api.watch import WatchLimits
from sigueme.geo import Route, TripPlan
from sigueme.settings import Settings
from sigueme.store import trips as store
from sigueme.store.audit import reads_of
from sigueme.store.models import Alert, Role, utcnow
from sigueme.store.users import add_user

T0 = time.time() - 600


@dataclass
class Watch:
    app: FastAPI
    ana: Account
    """The traveller."""
    marta: Account
    """A monitor with a live share of Ana's trip."""
    sofia: Account
    """A monitor given nothing."""
    diego: Account
    """A dispatcher."""
    trip_id: str
    share_id: int
    link: str
    """A share link to Ana's trip."""


async def file_trip(app: FastAPI, owner: Account) -> str:
    plan = TripPlan(route=Route(ROUTE), departure=T0, arrival=T0 + 1800)
    async with app.state.sessions() as session:
        trip = await store.create_trip(
            session, owner_id=owner.id, plan=plan, overrides={}, label="Al mitin"
        )
        await session.commit()
    return trip.id


async def make_world(app: FastAPI, add_account: AddAccount) -> Watch:
    ana = await add_account("ana", Role.TRAVELLER)
    marta = await add_account("marta", Role.MONITOR)
    sofia = await add_account("sofia", Role.MONITOR)
    diego = await add_account("diego", Role.DISPATCHER)
    trip_id = await file_trip(app, ana)
    now = utcnow()
    async with app.state.sessions() as session:
        trip = await store.get_trip(session, trip_id)
        assert trip is not None
        share, _ = await store.share_with_user(
            session,
            trip,
            by=ana.id,
            grantee_name="marta",
            expires_at=now + timedelta(days=1),
            now=now,
        )
        _, link = await store.create_link(
            session, trip, by=ana.id, expires_at=now + timedelta(hours=2), label="mamá", now=now
        )
        await session.commit()
    return Watch(app, ana, marta, sofia, diego, trip_id, share.id, link)


@pytest_asyncio.fixture(loop_scope="session")
async def world(app: FastAPI, add_account: AddAccount) -> Watch:
    return await make_world(app, add_account)


def fix(seq: int) -> dict[str, Any]:
    (lon0, lat0), (lon1, lat1) = ROUTE[0], ROUTE[1]
    f = min(seq * 0.013, 1.0)
    return {
        "type": "fix",
        "seq": seq,
        "t": T0 + 5 * seq,
        "lat": round(lat0 + f * (lat1 - lat0), 7),
        "lon": round(lon0 + f * (lon1 - lon0), 7),
        "accuracy": 6.5,
        "battery": 81,
    }


def watcher(app: FastAPI, token: str) -> AsgiWebSocket:
    return connect(app, "/v1/live", {"Authorization": f"Bearer {token}"})


async def ready(ws: AsgiWebSocket) -> dict[str, Any]:
    frame = await ws.receive_json()
    assert frame["type"] == "ready", frame
    return dict(frame)


async def subscribe(ws: AsgiWebSocket, **what: Any) -> dict[str, Any]:
    await ws.send_json({"type": "subscribe", **what})
    snapshot = await ws.receive_json()
    assert snapshot["type"] == "FeatureCollection", snapshot
    return dict(snapshot)


async def send_fix(app: FastAPI, w: Watch, seq: int) -> dict[str, Any]:
    """Ana's phone sends fix ``seq`` and gets its acknowledgement."""
    async with connect(
        app, f"/v1/trips/{w.trip_id}/phone", {"Authorization": f"Bearer {w.ana.token}"}
    ) as phone:
        assert (await phone.receive_json())["type"] == "ready"
        await phone.send_json(fix(seq))
        ack = await phone.receive_json()
    assert ack["type"] == "ack", ack
    assert ack["seqs"] == [seq]
    return dict(ack)


async def closing(ws: AsgiWebSocket) -> Closed:
    """The close that ends the frames still coming."""
    for _ in range(1_000):
        try:
            await ws.receive_json()
        except Closed as closed:
            return closed
    raise AssertionError("not closed")


async def nothing_more(ws: AsgiWebSocket) -> None:
    """The next frame is the answer to a ping: nothing was sent before it."""
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json() == {"type": "pong"}


def kinds(snapshot: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f["properties"]["kind"], f["geometry"]["type"]) for f in snapshot["features"]]


# -- a monitor watches -----------------------------------------------------------------------


async def test_a_monitor_gets_the_snapshot_then_the_phones_fix(world: Watch) -> None:
    await send_fix(world.app, world, 1)
    async with watcher(world.app, world.marta.token) as ws:
        hello = await ready(ws)
        assert hello["watcher"] == "user"
        assert hello["limits"]["queue_size"] == 1000
        snapshot = await subscribe(ws, trips=[world.trip_id])
        assert snapshot["trips"] == [world.trip_id]
        assert kinds(snapshot) == [
            ("route", "LineString"),
            ("corridor", "Polygon"),
            ("position", "Point"),
        ]
        route, _, last = snapshot["features"]
        assert route["properties"]["label"] == "Al mitin"
        assert route["properties"]["owner"] == "ana"
        assert route["geometry"]["coordinates"][0] == ROUTE[0]
        assert last["geometry"]["coordinates"] == [fix(1)["lon"], fix(1)["lat"]]

        ack = await send_fix(world.app, world, 2)
        update = await ws.receive_json()

    assert update["type"] == "Feature"
    assert update["geometry"] == {"type": "Point", "coordinates": [fix(2)["lon"], fix(2)["lat"]]}
    props = update["properties"]
    assert props["kind"] == "position"
    assert props["trip_id"] == world.trip_id
    assert props["t"].endswith("Z")
    assert props["route_status"] == ack["status"]["route_status"] == "on_route"
    assert props["progress_m"] == ack["status"]["progress_m"]
    assert props["battery"] == 81
    assert props["accuracy"] == 6.5
    assert props["events"] == []

    # The snapshot's read is in the audit log, Marta's.
    async with world.app.state.sessions() as session:
        reads = [(r.user_id, r.action) for r in await reads_of(session, world.trip_id)]
    assert reads == [(world.marta.id, "trip.live")]


async def test_first_frame_auth_and_malformed_frames(world: Watch) -> None:
    async with connect(world.app, "/v1/live") as ws:
        await ws.send_json({"type": "auth", "token": world.marta.token})
        await ready(ws)
        for bad, field in (
            ("nope", None),
            ({"type": "subscribe"}, None),
            ({"type": "subscribe", "trips": []}, "trips"),
            ({"type": "subscribe", "trips": [world.trip_id], "bbox": [0, 0, 1, 1]}, None),
            ({"type": "subscribe", "bbox": [-99, 19, -100, 18]}, None),
            ({"type": "subscribe", "bbox": [-99, 18, "x", 19]}, "bbox[2]"),
            ({"type": "dance"}, "type"),
        ):
            if isinstance(bad, str):
                await ws.send_text(bad)
            else:
                await ws.send_json(bad)
            error = await ws.receive_json()
            assert error["type"] == "error", (bad, error)
            if field is not None:
                assert error["field"] == field
        await ws.send_text('{"type": "subscribe", "bbox": [NaN, 0, 1, 1]}')
        assert (await ws.receive_json())["type"] == "error"
        await nothing_more(ws)


async def test_no_token_or_a_bad_one_is_closed_4401(world: Watch) -> None:
    for headers in ({"Authorization": "Bearer sgm_nope"}, None):
        async with connect(world.app, "/v1/live", headers) as ws:
            if headers is None:
                await ws.send_json({"type": "ping"})
            assert (await closing(ws)).code == 4401


# -- strangers learn nothing -------------------------------------------------------------------


async def test_a_stranger_gets_nothing_and_learns_nothing(world: Watch) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    async with watcher(world.app, world.sofia.token) as ws:
        await ready(ws)
        answers = []
        for trip_id in (world.trip_id, missing):
            snapshot = await subscribe(ws, trips=[trip_id])
            error = await ws.receive_json()
            assert snapshot == {"type": "FeatureCollection", "trips": [], "features": []}
            assert error["trips"] == [trip_id]
            answers.append({k: v for k, v in error.items() if k != "trips"})
        # A trip not given and one that does not exist answer alike.
        assert (
            answers[0]
            == answers[1]
            == {"type": "error", "reason": "no such trip", "field": "trips"}
        )

        await send_fix(world.app, world, 1)
        await nothing_more(ws)
        # Asking for an area is for dispatchers and admins.
        await ws.send_json({"type": "subscribe", "bbox": [-100, 18, -99, 19]})
        error = await ws.receive_json()
        assert error == {
            "type": "error",
            "reason": "only dispatchers and admins subscribe to an area",
            "field": "bbox",
        }
        await send_fix(world.app, world, 2)
        await nothing_more(ws)
    async with world.app.state.sessions() as session:
        assert list(await reads_of(session, world.trip_id)) == []


# -- dispatchers' areas ----------------------------------------------------------------------


async def test_a_dispatcher_follows_an_area_with_the_trips_they_may_see(world: Watch) -> None:
    async with watcher(world.app, world.diego.token) as ws:
        await ready(ws)
        # No alert yet: a dispatcher does not see Ana's trip (ARCHITECTURE.md, promise 6).
        snapshot = await subscribe(ws, bbox=[-99.3, 18.8, -99.1, 19.0])
        assert snapshot["trips"] == []
        async with world.app.state.sessions() as session:
            session.add(Alert(trip_id=world.trip_id, kind="sos", severity=1, status="open"))
            await session.commit()
        snapshot = await subscribe(ws, bbox=[-99.3, 18.8, -99.1, 19.0])
        assert snapshot["trips"] == [world.trip_id]
        assert [k for k, _ in kinds(snapshot)] == ["route", "corridor"]

        await send_fix(world.app, world, 1)
        update = await ws.receive_json()
        assert update["properties"]["trip_id"] == world.trip_id

        # Moving the area away from the trip: it leaves, and its updates stop.
        snapshot = await subscribe(ws, bbox=[-98.0, 18.0, -97.9, 18.1])
        assert snapshot["trips"] == []
        assert await ws.receive_json() == {
            "type": "unsubscribed",
            "trips": [world.trip_id],
            "reason": "left the area",
        }
        await send_fix(world.app, world, 2)
        await nothing_more(ws)
    async with world.app.state.sessions() as session:
        reads = [(r.user_id, r.action) for r in await reads_of(session, world.trip_id)]
    assert reads == [(world.diego.id, "trip.live")]


# -- share links -------------------------------------------------------------------------------


async def test_a_share_link_holder_gets_its_trip_at_once(world: Watch) -> None:
    async with watcher(world.app, world.link) as ws:
        assert (await ready(ws))["watcher"] == "link"
        snapshot = await ws.receive_json()
        assert snapshot["type"] == "FeatureCollection"
        assert snapshot["trips"] == [world.trip_id]
        await send_fix(world.app, world, 1)
        update = await ws.receive_json()
        assert update["geometry"]["coordinates"] == [fix(1)["lon"], fix(1)["lat"]]
        # Its link opens that trip and no other.
        other = await file_trip(world.app, world.ana)
        assert (await subscribe(ws, trips=[other]))["trips"] == []
        assert (await ws.receive_json())["reason"] == "no such trip"
    async with world.app.state.sessions() as session:
        [read] = await reads_of(session, world.trip_id)
    assert (read.user_id, read.share_id, read.action) == (None, read.share_id, "trip.live")
    assert read.share_id is not None


# -- access that ends --------------------------------------------------------------------------


async def test_an_expired_share_stops_the_updates(world: Watch) -> None:
    """Expiry is checked on every update: nothing leaves after it."""
    now = utcnow()
    async with world.app.state.sessions() as session:
        trip = await store.get_trip(session, world.trip_id)
        assert trip is not None
        await store.share_with_user(
            session,
            trip,
            by=world.ana.id,
            grantee_name="sofia",
            expires_at=now + timedelta(seconds=1.5),
            now=now,
        )
        await session.commit()
    async with watcher(world.app, world.sofia.token) as ws:
        await ready(ws)
        assert (await subscribe(ws, trips=[world.trip_id]))["trips"] == [world.trip_id]
        await send_fix(world.app, world, 1)
        assert (await ws.receive_json())["type"] == "Feature"
        await asyncio.sleep(max(0.0, (now + timedelta(seconds=1.6) - utcnow()).total_seconds()))
        await send_fix(world.app, world, 2)
        assert await ws.receive_json() == {
            "type": "unsubscribed",
            "trips": [world.trip_id],
            "reason": "access ended",
        }
        await send_fix(world.app, world, 3)
        await nothing_more(ws)


async def test_a_revoked_share_stops_the_updates_at_the_next_recheck(world: Watch) -> None:
    world.app.state.watch_limits = WatchLimits(recheck_s=0.1)
    async with watcher(world.app, world.marta.token) as ws:
        await ready(ws)
        await subscribe(ws, trips=[world.trip_id])
        async with world.app.state.sessions() as session:
            share = await store.get_share(session, world.share_id)
            assert share is not None
            await store.revoke_share(session, share, utcnow())
            await session.commit()
        assert await ws.receive_json() == {
            "type": "unsubscribed",
            "trips": [world.trip_id],
            "reason": "access ended",
        }
        await send_fix(world.app, world, 1)
        await nothing_more(ws)


async def test_a_revoked_link_is_closed(world: Watch) -> None:
    world.app.state.watch_limits = WatchLimits(recheck_s=0.1)
    async with watcher(world.app, world.link) as ws:
        await ready(ws)
        await ws.receive_json()  # the snapshot
        async with world.app.state.sessions() as session:
            [link] = [s for s, _ in await store.list_shares(session, world.trip_id) if s.token_hash]
            await store.revoke_share(session, link, utcnow())
            await session.commit()
        closed = await closing(ws)
        assert closed.code == 4401


# -- slow watchers -----------------------------------------------------------------------------


async def test_a_slow_watcher_is_dropped_and_ingestion_goes_on(world: Watch) -> None:
    world.app.state.watch_limits = WatchLimits(queue_size=5)
    async with watcher(world.app, world.marta.token) as ws:
        await ready(ws)
        await subscribe(ws, trips=[world.trip_id])
        bus = world.app.state.live_bus
        # Updates come faster than this watcher's connection takes them.
        for n in range(20):
            await bus.publish(
                world.trip_id, {"type": "Feature", "geometry": None, "properties": {"n": n}}
            )
        closed = await closing(ws)
        assert (closed.code, closed.reason) == (4408, "too slow: reconnect")
        await send_fix(world.app, world, 1)
    # Another watcher is unaffected.
    world.app.state.watch_limits = WatchLimits()
    async with watcher(world.app, world.marta.token) as ws:
        await ready(ws)
        await subscribe(ws, trips=[world.trip_id])
        await send_fix(world.app, world, 2)
        assert (await ws.receive_json())["type"] == "Feature"


# -- across workers ----------------------------------------------------------------------------


@pytest.mark.redis
async def test_a_fix_through_one_worker_reaches_a_watcher_on_another(
    database_url: str, redis_url: str
) -> None:
    settings = Settings(database_url=SecretStr(database_url), redis_url=SecretStr(redis_url))
    a, b = create_app(settings), create_app(settings)
    async with AsyncExitStack() as stack:
        for app in (a, b):
            await stack.enter_async_context(app.router.lifespan_context(app))

        async def add_account(name: str, role: Role = Role.TRAVELLER) -> Account:
            async with a.state.sessions() as session:
                user, token = await add_user(session, name, role)
                await session.commit()
            return Account(id=user.id, name=user.name, role=role, token=token)

        w = await make_world(a, add_account)
        async with watcher(b, w.marta.token) as ws:
            await ready(ws)
            await subscribe(ws, trips=[w.trip_id])
            ack = await send_fix(a, w, 1)
            update = await ws.receive_json()
        assert update["properties"]["trip_id"] == w.trip_id
        assert update["properties"]["progress_m"] == ack["status"]["progress_m"]
        assert update["geometry"]["coordinates"] == [fix(1)["lon"], fix(1)["lat"]]


@pytest.mark.redis
async def test_a_redis_that_is_down_never_stops_a_fix(database_url: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(
        database_url=SecretStr(database_url), redis_url=SecretStr(f"redis://127.0.0.1:{port}/0")
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):

        async def add_account(name: str, role: Role = Role.TRAVELLER) -> Account:
            async with app.state.sessions() as session:
                user, token = await add_user(session, name, role)
                await session.commit()
            return Account(id=user.id, name=user.name, role=role, token=token)

        w = await make_world(app, add_account)
        started = time.monotonic()
        for seq in range(3):
            await send_fix(app, w, seq)
        assert time.monotonic() - started < 5
        registry = app.state.metrics.registry
        for _ in range(250):
            if registry.get_sample_value("sigueme_live_publish_failures_total"):
                break
            await asyncio.sleep(0.02)
        assert registry.get_sample_value("sigueme_live_publish_failures_total") >= 1
