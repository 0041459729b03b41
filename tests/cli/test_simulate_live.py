"""`sigueme simulate phones` as an operator runs it: simulated phones streaming to a real
`sigueme serve` worker (throw-away PostGIS database, Redis), and what the service then
holds: the trips, their stored fixes, the SOS and off_route alerts in the dispatchers'
queue. Also how the command refuses bad options, and the phones' plans."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from sigueme.bench.live import (
    Worker,
    add_admin,
    free_port,
    sigueme_command,
    start_worker,
    stop_worker,
    throwaway_database,
)
from sigueme.cli.main import app
from sigueme.simulate_live import Behaviour, Mix, plan_phones

SIMULATION = [
    "--phones", "5", "--deviate", "0.2", "--sos", "0.2", "--silent", "0.2", "--stop", "0",
    "--speed-up", "30", "--route-km", "3", "--seed", "1",
]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(postgres_dsn: str, redis_url: str) -> AsyncIterator[tuple[Worker, str, str]]:
    """A worker on a fresh PostGIS database and Redis (its police stream a key of its
    own), an admin's token, and an asyncpg DSN of the database. The worker must not log
    a traceback."""
    async with throwaway_database(postgres_dsn) as (url, _):
        admin = await asyncio.to_thread(add_admin, url)
        stream = f"sigueme:test:{uuid.uuid4().hex[:8]}:police"
        worker = await asyncio.to_thread(
            start_worker, url, redis_url, settings={"SIGUEME_POLICE_STREAM": stream}
        )
        try:
            yield worker, admin, make_url(url).set(drivername="postgresql").render_as_string(False)
        finally:
            log = await asyncio.to_thread(stop_worker, worker)
            client = Redis.from_url(redis_url)
            await client.delete(stream)
            await client.aclose()
    assert "Traceback" not in log, log


async def _get(worker: Worker, token: str, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=worker.http, timeout=30) as client:
        response = await client.get(
            path, params=params, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.postgis
@pytest.mark.redis
async def test_phones_stream_to_a_running_worker(server: tuple[Worker, str, str]) -> None:
    worker, admin, dsn = server
    done = await asyncio.to_thread(
        subprocess.run,
        sigueme_command(
            "simulate", "phones", "--server", worker.http, "--admin-token", admin, *SIMULATION,
            "--json",
        ),
        env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout)
    trips = {t["trip_id"]: t for t in summary["trips"]}
    by_behaviour = {t["behaviour"]: t["trip_id"] for t in summary["trips"]}
    assert summary["behaviours"] == {
        "normal": 2, "deviate": 1, "stop": 0, "silent": 1, "sos": 1
    }  # fmt: skip
    assert summary["trips_filed"] == len(trips) == 5
    assert summary["fixes_sent"] == summary["fixes_acked"] > 100
    assert summary["fixes_unacked"] == 0
    assert summary["errors"] == {}
    assert summary["sos_sent"] == summary["sos_acked"] == 1
    assert summary["alerts_raised"]["off_route"] >= 1
    assert summary["alerts_raised"]["sos"] == 1
    assert not summary["interrupted"]
    assert "streaming" in done.stderr

    # Every fix acknowledged is stored, on the trip it was sent for.
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT trip_id, count(*) AS n FROM fixes WHERE trip_id = ANY($1::text[]) "
            "GROUP BY trip_id",
            list(trips),
        )
    finally:
        await conn.close()
    assert {r["trip_id"]: r["n"] for r in rows} == {t: trips[t]["fixes"] for t in trips}

    # The trips: finished, but the silent phone's, which stays active for the watchdog.
    active = await _get(worker, admin, "/v1/trips", scope="active")
    active_ids = {t["id"] for t in active["trips"]}
    assert active_ids & set(trips) == {by_behaviour["silent"]}
    silent = await _get(worker, admin, f"/v1/trips/{by_behaviour['silent']}")
    assert silent["status"] == "active"
    normal = await _get(worker, admin, f"/v1/trips/{by_behaviour['normal']}")
    assert normal["status"] == "finished"

    # The dispatchers' queue: the SOS phone's alert, the deviating phone's off_route.
    queue = await _get(worker, admin, "/v1/alerts")
    kinds = {(a["trip"]["id"], a["kind"]) for a in queue["alerts"]}
    assert (by_behaviour["sos"], "sos") in kinds
    assert (by_behaviour["deviate"], "off_route") in kinds
    assert summary["alerts_on_server"]["sos"] == 1
    assert summary["alerts_on_server"]["off_route"] >= 1


@pytest.mark.postgis
@pytest.mark.redis
async def test_ctrl_c_stops_the_phones_and_finishes_their_trips(
    server: tuple[Worker, str, str],
) -> None:
    worker, admin, _ = server
    process = await asyncio.create_subprocess_exec(
        *sigueme_command(
            "simulate", "phones", "--server", worker.http, "--admin-token", admin,
            "--phones", "3", "--deviate", "0", "--stop", "0", "--silent", "0", "--sos", "0",
            "--json",
        ),
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        seen: list[str] = []
        while not any("streaming" in line for line in seen):
            line = await asyncio.wait_for(process.stderr.readline(), 60)
            assert line, "".join(seen)
            seen.append(line.decode())
        # Real time: each phone sends its first fix within 5 s (they start staggered).
        await asyncio.sleep(5.5)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err
    summary = json.loads(out)
    assert summary["interrupted"]
    assert summary["trips_filed"] == summary["trips_finished"] == 3
    assert summary["fixes_sent"] == summary["fixes_acked"] >= 3
    for trip in summary["trips"]:
        got = await _get(worker, admin, f"/v1/trips/{trip['trip_id']}")
        assert got["status"] == "finished"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--deviate", "0.6", "--stop", "0.6"], "add up to more than 1"),
        (["--speed-up", "500"], "use --speed-up 400 or less"),
        (["--server", "ftp://example.org"], "starts with http:// or https://"),
        (["--route", "/nonexistent/route.geojson"], "no such file"),
    ],
)
def test_bad_options_exit_2(args: list[str], needle: str) -> None:
    result = CliRunner().invoke(
        app, ["simulate", "phones", "--admin-token", "sgm_x", *args], env={}
    )
    assert result.exit_code == 2, result.output
    assert "Error:" in result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.output


def test_an_unreachable_server_is_a_clean_error() -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "phones",
            "--admin-token",
            "sgm_x",
            "--server",
            f"http://127.0.0.1:{free_port()}",
        ],
    )
    assert result.exit_code == 2, result.output
    assert "cannot reach" in result.stderr


def test_the_phones_plans() -> None:
    mix = Mix(deviate=0.1, stop=0.1, silent=0.05, sos=0.05)
    plans = plan_phones(40, mix, route_km=2.0, seed=3)
    count = {b: sum(p.behaviour is b for p in plans) for b in Behaviour}
    assert count == {
        Behaviour.NORMAL: 28, Behaviour.DEVIATE: 4, Behaviour.STOP: 4, Behaviour.SILENT: 2,
        Behaviour.SOS: 2,
    }  # fmt: skip
    for plan in plans:
        gaps = {round(b.t - a.t, 6) for a, b in zip(plan.fixes, plan.fixes[1:], strict=False)}
        assert gaps == {5.0}
        assert (plan.sos_at is not None) == (plan.behaviour is Behaviour.SOS)
        assert (plan.silent_from is not None) == (plan.behaviour is Behaviour.SILENT)
        if plan.silent_from is not None:
            assert 0 < plan.last < len(plan.fixes) - 1
    again = plan_phones(40, mix, route_km=2.0, seed=3)
    assert [p.fixes for p in again] == [p.fixes for p in plans]
    assert Mix(sos=0.01).counts(10)[Behaviour.SOS] == 0
    assert Mix(sos=0.05).counts(10)[Behaviour.SOS] == 1
