"""Graceful shutdown: SIGTERM to a worker while phones stream (several frames in flight
each). The fixes it was storing are stored and acknowledged, or left unacknowledged and
resent; every acknowledgement a phone received is a stored fix; each phone's connection
is closed with a close code and a reason, and the phone carries on with another worker;
the process exits 0 within its shutdown timeout, with nothing crashed in its log."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from fault_world import (
    SOAK,
    WAIT_S,
    Phone,
    check_stored,
    crashes,
    cuernavaca,
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

PHONES = 20 if SOAK else 6
BURST = 8
"""Frames each phone has in flight when the signal comes."""
EXIT_WITHIN_S = 15.0
"""``stop_worker``'s patience; the service's own shutdown timeout is shorter."""


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
            keep_log(f"shutdown-{k}", log)
    for log in logs:
        assert not crashes(log), log


async def test_sigterm_stores_or_refuses_in_flight_fixes_and_exits_cleanly(
    workers: tuple[Worker, Worker, str], database: tuple[str, str]
) -> None:
    first, second, admin_token = workers
    _, dsn = database
    route = cuernavaca()
    departure = past_departure()
    trips = await asyncio.to_thread(
        file_trips,
        first.http,
        admin_token,
        route,
        PHONES,
        departure=departure,
    )
    fixes = [journey(route, Scenario.normal, start_t=departure + 60, seed=k) for k in range(PHONES)]
    n = min(len(f) for f in fixes)

    def base() -> str:
        return first.ws if first.process.poll() is None and not terminated else second.ws

    terminated = False
    phones = [
        Phone(t, f[:n], base, window=3, gap_s=0.08) for t, f in zip(trips, fixes, strict=True)
    ]
    exit_code: int | None = None
    exit_s = 0.0
    in_flight: list[int] = []

    async def terminate_when_busy() -> None:
        nonlocal terminated, exit_code, exit_s
        await until(lambda: min(len(p.acked) for p in phones) >= n // 3, "phones streaming")
        # Each phone bursts a few frames without waiting (within the burst the service
        # allows): the signal comes while they are in flight.
        for p in phones:
            p.window, p.gap_s = BURST, 0.0
        await asyncio.sleep(0.05)
        in_flight.append(sum(p.sent for p in phones) - sum(p.ack_frames for p in phones))
        terminated = True
        start = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        for p in phones:
            p.window, p.gap_s = 3, 0.1
        try:
            exit_code = await asyncio.to_thread(first.process.wait, EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            exit_code = None
        exit_s = time.monotonic() - start

    try:
        await asyncio.gather(
            terminate_when_busy(), *(p.stream(range(1, n + 1), timeout_s=WAIT_S) for p in phones)
        )
    finally:
        for p in phones:
            await p.close()

    # The worker exited by itself, cleanly, within its timeout.
    assert exit_code == 0, (exit_code, first.log_text()[-3000:])
    # Every phone was told why its connection ended: 1012 (service restart), and a reason.
    for p in phones:
        assert p.closes, f"trip {p.trip.id}: its connection never closed"
        code, reason = p.closes[0]
        assert (code, reason) == (1012, "server shutting down: reconnect"), p.closes
    # Every acknowledgement is a stored fix; every fix stored once.
    stored = await stored_seqs(dsn, [t.id for t in trips])
    acked, stored_n = check_stored(phones, stored)
    for p in phones:
        assert sorted(stored[p.trip.id]) == list(range(1, n + 1))
    report(
        "sigterm",
        phones=PHONES,
        frames_sent=sum(p.sent for p in phones),
        acks=sum(p.ack_frames for p in phones),
        acked_fixes=acked,
        stored=stored_n,
        in_flight_at_signal=in_flight[0],
        resent=sum(p.sent for p in phones) - PHONES * n,
        resent_duplicates=sum(len(p.duplicates) for p in phones),
        exit_code=exit_code,
        exit_s=round(exit_s, 2),
        closes=sorted({str(p.closes[0]) for p in phones}),
    )
