"""PostgreSQL restarted under load (``pg_ctl restart -m fast`` of a cluster of this
test's own): the worker recovers by itself (its pool checks connections before use),
phones get ``{"type": "error", "reason": "not stored, resend", "retry": true}`` while
the database is away and resend; in the end every acknowledged fix is stored, nothing
is acknowledged that is not, and resends are stored once (ARCHITECTURE.md, promises 1
and 2)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fault_world import (
    SOAK,
    WAIT_S,
    Phone,
    PrivatePostgres,
    check_stored,
    crashes,
    cuernavaca,
    fetch,
    file_trips,
    journey,
    keep_log,
    past_departure,
    report,
    stored_seqs,
    until,
)

from sigueme.bench.live import Worker, add_admin, start_worker, stop_worker
from sigueme.cli.main import Scenario

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

PHONES = 16 if SOAK else 6
RESTARTS = 5 if SOAK else 1
EXIT_WITHIN_S = 15.0
DOWN_S = 12.0
"""The long outage: more than the 10 s after which a phone socket checks its token."""


@pytest_asyncio.fixture(loop_scope="session")
async def cluster(scratch_root: Path) -> AsyncIterator[PrivatePostgres]:
    pg = PrivatePostgres(scratch_root)
    try:
        await asyncio.to_thread(pg.start)
        await pg.create_database()
        yield pg
    finally:
        await asyncio.to_thread(pg.stop)


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    cluster: PrivatePostgres, redis_url: str, police_stream: str
) -> AsyncIterator[tuple[Worker, str]]:
    token = await asyncio.to_thread(add_admin, cluster.url)
    w = await asyncio.to_thread(
        start_worker, cluster.url, redis_url, settings={"SIGUEME_POLICE_STREAM": police_stream}
    )
    log = ""
    try:
        yield w, token
    finally:
        log = await asyncio.to_thread(stop_worker, w)
        keep_log("postgres", log)
    assert not crashes(log), log


async def _ready(http: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=http, timeout=10) as client:
        answer = await client.get("/readyz")
    return dict(answer.json())


async def test_postgres_restarted_under_load_loses_and_invents_nothing(
    worker: tuple[Worker, str], cluster: PrivatePostgres
) -> None:
    w, admin_token = worker
    route = cuernavaca()
    departure = past_departure()
    trips = await asyncio.to_thread(
        file_trips,
        w.http,
        admin_token,
        route,
        PHONES,
        departure=departure,
    )
    fixes = [journey(route, Scenario.normal, start_t=departure + 60, seed=k) for k in range(PHONES)]
    n = min(len(f) for f in fixes)
    # Two frames in flight per phone: a restart catches fixes in every stage.
    phones = [Phone(t, f[:n], lambda: w.ws, window=2) for t, f in zip(trips, fixes, strict=True)]
    restarted_at: list[int] = []
    down_ready: list[dict[str, str]] = []

    async def when_acked(goal: int) -> None:
        await until(lambda: min(len(p.acked) for p in phones) >= goal, "phones streaming")

    async def faults() -> None:
        for k in range(RESTARTS):
            # Restarts spread over the first half of the journeys, every phone streaming.
            await when_acked((k + 1) * n // (RESTARTS + 3))
            restarted_at.append(sum(len(p.acked) for p in phones))
            await asyncio.to_thread(cluster.restart)
        # Then away for longer than a phone socket goes without checking its token
        # again (10 s), while one phone drops its connection and opens a new one.
        await when_acked((RESTARTS + 1) * n // (RESTARTS + 3))
        await asyncio.to_thread(cluster.down)
        await asyncio.sleep(1)
        if phones[0].ws is not None:
            await phones[0].ws.close()
        await asyncio.sleep(DOWN_S - 1)
        down_ready.append(await _ready(w.http))
        await asyncio.to_thread(cluster.up)

    try:
        await asyncio.gather(
            faults(), *(p.stream(range(1, n + 1), timeout_s=WAIT_S) for p in phones)
        )
    finally:
        for p in phones:
            await p.close()

    assert len(restarted_at) == RESTARTS
    assert down_ready[0]["status"] == "unavailable", down_ready
    stored = await stored_seqs(cluster.dsn, [t.id for t in trips])
    acked, stored_n = check_stored(phones, stored)
    for p in phones:
        assert p.acked == set(range(1, n + 1)), p.trip.id
        assert sorted(stored[p.trip.id]) == list(range(1, n + 1)), p.trip.id
    # What the phones were told while the database was away: resend (never anything else).
    errors = sum((p.errors for p in phones), start=Counter[str]())
    assert set(errors) == {"not stored, resend"}, errors
    assert all(not p.refusals for p in phones)
    # ... and the phone that reconnected meanwhile: try again later.
    assert (1013, "database unavailable: reconnect") in phones[0].closes, phones[0].closes
    # The trips' checkpoints moved with their fixes: the last accepted one is the newest.
    rows = await fetch(
        cluster.dsn,
        "SELECT t.id, t.last_fix_at, (SELECT max(f.t) FROM fixes f WHERE f.trip_id = t.id "
        "AND f.verdict = 'accepted') AS newest FROM trips t WHERE t.id = ANY($1::text[])",
        [t.id for t in trips],
    )
    assert all(r["last_fix_at"] == r["newest"] for r in rows), rows

    # The worker recovered by itself.
    assert (await _ready(w.http))["status"] == "ok"

    # Stopped while the database is away (a supervisor restarting everything): it still
    # exits cleanly, in time.
    await asyncio.to_thread(cluster.down)
    stopping = time.monotonic()
    w.process.send_signal(signal.SIGTERM)
    try:
        exit_code: int | None = await asyncio.to_thread(w.process.wait, EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        exit_code = None
    exit_s = time.monotonic() - stopping
    await asyncio.to_thread(cluster.up)
    assert exit_code == 0, (exit_code, w.log_text()[-2000:])
    report(
        "postgres restarted",
        phones=PHONES,
        restarts=RESTARTS,
        outage_s=DOWN_S,
        frames_sent=sum(p.sent for p in phones),
        acks=sum(p.ack_frames for p in phones),
        acked_fixes=acked,
        stored=stored_n,
        resend_errors=sum(errors.values()),
        duplicates=sum(len(p.duplicates) for p in phones),
        reconnects=sum(p.connects - 1 for p in phones),
        closes=sorted({str(c) for p in phones for c in p.closes}),
        exit_with_database_down_s=round(exit_s, 1),
    )
