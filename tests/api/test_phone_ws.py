"""The phone's websocket, /v1/trips/{id}/phone, on both backends: who may stream, what
the phone is told for each frame, and that what was acknowledged is in the track."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_websocket import AsgiWebSocket, Closed, connect
from conftest import Account, AddAccount
from fastapi import FastAPI
from sqlalchemy import func, select, text
from trip_world import ROUTE

from sigueme.api.live import PhoneLimits
from sigueme.api.phone_protocol import MAX_FRAME_BYTES
from sigueme.geo import Route, TripPlan
from sigueme.store import trips as store
from sigueme.store.models import Fix, Role, Trip, utcnow
from sigueme.store.users import disable_user


@dataclass
class Phones:
    app: FastAPI
    client: httpx.AsyncClient
    ana: Account
    beto: Account
    trip_id: str
    """Ana's active trip."""
    beto_trip_id: str
    ended_trip_id: str
    """Ana's, finished."""

    def path(self, trip_id: str | None = None) -> str:
        return f"/v1/trips/{trip_id or self.trip_id}/phone"

    def open(self, trip_id: str | None = None, token: str | None = None) -> AsgiWebSocket:
        """A connection authenticated by header (Ana's token unless told)."""
        return connect(
            self.app, self.path(trip_id), {"Authorization": f"Bearer {token or self.ana.token}"}
        )

    async def track(self, trip_id: str | None = None) -> list[dict[str, Any]]:
        r = await self.client.get(
            f"/v1/trips/{trip_id or self.trip_id}/track", headers=self.ana.headers
        )
        assert r.status_code == 200, r.text
        return [f for f in r.json()["features"] if f["properties"]["kind"] == "fix"]


T0 = time.time() - 600
"""Trips leave ten minutes ago; their fixes are from since then."""


@pytest_asyncio.fixture(loop_scope="session")
async def phones(
    app: FastAPI, client: httpx.AsyncClient, add_account: AddAccount
) -> AsyncIterator[Phones]:
    ana = await add_account("ana", Role.TRAVELLER)
    beto = await add_account("beto", Role.TRAVELLER)
    plan = TripPlan(route=Route(ROUTE), departure=T0, arrival=T0 + 1800)
    async with app.state.sessions() as session:
        trip, beto_trip, ended = [
            await store.create_trip(session, owner_id=owner, plan=plan, overrides={}, label=None)
            for owner in (ana.id, beto.id, ana.id)
        ]
        await store.end_trip(session, ended, store.Ending.FINISH, utcnow())
        await session.commit()
    yield Phones(app, client, ana, beto, trip.id, beto_trip.id, ended.id)


def fix(seq: int, **changes: Any) -> dict[str, Any]:
    """Fix ``seq`` on the route's first leg, 5 s and some 12 m apart."""
    (lon0, lat0), (lon1, lat1) = ROUTE[0], ROUTE[1]
    f = min(seq * 0.013, 1.0)
    frame: dict[str, Any] = {
        "type": "fix",
        "seq": seq,
        "t": T0 + 5 * seq,
        "lat": round(lat0 + f * (lat1 - lat0), 7),
        "lon": round(lon0 + f * (lon1 - lon0), 7),
        "accuracy": 6.5,
        "speed": 2.4,
        "heading": 135,
        "battery": 81,
    }
    frame.update(changes)
    return {k: v for k, v in frame.items() if v is not None}


async def ready(ws: AsgiWebSocket) -> dict[str, Any]:
    frame = await ws.receive_json()
    assert frame["type"] == "ready", frame
    return dict(frame)


# -- authentication ----------------------------------------------------------------------


async def test_header_auth_then_a_fix_is_acknowledged_with_the_status(phones: Phones) -> None:
    async with phones.open() as ws:
        hello = await ready(ws)
        assert hello["trip_id"] == phones.trip_id
        assert hello["status"]["route_status"] == "pending"
        assert hello["limits"] == {"max_frame_bytes": MAX_FRAME_BYTES, "max_fixes_per_frame": 500}

        await ws.send_json(fix(1))
        ack = await ws.receive_json()

    assert ack["type"] == "ack"
    assert ack["seqs"] == [1]
    assert ack["duplicates"] == []
    assert ack["events"] == []
    status = ack["status"]
    assert status["route_status"] == "on_route"
    assert status["distance_m"] < 20
    assert 0 < status["progress_m"] < 100
    assert 0 < status["progress_fraction"] < 0.05
    assert status["predicted_arrival"].endswith("Z")
    assert isinstance(status["delay_s"], float)
    [stored] = await phones.track()
    assert stored["geometry"]["coordinates"] == [fix(1)["lon"], fix(1)["lat"]]
    assert stored["properties"]["verdict"] == "accepted"
    assert stored["properties"]["battery"] == 81


async def test_first_frame_auth_for_browsers(phones: Phones) -> None:
    async with connect(phones.app, phones.path()) as ws:
        await ws.send_json({"type": "auth", "token": phones.ana.token})
        await ready(ws)
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}
        # Authenticating again is refused, harmlessly.
        await ws.send_json({"type": "auth", "token": phones.ana.token})
        assert (await ws.receive_json())["reason"] == "already authenticated"
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}


@pytest.mark.parametrize(
    "first",
    [
        {"type": "auth", "token": "sgm_not-a-token"},
        {"type": "auth", "token": ""},
        {"type": "ping"},
        fix(1),
        "not json",
    ],
)
async def test_no_valid_first_frame_closes_4401(phones: Phones, first: Any) -> None:
    async with connect(phones.app, phones.path()) as ws:
        await (ws.send_text(first) if isinstance(first, str) else ws.send_json(first))
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4401
    assert await phones.track() == []


async def test_no_auth_frame_in_time_closes_4401(phones: Phones) -> None:
    phones.app.state.phone_limits = PhoneLimits(auth_timeout_s=0.2)
    async with connect(phones.app, phones.path()) as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4401


@pytest.mark.parametrize("header", ["Bearer sgm_wrong", "Bearer ", "Basic YW5hOnB3", "sgm_x"])
async def test_a_bad_header_closes_4401(phones: Phones, header: str) -> None:
    async with connect(phones.app, phones.path(), {"Authorization": header}) as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4401


async def test_another_travellers_trip_and_an_unknown_trip_close_alike_4404(
    phones: Phones, add_account: AddAccount
) -> None:
    admin = await add_account("root", Role.ADMIN)
    for trip_id, token in [
        (phones.beto_trip_id, phones.ana.token),  # Beto's trip, Ana's phone
        ("00000000-0000-0000-0000-000000000000", phones.ana.token),
        (phones.trip_id, admin.token),  # an admin sees the trip but is not travelling
    ]:
        async with phones.open(trip_id, token) as ws:
            with pytest.raises(Closed) as closed:
                await ws.receive_json()
        assert (closed.value.code, closed.value.reason) == (4404, "no such trip")


async def test_a_share_link_may_not_stream(phones: Phones) -> None:
    r = await phones.client.post(
        f"/v1/trips/{phones.trip_id}/links",
        headers=phones.ana.headers,
        json={"hours": 1},
    )
    if r.status_code != 201:
        pytest.fail(f"could not make a link: {r.status_code} {r.text}")
    link = r.json()["token"]
    async with phones.open(token=link) as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4404


async def test_an_ended_trip_closes_4409(phones: Phones) -> None:
    async with phones.open(phones.ended_trip_id) as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4409


async def test_a_trip_ended_while_streaming_closes_4409(phones: Phones) -> None:
    async with phones.open() as ws:
        await ready(ws)
        r = await phones.client.post(
            f"/v1/trips/{phones.trip_id}/finish", headers=phones.ana.headers
        )
        assert r.status_code == 200
        await ws.send_json(fix(1))
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4409
    assert await phones.track() == []


async def test_a_token_revoked_while_streaming_stops_the_stream_4401(phones: Phones) -> None:
    phones.app.state.phone_limits = PhoneLimits(recheck_s=0.0)
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_json(fix(1))
        assert (await ws.receive_json())["type"] == "ack"
        async with phones.app.state.sessions() as session:
            await disable_user(session, "ana")
            await session.commit()
        await ws.send_json(fix(2))
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4401
    async with phones.app.state.sessions() as session:  # ana can no longer read it herself
        stored = await session.scalar(select(func.count()).select_from(Fix))
    assert stored == 1  # the fix sent after the revocation is not stored


# -- fixes ---------------------------------------------------------------------------------


async def test_a_batch_gets_one_ack_and_a_resend_is_reported_duplicate(phones: Phones) -> None:
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_json({"type": "fixes", "fixes": [fix(i) for i in range(1, 11)]})
        ack = await ws.receive_json()
        assert ack["type"] == "ack"
        assert ack["seqs"] == list(range(1, 11))
        assert ack["duplicates"] == []

        # The phone missed the ack of 9 and 10 and sends them again with 11.
        await ws.send_json({"type": "fixes", "fixes": [fix(9), fix(10), fix(11)]})
        again = await ws.receive_json()
        assert again["seqs"] == [9, 10, 11]
        assert again["duplicates"] == [9, 10]

    track = await phones.track()
    assert len(track) == 11
    times = [f["properties"]["t"] for f in track]
    assert times == sorted(times)


async def test_three_forms_of_time(phones: Phones) -> None:
    base = int(T0)
    forms = [
        fix(1, t=base + 5),
        fix(2, t=(base + 10) * 1000),
        fix(3, t=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + 15))),
        fix(4, t=time.strftime("%Y-%m-%dT%H:%M:%S-06:00", time.gmtime(base + 20 - 6 * 3600))),
    ]
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_json({"type": "fixes", "fixes": forms})
        ack = await ws.receive_json()
    assert ack["seqs"] == [1, 2, 3, 4]
    times = [f["properties"]["t"] for f in await phones.track()]
    expected = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + s)) for s in (5, 10, 15, 20)]
    assert times == expected


async def test_an_out_of_order_fix_is_stored_and_raises_nothing(phones: Phones) -> None:
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_json({"type": "fixes", "fixes": [fix(i) for i in (1, 2, 4)]})
        first = await ws.receive_json()
        await ws.send_json(fix(3))
        late = await ws.receive_json()
    assert late["seqs"] == [3]
    assert late["events"] == []
    assert late["status"] == first["status"]  # the last position did not move back
    track = await phones.track()
    assert [f["properties"]["verdict"] for f in track] == [
        "accepted",
        "accepted",
        "out_of_order",
        "accepted",
    ]


async def test_an_event_comes_in_the_ack_of_the_fix_that_raised_it(phones: Phones) -> None:
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_json(fix(1, battery=40))
        assert (await ws.receive_json())["events"] == []
        await ws.send_json(fix(2, battery=10))
        ack = await ws.receive_json()
    assert ack["events"] == [{"seq": 2, "kind": "low_battery"}]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "field", "seq"),
    [
        ("{not json", None, None),
        ("[1, 2]", None, None),
        ('{"type": "fix", "seq": 7, "t": 1780000005, "lat": NaN, "lon": -99.2}', None, None),
        ('{"type": "fix", "seq": 7, "t": 1780000005, "lat": 18.9, "lon": -Infinity}', None, None),
        ('{"type": "fix", "seq": 7, "t": 1780000005, "lat": 1e999, "lon": -99.2}', "lat", 7),
        (json.dumps({"type": "teleport"}), "type", None),
        (json.dumps({"kind": "fix"}), "type", None),
        (json.dumps(fix(7, lat=91)), "lat", 7),
        (json.dumps(fix(7, lon="-99.2")), "lon", 7),
        (json.dumps(fix(7, lat=True)), "lat", 7),
        (json.dumps(fix(7, lat=None)), "lat", 7),
        (json.dumps(fix(7, t=946684799)), "t", 7),  # 1999
        (json.dumps(fix(7, t=4102444801000)), "t", 7),  # 2100, in ms
        (json.dumps(fix(7, t="2026-05-28T14:00:05")), "t", 7),  # no zone
        (json.dumps(fix(7, t="yesterday")), "t", 7),
        (json.dumps(fix(7, speed=-3)), "speed", 7),
        (json.dumps(fix(7, battery=180)), "battery", 7),
        (json.dumps(fix(-1)), "seq", None),
        (json.dumps({**fix(7), "seq": 7.5}), "seq", None),
        (json.dumps({k: v for k, v in fix(7).items() if k != "seq"}), "seq", None),
        (json.dumps(fix(7, lat=0, lon=0)), "lat", 7),  # refused by the geo core
        (json.dumps({"type": "fixes", "fixes": [fix(7), fix(8, lat=-95)]}), "fixes[1].lat", 8),
        (json.dumps({"type": "fixes", "fixes": [fix(7), fix(8, lat=0, lon=0)]}), "fixes[1].lat", 8),
        (json.dumps({"type": "fixes", "fixes": []}), "fixes", None),
        (json.dumps({"type": "fixes", "fixes": [fix(i) for i in range(501)]}), "fixes", None),
        (json.dumps({"type": "fixes", "fixes": "all"}), "fixes", None),
    ],
)
async def test_a_malformed_frame_gets_an_error_and_changes_nothing(
    phones: Phones, frame: str, field: str | None, seq: int | None
) -> None:
    assert len(frame.encode()) <= MAX_FRAME_BYTES
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_text(frame)
        error = await ws.receive_json()
        assert error["type"] == "error"
        assert error["reason"]
        assert error.get("field") == field
        assert error.get("seq") == seq
        assert "retry" not in error
        # The connection is still usable.
        await ws.send_json(fix(1))
        ack = await ws.receive_json()
        assert ack["seqs"] == [1]
    assert len(await phones.track()) == 1  # the good fix only


async def test_nan_never_reaches_the_database(phones: Phones) -> None:
    async with phones.open() as ws:
        await ready(ws)
        body = json.dumps({"type": "fixes", "fixes": [fix(1), fix(2)]})
        await ws.send_text(body.replace('"accuracy": 6.5', '"accuracy": NaN', 1))
        error = await ws.receive_json()
        assert error["type"] == "error"
        assert "NaN" in error["reason"]
    assert await phones.track() == []


async def test_a_binary_frame_is_refused(phones: Phones) -> None:
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_bytes(json.dumps(fix(1)).encode())
        error = await ws.receive_json()
        assert error["type"] == "error"
        await ws.send_json({"type": "ping"})
        assert await ws.receive_json() == {"type": "pong"}


async def test_an_oversized_frame_closes_1009(phones: Phones) -> None:
    big = json.dumps({"type": "fixes", "fixes": [fix(i % 300 + 1) for i in range(500)]})
    big = big[:-1] + ', "padding": "' + "x" * MAX_FRAME_BYTES + '"}'
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_text(big)
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 1009
    assert await phones.track() == []


async def test_too_many_malformed_frames_close_1008(phones: Phones) -> None:
    phones.app.state.phone_limits = PhoneLimits(bad_frames_in_a_row=3)
    async with phones.open() as ws:
        await ready(ws)
        for _ in range(3):
            await ws.send_text("nope")
            assert (await ws.receive_json())["type"] == "error"
        await ws.send_text("nope")
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 1008


# -- floods ------------------------------------------------------------------------------------


async def test_a_flood_of_frames_is_refused_then_closed_4429(phones: Phones) -> None:
    phones.app.state.phone_limits = PhoneLimits(
        frames_per_s=0.01, frame_burst=5, strikes=3, strikes_per_s=0.001
    )
    async with phones.open() as ws:
        await ready(ws)
        for _ in range(5):
            await ws.send_json({"type": "ping"})
            assert await ws.receive_json() == {"type": "pong"}
        for _ in range(3):
            await ws.send_json(fix(1))
            error = await ws.receive_json()
            assert error["type"] == "error"
            assert error["retry"] is True
            assert error["retry_after_s"] > 0
            assert error["reason"].startswith("rate limited")
        await ws.send_json({"type": "ping"})
        with pytest.raises(Closed) as closed:
            await ws.receive_json()
    assert closed.value.code == 4429
    assert await phones.track() == []


async def test_fixes_beyond_their_rate_are_not_stored(phones: Phones) -> None:
    phones.app.state.phone_limits = PhoneLimits(fixes_per_s=0.01, fix_burst=10)
    async with phones.open() as ws:
        await ready(ws)
        await ws.send_json({"type": "fixes", "fixes": [fix(i) for i in range(1, 11)]})
        assert (await ws.receive_json())["seqs"] == list(range(1, 11))
        await ws.send_json(fix(11))
        error = await ws.receive_json()
        assert error["type"] == "error"
        assert error["retry"] is True
        await ws.send_json({"type": "ping"})  # frames are still welcome
        assert await ws.receive_json() == {"type": "pong"}
    assert len(await phones.track()) == 10


async def test_the_default_limits_let_a_phone_catch_up(phones: Phones) -> None:
    """An offline phone sends its backlog in full frames: 1,000 fixes at once pass."""
    async with phones.open() as ws:
        await ready(ws)
        for start in (1, 501):
            batch = [fix(start + i, t=T0 + 0.5 * (start + i)) for i in range(500)]
            await ws.send_json({"type": "fixes", "fixes": batch})
            ack = await ws.receive_json()
            assert ack["type"] == "ack"
            assert len(ack["seqs"]) == 500
    assert len(await phones.track()) == 1000


# -- the database fails -------------------------------------------------------------------------


async def test_a_database_failure_is_not_acknowledged_and_a_resend_is_stored(
    phones: Phones,
) -> None:
    engine = phones.app.state.engine

    async def rename(old: str, new: str) -> None:
        async with engine.begin() as conn:
            await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))

    async with phones.open() as ws:
        await ready(ws)
        await rename("fixes", "fixes_away")
        try:
            await ws.send_json(fix(1))
            error = await ws.receive_json()
        finally:
            await rename("fixes_away", "fixes")
        assert error == {"type": "error", "reason": "not stored, resend", "retry": True}
        assert await phones.track() == []

        await ws.send_json(fix(1))
        ack = await ws.receive_json()
        assert ack["seqs"] == [1]
        assert ack["duplicates"] == []
    assert len(await phones.track()) == 1
    async with phones.app.state.sessions() as session:
        trip = await session.get(Trip, phones.trip_id)
        assert trip is not None
        assert trip.monitor_state["fixes"] == 1
