"""Many workers, one truth per trip (ARCHITECTURE.md, promise 3): two real `sigueme serve`
processes on one PostGIS database and Redis, one trip whose fixes alternate between
them. Whatever worker gets a fix, the trip's monitor decides exactly as one monitor
fed the same fixes in the same order would.

Two ways of alternating: one phone connection per worker, fix 1 to A, fix 2 to B, ...
each waiting for its ack; and both connections sending at the same time (fixes 2k+1
and 2k+2 written together, the two acks awaited together), so the two workers race
for the trip's row. In the racing variant the order the fixes were evaluated in is the
order they were stored in (their row ids: a fix is inserted while its trip's row is
locked), and the single monitor is fed that order.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect

from sigueme.bench.live import Worker, add_admin, start_worker, stop_worker
from sigueme.cli.main import Scenario, scenario_moves
from sigueme.geo import Evaluation, Fix, TripMonitor, TripPlan, Verdict
from sigueme.replay import parse_route
from sigueme.simulate import Noise, simulate

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

SAMPLES = Path(__file__).parents[2] / "sigueme" / "replay" / "samples"
SEED = 3
INTERVAL_S = 5.0
FRAME_GAP_S = 0.1


def _async_url(dsn: str, database: str) -> str:
    base = dsn.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{base}/{database}"


def _plain_dsn(dsn: str, database: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + database


@pytest_asyncio.fixture(loop_scope="session")
async def database(postgres_dsn: str, postgis_template: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh, migrated PostGIS database: (SQLAlchemy URL, asyncpg DSN)."""
    name = f"sigueme_two_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgis_template}"')
        yield _async_url(postgres_dsn, name), _plain_dsn(postgres_dsn, name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def workers(database: tuple[str, str], redis_url: str) -> Iterator[tuple[Worker, Worker, str]]:
    """Two worker processes on the database and Redis, and an admin's token. Both are
    stopped at the end, also when the test fails; neither may log a traceback."""
    url, _ = database
    token = add_admin(url)
    started: list[Worker] = []
    logs: list[str] = []
    try:
        started.append(start_worker(url, redis_url))
        started.append(start_worker(url, redis_url))
        yield started[0], started[1], token
    finally:
        logs = [stop_worker(w) for w in started]
    for log in logs:
        assert "Traceback" not in log, log


@dataclass(frozen=True)
class Journey:
    trip_id: str
    token: str
    plan: TripPlan
    fixes: list[Fix]


def _journey(http: str, admin_token: str) -> Journey:
    """A traveller enrolled by the admin, a trip filed on the sample route through
    Cuernavaca, and the phone's fixes along it with a 600 m detour (fixed seed)."""
    route = parse_route((SAMPLES / "cuernavaca_route.geojson").read_bytes())
    now = datetime.now(UTC).timestamp()
    departure = float(int(now - 3 * 3600))
    duration_min = 40.0
    with httpx.Client(base_url=http, timeout=30) as client:
        user = client.post(
            "/v1/users",
            headers={"Authorization": f"Bearer {admin_token}"},
            json={"name": f"viajera-{uuid.uuid4().hex[:6]}", "role": "traveller"},
        )
        assert user.status_code == 201, user.text
        token = user.json()["token"]
        trip = client.post(
            "/v1/trips",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "route": {"type": "LineString", "coordinates": route.lonlat.tolist()},
                "departure": datetime.fromtimestamp(departure, UTC).isoformat(),
                "duration_min": duration_min,
                "label": "Dos trabajadores",
            },
        )
        assert trip.status_code == 201, trip.text
    plan = TripPlan(route, departure=departure, arrival=departure + duration_min * 60)
    fixes = simulate(
        route,
        scenario_moves(Scenario.detour, route.length_m),
        start_t=departure + 60,
        interval_s=INTERVAL_S,
        noise=Noise(noise_m=8.0),
        seed=SEED,
    )
    return Journey(trip.json()["id"], token, plan, fixes)


def _frame(seq: int, fix: Fix) -> str:
    return json.dumps(
        {
            "type": "fix",
            "seq": seq,
            "t": fix.t,
            "lat": fix.lat,
            "lon": fix.lon,
            "accuracy": fix.accuracy,
            "speed": fix.speed,
            "battery": fix.battery,
        }
    )


async def _open(worker: Worker, journey: Journey) -> ClientConnection:
    ws = await connect(
        f"{worker.ws}/v1/trips/{journey.trip_id}/phone",
        additional_headers={"Authorization": f"Bearer {journey.token}"},
        open_timeout=30,
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert ready["type"] == "ready", ready
    return ws


async def _send(ws: ClientConnection, seq: int, fix: Fix) -> dict[str, Any]:
    """Send one fix and return its ack (anything else fails the test)."""
    await ws.send(_frame(seq, fix))
    ack: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
    assert ack["type"] == "ack", ack
    assert ack["seqs"] == [seq], ack
    assert ack["duplicates"] == [], ack
    return ack


async def _stream(
    a: Worker, b: Worker, journey: Journey, *, together: bool
) -> list[dict[str, Any]]:
    """Every fix (seq = its index + 1) to A or B in turn; the acks, by seq."""
    ws_a, ws_b = await _open(a, journey), await _open(b, journey)
    acks: dict[int, dict[str, Any]] = {}
    try:
        pairs = [
            [(ws, seq, fix) for ws, (seq, fix) in zip((ws_a, ws_b), chunk, strict=False)]
            for chunk in (
                list(enumerate(journey.fixes, start=1))[i : i + 2]
                for i in range(0, len(journey.fixes), 2)
            )
        ]
        for pair in pairs:
            if together:
                answers = await asyncio.gather(*(_send(ws, seq, fix) for ws, seq, fix in pair))
            else:
                answers = [await _send(ws, seq, fix) for ws, seq, fix in pair]
            for (_, seq, _), ack in zip(pair, answers, strict=True):
                assert seq not in acks
                acks[seq] = ack
            # A phone connection may send 10 frames/s (burst 50): stay under it.
            await asyncio.sleep(FRAME_GAP_S)
    finally:
        await ws_a.close()
        await ws_b.close()
    assert sorted(acks) == list(range(1, len(journey.fixes) + 1))
    return [acks[s] for s in sorted(acks)]


async def _stored(dsn: str, trip_id: str) -> tuple[list[asyncpg.Record], dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT seq, verdict, distance_m, progress_m FROM fixes WHERE trip_id = $1 ORDER BY id",
            trip_id,
        )
        state = await conn.fetchval("SELECT monitor_state FROM trips WHERE id = $1", trip_id)
    finally:
        await conn.close()
    return rows, json.loads(state) if isinstance(state, str) else state


def _close(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


@pytest.mark.parametrize("together", [False, True], ids=["alternating", "racing"])
async def test_fixes_of_one_trip_alternate_between_two_workers(
    workers: tuple[Worker, Worker, str], database: tuple[str, str], together: bool
) -> None:
    a, b, admin_token = workers
    journey = await asyncio.to_thread(_journey, a.http, admin_token)
    assert len(journey.fixes) > 100

    acks = await _stream(a, b, journey, together=together)

    # Every fix acknowledged once (checked in _stream) and stored once.
    rows, state = await _stored(database[1], journey.trip_id)
    order = [r["seq"] for r in rows]
    assert sorted(order) == list(range(1, len(journey.fixes) + 1))
    if not together:
        assert order == list(range(1, len(journey.fixes) + 1))

    # One monitor, in this process, fed the fixes in the order the workers evaluated them.
    monitor = TripMonitor(journey.plan)
    expected_events: list[tuple[int, str]] = []
    newest: Evaluation | None = None
    for row in rows:
        seq = row["seq"]
        ev = monitor.update(journey.fixes[seq - 1])
        assert row["verdict"] == ev.verdict.value, seq
        if ev.verdict is Verdict.ACCEPTED:
            newest = ev
            assert _close(row["distance_m"], ev.distance_m), seq
            assert _close(row["progress_m"], ev.progress_m), seq
        expected_events += [(seq, e.kind.value) for e in ev.events]
    kinds = [kind for _, kind in expected_events]
    assert kinds.count("off_route") == 1
    assert kinds.count("back_on_route") == 1
    assert kinds.index("off_route") < kinds.index("back_on_route")

    # The events in the acks, in the order they were raised, are the monitor's.
    by_seq = {
        seq: [(e["seq"], e["kind"]) for e in ack["events"]] for seq, ack in enumerate(acks, 1)
    }
    got_events = [event for seq in order for event in by_seq[seq]]
    assert got_events == expected_events

    # The trip's final state: the checkpoint is the monitor's, and GET shows it.
    assert state == monitor.state.to_dict()
    assert newest is not None
    last = max(
        (journey.fixes[r["seq"] - 1] for r in rows if r["verdict"] == "accepted"),
        key=lambda f: f.t,
    )
    async with httpx.AsyncClient(base_url=b.http, timeout=30) as client:
        got = await client.get(
            f"/v1/trips/{journey.trip_id}",
            headers={"Authorization": f"Bearer {journey.token}"},
        )
    assert got.status_code == 200, got.text
    trip = got.json()
    assert trip["status"] == "active"
    assert trip["route_status"] == monitor.state.status.value
    assert trip["last_fix"]["position"]["coordinates"] == pytest.approx([last.lon, last.lat])
    assert datetime.fromisoformat(trip["last_fix"]["t"]).timestamp() == pytest.approx(last.t)
    assert trip["last_fix"]["off_route_m"] == pytest.approx(newest.distance_m)
    assert trip["progress"]["m"] == pytest.approx(newest.progress_m)
    predicted = datetime.fromisoformat(trip["predicted_arrival"]).timestamp()
    assert predicted == pytest.approx(newest.predicted_arrival, abs=1e-3)
    assert acks[-1]["status"]["route_status"] == monitor.state.status.value
