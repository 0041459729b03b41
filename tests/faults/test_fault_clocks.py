"""Phones whose clocks disagree with the server's. Device time is what a fix carries
(``t``); the server compares it with when it received the fix. What happens, per
skew (read with ``sigueme/geo/monitor.py``, whose filter gives the verdicts):

- a few minutes ahead (within ``future_seconds``, 300 s by default): accepted;
- 2 h ahead: every fix stored and acknowledged with the verdict ``future``, so the
  trip's monitor never moves (its status stays ``pending``, the map shows no
  position) and raises nothing, neither a bogus alert nor a real one;
- 3 h behind: accepted and stored at the device's times, 3 h in the past; the
  trip's last fix shows that time; nothing is raised (a schedule judged by device
  time looks early, not late);
- set right (NTP) half-way: from 2 h ahead, accepted from then on; from 4 min ahead,
  the fixes after the correction are older than the last accepted one, so they are
  ``out_of_order`` (stored, raising nothing) until real time catches up: the trip is
  blind for as long as the clock was ahead;
- a clock reset to 1980: every fix refused with an error frame naming ``t`` (the
  protocol takes 2000 to 2100), nothing stored.

In every case the phone is heard from (the watchdog's silence deadline moves on with
the time of receipt), so no ``signal_lost`` either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
import pytest
from fault_world import (
    LivePhone,
    check_stored,
    crashes,
    cuernavaca,
    fetch,
    file_trips,
    keep_log,
    report,
    stored_seqs,
)

from sigueme.bench.live import Worker, add_admin, start_worker, stop_worker

pytestmark = [pytest.mark.postgis, pytest.mark.redis]

FIXES = 24
HALF = FIXES // 2
GAP_S = 0.5
"""Real time between two fixes."""
HOUR = 3600.0
SKEWS = {"on time": 0.0, "4 min ahead": 240.0, "2 h ahead": 2 * HOUR, "3 h behind": -3 * HOUR}
CORRECTED = {"2 h ahead, then corrected": 2 * HOUR, "4 min ahead, then corrected": 240.0}
"""Clocks set right (NTP) half-way through the stream."""
RESET_CLOCK = 315_532_800.0  # 1980-01-01T00:00:00Z: a phone whose clock was reset


@dataclass(eq=False)
class ClockPhone(LivePhone):
    """A phone moving along the route in real time, stamping each fix with its own
    clock: the true time plus ``clock_offset_s``, or a clock stuck in 1980."""

    reset: bool = False
    corrected_after: int | None = None
    """The seq after which the clock is right."""

    def device_time(self, seq: int, now: float) -> float:
        if self.reset:
            return RESET_CLOCK + (now - self.t0)
        if self.corrected_after is not None and seq > self.corrected_after:
            return now
        return now + self.clock_offset_s


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
        keep_log("clocks", log)
    assert not crashes(log), log
    assert "Traceback" not in log, log


async def test_skewed_device_clocks_raise_no_bogus_alert(
    worker: tuple[Worker, str], database: tuple[str, str]
) -> None:
    w, admin_token = worker
    _, dsn = database
    route = cuernavaca()
    departure = float(int(time.time() - 60))
    count = len(SKEWS) + len(CORRECTED) + 1
    trips = await asyncio.to_thread(
        file_trips, w.http, admin_token, route, count, departure=departure
    )
    t0 = time.time()
    phones = [
        ClockPhone(trip, [], lambda: w.ws, gap_s=GAP_S, clock_offset_s=skew, t0=t0)
        for trip, skew in zip(trips, SKEWS.values(), strict=False)
    ]
    corrected = [
        ClockPhone(
            trip, [], lambda: w.ws, gap_s=GAP_S, clock_offset_s=skew, t0=t0, corrected_after=HALF
        )
        for trip, skew in zip(trips[len(SKEWS) :], CORRECTED.values(), strict=False)
    ]
    reset = ClockPhone(trips[-1], [], lambda: w.ws, gap_s=GAP_S, t0=t0, reset=True)
    everyone = [*phones, *corrected, reset]
    try:
        await asyncio.gather(*(p.stream(range(1, FIXES + 1)) for p in everyone))
    finally:
        for p in everyone:
            await p.close()

    stored = await stored_seqs(dsn, [t.id for t in trips])
    acked, stored_n = check_stored(everyone, stored)
    verdicts = {
        (r["trip_id"], r["verdict"]): r["n"]
        for r in await fetch(
            dsn,
            "SELECT trip_id, verdict, count(*) AS n FROM fixes GROUP BY trip_id, verdict",
        )
    }
    alerts = await fetch(dsn, "SELECT trip_id, kind FROM alerts")
    async with httpx.AsyncClient(base_url=w.http, timeout=30) as client:
        shown = {
            p.trip.id: (
                await client.get(
                    f"/v1/trips/{p.trip.id}",
                    headers={"Authorization": f"Bearer {p.trip.token}"},
                )
            ).json()
            for p in everyone
        }

    # Whatever the clock, no alert: not late, not off route, not silent.
    assert alerts == [], alerts
    on_time, ahead_4m, ahead_2h, behind_3h = phones
    for p in (on_time, ahead_4m, behind_3h):
        assert p.acked == set(range(1, FIXES + 1))
        assert verdicts.get((p.trip.id, "accepted"), 0) >= FIXES - 2, verdicts
        assert shown[p.trip.id]["route_status"] == "on_route"
    # 2 h ahead: stored and acknowledged, every one "future": the trip never moves.
    assert ahead_2h.acked == set(range(1, FIXES + 1))
    assert verdicts[(ahead_2h.trip.id, "future")] == FIXES
    assert shown[ahead_2h.trip.id]["route_status"] == "pending"
    assert shown[ahead_2h.trip.id]["last_fix"] is None
    # 3 h behind: the track sits 3 h in the past.
    last = datetime.fromisoformat(shown[behind_3h.trip.id]["last_fix"]["t"]).timestamp()
    assert last == pytest.approx(time.time() - 3 * HOUR, abs=120)
    # Set right half-way: from 2 h ahead, the fixes after are accepted at once; from
    # 4 min ahead, they are older than the last accepted one, "out of order", until
    # real time catches up with it (4 min: the rest of this test).
    ahead_2h_fixed, ahead_4m_fixed = corrected
    assert ahead_2h_fixed.acked == ahead_4m_fixed.acked == set(range(1, FIXES + 1))
    assert verdicts[(ahead_2h_fixed.trip.id, "future")] == HALF
    assert verdicts[(ahead_2h_fixed.trip.id, "accepted")] == FIXES - HALF
    assert shown[ahead_2h_fixed.trip.id]["route_status"] == "on_route"
    assert verdicts[(ahead_4m_fixed.trip.id, "accepted")] == HALF
    assert verdicts[(ahead_4m_fixed.trip.id, "out_of_order")] == FIXES - HALF
    # A clock in 1980: refused, with the reason, and nothing stored.
    assert reset.acked == set()
    assert stored[reset.trip.id] == []
    assert len(reset.refusals) == FIXES
    assert {(e["field"], e["reason"]) for e in reset.refusals} == {
        ("t", "is not between 2000 and 2100")
    }, reset.refusals[0]

    report(
        "clocks",
        fixes_per_phone=FIXES,
        acked=acked,
        stored=stored_n,
        verdicts={
            name: {v: n for (t, v), n in verdicts.items() if t == p.trip.id}
            for name, p in zip([*SKEWS, *CORRECTED], [*phones, *corrected], strict=True)
        },
        reset_clock_refused=len(reset.refusals),
        alerts=len(alerts),
    )
