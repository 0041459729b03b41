"""A worker SIGKILLed mid-trip, with the phone's frames in flight around the fix that
takes the trip off its route: the phone reconnects to a second worker and resends what
was not acknowledged; the trip's monitor continues from its checkpoint, so the stored
verdicts and the trip's state are exactly those of one monitor fed the same fixes in
the order they were stored; and the detour raises exactly one off-route alert, which
reaches the police stream (ARCHITECTURE.md, promises 1 to 4)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator

import asyncpg
import pytest
from fault_world import (
    WAIT_S,
    Phone,
    check_stored,
    crashes,
    cuernavaca,
    fetch,
    file_trips,
    first_event,
    journey,
    keep_log,
    past_departure,
    report,
    stored_seqs,
    until,
)
from redis import Redis

from sigueme.bench.live import Worker, add_admin, start_worker, stop_worker
from sigueme.cli.main import Scenario
from sigueme.geo import TripMonitor

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

BURST = 6
"""Frames in flight when the worker is killed."""


@pytest.fixture
def workers(
    database: tuple[str, str], redis_url: str, police_stream: str
) -> Iterator[tuple[Worker, Worker, str]]:
    url, _ = database
    token = add_admin(url)
    settings = {"SIGUEME_POLICE_STREAM": police_stream}
    started: list[Worker] = []
    logs: list[str] = []
    try:
        started.append(start_worker(url, redis_url, settings=settings))
        started.append(start_worker(url, redis_url, settings=settings))
        yield started[0], started[1], token
    finally:
        logs = [stop_worker(w) for w in started]
        for k, log in enumerate(logs):
            keep_log(f"kill-{k}", log)
    assert not crashes(logs[1]), logs[1]  # the survivor


def _close(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) <= 1e-6 * max(1.0, abs(b))


async def test_worker_killed_mid_trip_loses_no_state_and_doubles_no_alert(
    workers: tuple[Worker, Worker, str],
    database: tuple[str, str],
    redis_url: str,
    police_stream: str,
) -> None:
    doomed, survivor, admin_token = workers
    _, dsn = database
    route = cuernavaca()
    departure = past_departure()
    [trip] = await asyncio.to_thread(
        file_trips,
        doomed.http,
        admin_token,
        route,
        1,
        departure=departure,
    )
    fixes = journey(route, Scenario.detour, start_t=departure + 60, seed=3)
    n = len(fixes)
    off_seq = first_event(trip.plan, fixes, "off_route")
    killed = False

    def base() -> str:
        return survivor.ws if killed else doomed.ws

    phone = Phone(trip, fixes, base, window=1, gap_s=0.1)
    in_flight: list[int] = []

    async def kill_around_the_detour() -> None:
        nonlocal killed
        await until(lambda: len(phone.acked) >= off_seq - BURST // 2, "the detour is near")
        before = len(phone.acked)
        phone.window, phone.gap_s = BURST, 0.0
        # Killed in the middle of the burst: once the worker has committed two of its
        # frames (whose acks may or may not have left), with the others still to do.
        conn = await asyncpg.connect(dsn)
        try:
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                count = await conn.fetchval(
                    "SELECT count(*) FROM fixes WHERE trip_id = $1", trip.id
                )
                if count >= before + 2:
                    break
        finally:
            doomed.process.send_signal(signal.SIGKILL)
            await conn.close()
        in_flight.append(phone.sent - len(phone.acked))
        killed = True
        await asyncio.to_thread(doomed.process.wait, 30)
        phone.window, phone.gap_s = 1, 0.1

    try:
        await asyncio.gather(kill_around_the_detour(), phone.stream(range(1, n + 1)))
    finally:
        await phone.close()

    assert doomed.process.returncode == -signal.SIGKILL
    assert phone.connects == 2
    assert phone.acked == set(range(1, n + 1))

    # Stored once each; the acknowledged ones among them.
    stored = await stored_seqs(dsn, [trip.id])
    check_stored([phone], stored)
    assert sorted(stored[trip.id]) == list(range(1, n + 1))

    # One monitor, in this process, fed the fixes in the order the workers stored them.
    rows = await fetch(
        dsn,
        "SELECT seq, verdict, distance_m, progress_m FROM fixes WHERE trip_id = $1 ORDER BY id",
        trip.id,
    )
    monitor = TripMonitor(trip.plan)
    kinds: list[str] = []
    for row in rows:
        ev = monitor.update(fixes[row["seq"] - 1])
        assert row["verdict"] == ev.verdict.value, row["seq"]
        if row["verdict"] == "accepted":
            assert _close(row["distance_m"], ev.distance_m), row["seq"]
            assert _close(row["progress_m"], ev.progress_m), row["seq"]
        kinds += [e.kind.value for e in ev.events]
    assert kinds.count("off_route") == 1
    [state] = await fetch(
        dsn, "SELECT monitor_state, route_status FROM trips WHERE id = $1", trip.id
    )
    saved = state["monitor_state"]
    assert (json.loads(saved) if isinstance(saved, str) else saved) == monitor.state.to_dict()
    assert state["route_status"] == monitor.state.status.value

    # Exactly one off-route alert, raised once, and on the police stream.
    alerts = await fetch(
        dsn, "SELECT id, kind, count FROM alerts WHERE trip_id = $1 ORDER BY opened_at", trip.id
    )
    assert [(a["kind"], a["count"]) for a in alerts] == [("off_route", 1)], alerts
    raised = await fetch(
        dsn,
        "SELECT count(*) AS n FROM alert_history WHERE alert_id = $1 AND action = 'raised'",
        alerts[0]["id"],
    )
    assert raised[0]["n"] == 1
    deadline = time.monotonic() + WAIT_S  # a change the dead worker had leased waits 30 s
    entries: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        with Redis.from_url(redis_url, decode_responses=True) as r:
            entries = [f for _, f in r.xrange(police_stream)]
        if any(e["alert_id"] == alerts[0]["id"] and e["event"] == "raised" for e in entries):
            break
        await asyncio.sleep(0.5)
    on_stream = [e for e in entries if e["alert_id"] == alerts[0]["id"]]
    assert [e["event"] for e in on_stream].count("raised") >= 1
    outbox = await fetch(dsn, "SELECT id FROM alert_outbox WHERE alert_id = $1", alerts[0]["id"])
    assert {str(r["id"]) for r in outbox} >= {e["outbox_id"] for e in on_stream}

    report(
        "sigkill",
        fixes=n,
        off_route_at=off_seq,
        in_flight_at_kill=in_flight[0],
        frames_sent=phone.sent,
        acks=phone.ack_frames,
        stored=len(stored[trip.id]),
        resent=phone.sent - n,
        duplicates=len(phone.duplicates),
        off_route_alerts=len(alerts),
        stream_entries_of_it=len(on_stream),
    )
