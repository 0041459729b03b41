"""Crowds and laggards on one worker.

- Reconnect storm: a few hundred phones (one per trip) connect at the same instant and
  each sends a fix; then every connection drops at once, without a closing handshake (a
  cell tower going down), and every phone reconnects at the same instant and sends its
  next fix plus the one whose acknowledgement it may have missed. Every phone gets its
  acks (a clean refusal, if any, is retried); resends are stored once; the worker stays
  healthy and logs no traceback.
- A watcher that stops reading its socket while fixes flow: its queue overflows and it
  is dropped with close code 4408 ("too slow: reconnect", which it reads once it reads
  again); the phones are acknowledged all along (ingestion never waits for a watcher);
  and one that never reads again does not hold up the worker's shutdown.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fault_world import (
    SOAK,
    WAIT_S,
    LivePhone,
    Trip,
    check_stored,
    crashes,
    keep_log,
    metric,
    report,
    stored_seqs,
    worker_healthy,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from sigueme.bench.live import Worker, add_admin, create_phones, start_worker, stop_worker
from sigueme.geo import TripPlan

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

STORM = 1_000 if SOAK else 250
STREAMING = 40
DROPPED = "sigueme_live_subscribers_dropped_total"
EXIT_WITHIN_S = 15.0
"""Phones streaming while a watcher stops reading."""


@pytest.fixture
def worker(
    database: tuple[str, str], redis_url: str, police_stream: str
) -> Iterator[tuple[Worker, str]]:
    url, _ = database
    token = add_admin(url)
    w = start_worker(url, redis_url, settings={"SIGUEME_POLICE_STREAM": police_stream})
    log = ""
    try:
        yield w, token
    finally:
        log = stop_worker(w)
        keep_log("storm", log)
    assert not crashes(log), log
    assert "Traceback" not in log, log


async def _phones(w: Worker, admin_token: str, count: int) -> list[LivePhone]:
    """``count`` travellers with a trip each (on routes of their own), as phones."""
    made = await create_phones(w.http, admin_token, count)
    now = time.time()
    return [
        LivePhone(
            Trip(p.trip_id, p.token, TripPlan(p.route, departure=now - 60, arrival=now + 7200)),
            [],
            lambda: w.ws,
            gap_s=0.0,
        )
        for p in made
    ]


async def test_reconnect_storm_of_hundreds_of_phones(
    worker: tuple[Worker, str], database: tuple[str, str]
) -> None:
    w, admin_token = worker
    _, dsn = database
    phones = await _phones(w, admin_token, STORM)

    # Everyone at once: connect, send fix 1.
    started = time.monotonic()
    await asyncio.gather(*(p.stream([1]) for p in phones))
    first_s = time.monotonic() - started
    assert all(p.acked == {1} for p in phones)
    assert await asyncio.to_thread(worker_healthy, w.http)

    # Every connection cut at once (no closing handshake), then everyone back at once:
    # fix 1 again (its ack may have been lost with the connection), and fix 2.
    for p in phones:
        assert p.ws is not None
        p.ws.transport.abort()
        p.ws = None
    started = time.monotonic()
    await asyncio.gather(*(p.stream([1, 2]) for p in phones))
    second_s = time.monotonic() - started

    stored = await stored_seqs(dsn, [p.trip.id for p in phones])
    acked, stored_n = check_stored(phones, stored)
    for p in phones:
        assert p.acked == {1, 2}
        assert p.duplicates == {1}
        assert sorted(stored[p.trip.id]) == [1, 2]
    # Whatever was refused was refused cleanly (and retried): a close code, a reason.
    closes = Counter(c for p in phones for c in p.closes)
    errors = Counter(r for p in phones for r in p.errors.elements())
    assert all(code is not None for code, _ in closes), closes
    assert await asyncio.to_thread(worker_healthy, w.http)
    report(
        "reconnect storm",
        phones=STORM,
        connects=sum(p.connects for p in phones),
        frames_sent=sum(p.sent for p in phones),
        acks=sum(p.ack_frames for p in phones),
        acked_fixes=acked,
        stored=stored_n,
        duplicates=sum(len(p.duplicates) for p in phones),
        refused_closes=dict(closes),
        error_frames=dict(errors),
        first_wave_s=round(first_s, 1),
        second_wave_s=round(second_s, 1),
    )


# -- a watcher that stops reading ----------------------------------------------------------


async def _stalled_watcher(w: Worker, token: str, trips: list[str]) -> ClientConnection:
    """A watcher subscribed to ``trips`` (its snapshot read) that then reads nothing:
    its library stops taking frames off the socket once one is waiting, and its
    receive buffer is as small as the kernel allows, so the worker's writes back up at
    once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Both before connecting: a small window, and small segments (loopback's are 64 KiB,
    # and the worker's kernel grows its send buffer with them, to megabytes that take
    # a long while of updates to fill before the worker's own queue starts to).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", w.port))
    ws = await connect(
        f"{w.ws}/v1/live",
        sock=sock,
        additional_headers={"Authorization": f"Bearer {token}"},
        max_queue=1,
        ping_interval=None,
        compression=None,
        open_timeout=WAIT_S,
    )
    ready = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert ready["type"] == "ready", ready
    await ws.send(json.dumps({"type": "subscribe", "trips": trips}))
    snapshot = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    assert snapshot["type"] == "FeatureCollection", snapshot
    assert sorted(snapshot["trips"]) == sorted(trips)
    return ws


async def _read_until_closed(ws: ClientConnection) -> tuple[int, ConnectionClosed]:
    """Read everything until the connection ends: how many updates, and how it ended."""
    updates = 0
    while True:
        try:
            got: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        except ConnectionClosed as exc:
            return updates, exc
        updates += got.get("type") == "Feature"


async def test_a_watcher_that_stops_reading_is_dropped_and_holds_nothing_up(
    worker: tuple[Worker, str], database: tuple[str, str]
) -> None:
    w, admin_token = worker
    _, dsn = database
    phones = await _phones(w, admin_token, STREAMING)
    for p in phones:
        p.gap_s = 0.1  # each at 10 fixes/s, the most a phone socket takes
    trips = [p.trip.id for p in phones]
    # Two watchers stop reading: one reads again once dropped, one never does.
    watcher = await _stalled_watcher(w, admin_token, trips)
    frozen = await _stalled_watcher(w, admin_token, trips)
    stop = asyncio.Event()
    latencies: list[float] = []
    acked_while_stalled = 0
    dropped_at: list[float] = []

    async def drive(phone: LivePhone) -> None:
        nonlocal acked_while_stalled
        seq = 0
        while not stop.is_set():
            seq += 1
            sent = time.monotonic()
            await phone.stream([seq])
            latencies.append(time.monotonic() - sent)
            if not dropped_at:
                acked_while_stalled += 1

    async def watch_the_drop() -> None:
        deadline = time.monotonic() + WAIT_S
        while await asyncio.to_thread(metric, w.http, DROPPED) < 2:
            assert time.monotonic() < deadline, "the stalled watchers were not dropped"
            await asyncio.sleep(0.25)
        dropped_at.append(time.monotonic())
        # The phones go on a little while after the drop, then stop.
        await asyncio.sleep(2)
        stop.set()

    started = time.monotonic()
    try:
        await asyncio.gather(watch_the_drop(), *(drive(p) for p in phones))
    finally:
        for p in phones:
            await p.close()

    # The watcher reads again: what was on its way, then the close frame saying why.
    updates, closed = await _read_until_closed(watcher)
    assert closed.rcvd is not None, closed
    assert (closed.rcvd.code, closed.rcvd.reason) == (4408, "too slow: reconnect")

    stored = await stored_seqs(dsn, [p.trip.id for p in phones])
    acked, stored_n = check_stored(phones, stored)
    assert acked == stored_n == len(latencies)
    assert acked_while_stalled > 0
    assert await asyncio.to_thread(worker_healthy, w.http)

    # The other never reads again, and the worker is told to stop: its socket never
    # drains, but the shutdown does not wait for it for ever.
    stopping = time.monotonic()
    w.process.send_signal(signal.SIGTERM)
    try:
        exit_code: int | None = await asyncio.to_thread(w.process.wait, EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        exit_code = None
    exit_s = time.monotonic() - stopping
    frozen.transport.abort()
    assert exit_code == 0, exit_code

    latencies.sort()
    report(
        "stalled watcher",
        phones=STREAMING,
        fixes_acked=acked,
        stored=stored_n,
        acked_before_drop=acked_while_stalled,
        drop_after_s=round(dropped_at[0] - started, 1),
        updates_read_after=updates,
        ack_p50_ms=round(latencies[len(latencies) // 2] * 1000, 1),
        ack_max_ms=round(latencies[-1] * 1000, 1),
        exit_with_a_frozen_watcher_s=round(exit_s, 1),
    )
