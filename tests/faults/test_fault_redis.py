"""Redis killed (SIGKILL) while phones stream fixes through one worker, then started
again: the database is the truth, so fixes go on being acknowledged (live publishing
is best-effort) and never acknowledged unless stored; an SOS and an off-route alert
raised while Redis is down are committed at once, wait in the outbox, and reach the
police stream once Redis is back (ARCHITECTURE.md, promise 1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fault_world import (
    SOAK,
    WAIT_S,
    Phone,
    PrivateRedis,
    check_stored,
    crashes,
    cuernavaca,
    fetch,
    file_trips,
    first_event,
    journey,
    keep_log,
    metric,
    past_departure,
    report,
    stored_seqs,
)
from redis import Redis

from sigueme.bench.live import Worker, add_admin, start_worker, stop_worker
from sigueme.cli.main import Scenario

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

PHONES = 12 if SOAK else 4
STREAM = "sigueme:police"


@pytest.fixture
def redis_server(scratch_root: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(scratch_root, aof=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker(database: tuple[str, str], redis_server: PrivateRedis) -> Iterator[tuple[Worker, str]]:
    url, _ = database
    token = add_admin(url)
    w = start_worker(url, redis_server.url, settings={"SIGUEME_POLICE_STREAM": STREAM})
    log = ""
    try:
        yield w, token
    finally:
        log = stop_worker(w)
        keep_log("redis", log)
    assert not crashes(log), log


def _stream_entries(redis_url: str) -> list[dict[str, str]]:
    with Redis.from_url(redis_url, decode_responses=True, socket_timeout=5) as r:
        return [fields for _, fields in r.xrange(STREAM)]


async def test_redis_killed_and_restarted_loses_no_fix_and_no_alert(
    worker: tuple[Worker, str], database: tuple[str, str], redis_server: PrivateRedis
) -> None:
    w, admin_token = worker
    _, dsn = database
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
    # Phone 0 takes a 600 m detour; the others drive the route; phone 1 will press SOS.
    scenarios = [Scenario.detour] + [Scenario.normal] * (PHONES - 1)
    fixes = [journey(route, s, start_t=departure + 60, seed=k) for k, s in enumerate(scenarios)]
    n = min(len(f) for f in fixes)
    off_seq = first_event(trips[0].plan, fixes[0], "off_route")
    down_from, down_to = off_seq - 3, off_seq + 3  # streamed while Redis is down
    sos_seq = down_to + 1  # phone 1's SOS carries its fix down_to + 1
    phones = [Phone(t, f[:n], lambda: w.ws) for t, f in zip(trips, fixes, strict=True)]

    async def everyone(first: int, last: int) -> None:
        await asyncio.gather(*(p.stream(range(first, last + 1)) for p in phones))

    try:
        await everyone(1, down_from - 1)

        await asyncio.to_thread(redis_server.kill)
        await everyone(down_from, down_to)
        sos = await phones[1].sos(sos_seq)
        async with httpx.AsyncClient(base_url=w.http, timeout=10) as client:
            ready = (await client.get("/readyz")).json()
        # While Redis is down: both alerts are committed, waiting in the outbox.
        waiting = await fetch(
            dsn,
            "SELECT a.kind, o.event, o.published_at, o.attempts FROM alert_outbox o "
            "JOIN alerts a ON a.id = o.alert_id",
        )
        await asyncio.to_thread(redis_server.start)

        await everyone(down_to + 1, n)
    finally:
        for p in phones:
            await p.close()

    assert ready["status"] == "degraded", ready
    # The phone of the detour was told of it (in the ack of the fix that took it off the
    # route) while Redis was down.
    assert {"seq": off_seq, "kind": "off_route"} in phones[0].acks[off_seq]["events"]
    raised_while_down = [r for r in waiting if r["event"] == "raised"]
    assert sorted(r["kind"] for r in raised_while_down) == ["off_route", "sos"], waiting
    assert all(r["published_at"] is None for r in raised_while_down), waiting

    # Every fix acknowledged exactly once stored; nothing acknowledged that is not.
    stored = await stored_seqs(dsn, [t.id for t in trips])
    acked, stored_n = check_stored(phones, stored)
    for p in phones:
        assert sorted(stored[p.trip.id]) == list(range(1, n + 1))
        assert p.acked == set(range(1, n + 1))
    assert acked == stored_n == PHONES * n
    assert sum(p.sent for p in phones) >= acked

    # The alerts: one SOS, one off-route, each on the police stream at least once.
    alerts = await fetch(dsn, "SELECT id, trip_id, kind FROM alerts ORDER BY opened_at")
    kinds = {(r["trip_id"], r["kind"]) for r in alerts}
    assert (trips[0].id, "off_route") in kinds
    assert (trips[1].id, "sos") in kinds
    assert sos["alert_id"] in {r["id"] for r in alerts}
    assert [r["kind"] for r in alerts if r["trip_id"] == trips[0].id].count("off_route") == 1
    outbox: list[int] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        rows = await fetch(dsn, "SELECT id, published_at FROM alert_outbox")
        outbox = [r["id"] for r in rows]
        if all(r["published_at"] is not None for r in rows):
            break
        await asyncio.sleep(0.5)
    unpublished = await fetch(dsn, "SELECT id FROM alert_outbox WHERE published_at IS NULL")
    assert unpublished == [], "changes left in the outbox after Redis came back"
    entries = await asyncio.to_thread(_stream_entries, redis_server.url)
    on_stream = {int(e["outbox_id"]) for e in entries}
    assert set(outbox) <= on_stream, sorted(set(outbox) - on_stream)
    raised = {(e["alert_id"], e["kind"]) for e in entries if e["event"] == "raised"}
    assert (sos["alert_id"], "sos") in raised
    assert any(kind == "off_route" for _, kind in raised)

    lost_updates = await asyncio.to_thread(metric, w.http, "sigueme_live_publish_failures_total")
    assert lost_updates > 0  # live updates, best-effort, were lost while Redis was down
    report(
        "redis killed",
        phones=PHONES,
        frames_sent=sum(p.sent for p in phones),
        acks=sum(p.ack_frames for p in phones),
        acked_fixes=acked,
        stored=stored_n,
        during_outage=(down_to - down_from + 1) * PHONES + 1,
        error_frames=sum(sum(p.errors.values()) for p in phones),
        duplicates=sum(len(p.duplicates) for p in phones),
        live_updates_lost=int(lost_updates),
        alert_changes=len(outbox),
        stream_entries=len(entries),
        alerts=sorted(r["kind"] for r in alerts),
    )
    assert await asyncio.to_thread(lambda: httpx.get(f"{w.http}/healthz").status_code) == 200
