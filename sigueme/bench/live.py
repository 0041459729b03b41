"""``sigueme bench live``: fixes per second one worker acknowledges, and how long a phone
waits for each acknowledgement, over real websockets.

The benchmark starts one ``sigueme serve`` worker process on a throw-away PostGIS
database (created on the server of ``--postgres-dsn``, migrated, dropped afterwards)
and, when given, Redis. It enrols ``--phones`` travellers through the API (as an admin
made with ``sigueme users add``), each files a trip on a route of its own in Morelos,
and each traveller's phone opens the trip's websocket (``/v1/trips/{id}/phone``) from
this process. One warm-up fix per phone fills the worker's plan cache.

Then, for each target rate, the phones send fixes on a fixed schedule (open loop: a
fix is sent when it is due, whether or not the earlier ones were acknowledged), one fix
per frame, spread evenly over the phones and over time, for ``--seconds``. A fix's
latency runs from just before its frame is written to the arrival of the ``ack`` that
lists its ``seq`` (the worker sends it after the commit). Reported per rate: fixes sent
and acknowledged, acknowledged fixes per second (acks received within the window,
divided by its length), ack latency p50/p99/max, errors (error frames, and fixes still
unacknowledged ``DRAIN_S`` after the window), and the CPU used by the worker process,
by this driver process, and by the whole machine (PostgreSQL's share is the rest). A
driver that used nearly a whole core is flagged: its figures are then the driver's
limit as much as the worker's.

Everything here talks to the service as a phone and an operator would (subprocesses,
HTTP, websockets); nothing imports the service's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

import asyncpg
import httpx
import numpy as np
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sigueme.bench.geo import machine
from sigueme.bench.workload import wiggly_route
from sigueme.geo import Route
from sigueme.simulate_live import ServiceError, dumps, enrol, file_trip, fix_dict, open_phone
from sigueme.store.db import upgrade_async

PHONE_FRAMES_PER_S: Final = 10.0
"""The service's limit of frames per second and phone connection (PhoneLimits)."""
PHONE_FRAME_BURST: Final = 50.0
"""... and the burst it allows."""
DRAIN_S: Final = 10.0
"""After a rate's window, how long to wait for the acks still due."""
START_TIMEOUT_S: Final = 60.0
SPEED_MPS: Final = 12.0
NOISE_M: Final = 3.0
ROUTE_VERTICES: Final = 60
ROUTE_LENGTH_M: Final = 15_000.0
SATURATED_CPU: Final = 0.9
"""A driver that used this share of a core or more may have held the load back."""
SETUP_CONCURRENCY: Final = 16
CONNECT_CONCURRENCY: Final = 64


BenchError = ServiceError
"""The benchmark could not run (a server refused, the worker died): the reason."""


# -- the worker process ------------------------------------------------------------------


def sigueme_command(*args: str) -> list[str]:
    """The command line of ``sigueme ARGS...`` in this interpreter."""
    return [sys.executable, "-c", "from sigueme.cli.main import app; app()", *args]


def service_env(
    database_url: str, redis_url: str | None = None, settings: Mapping[str, str] | None = None
) -> dict[str, str]:
    """This process's environment without SIGUEME_* settings, plus the database (and
    Redis when given) and ``settings`` (more ``SIGUEME_*`` variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGUEME_")}
    env["SIGUEME_DATABASE_URL"] = database_url
    if redis_url:
        env["SIGUEME_REDIS_URL"] = redis_url
    env.update(settings or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Worker:
    """A running ``sigueme serve``: its process and where it listens."""

    process: subprocess.Popen[bytes]
    port: int
    log: IO[bytes]

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the worker process has used so far."""
        return process_cpu_seconds(self.process.pid)


def start_worker(
    database_url: str,
    redis_url: str | None = None,
    *,
    log_level: str = "warning",
    settings: Mapping[str, str] | None = None,
) -> Worker:
    """Start ``sigueme serve`` on a free loopback port and wait until ``/healthz``
    answers. Its output goes to a temporary file (:meth:`Worker.log_text`); ``settings``
    are more ``SIGUEME_*`` variables for it."""
    port = free_port()
    log = tempfile.TemporaryFile("a+b")  # noqa: SIM115  (closed by stop_worker; appends)
    process = subprocess.Popen(
        sigueme_command("serve", "--port", str(port), "--log-level", log_level),
        env=service_env(database_url, redis_url, settings),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = Worker(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            text = worker.log_text()
            log.close()
            raise BenchError(f"sigueme serve exited ({process.returncode}):\n{text}")
        try:
            if httpx.get(f"{worker.http}/healthz", timeout=1).status_code == 200:
                return worker
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_worker(worker)
            raise BenchError(f"sigueme serve did not answer /healthz in {START_TIMEOUT_S:g} s")
        time.sleep(0.1)


def stop_worker(worker: Worker, timeout_s: float = 15.0) -> str:
    """Stop the worker (SIGTERM, then SIGKILL after ``timeout_s``); its output."""
    if worker.process.poll() is None:
        worker.process.terminate()
        try:
            worker.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    text = worker.log_text()
    worker.log.close()
    return text


@contextlib.contextmanager
def running_worker(database_url: str, redis_url: str | None = None) -> Iterator[Worker]:
    worker = start_worker(database_url, redis_url)
    try:
        yield worker
    finally:
        stop_worker(worker)


def add_admin(database_url: str, name: str = "bench-admin") -> str:
    """Enrol an admin with ``sigueme users add`` and return their token."""
    done = subprocess.run(
        sigueme_command("users", "add", name, "--role", "admin"),
        env=service_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"sigueme users add failed: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of the line; 12 and 13 after "pid (comm) ".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


# -- a throw-away database -------------------------------------------------------------------


@contextlib.asynccontextmanager
async def throwaway_database(dsn: str) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """A fresh database on the server of ``dsn``, migrated: its SQLAlchemy URL and the
    server's version and durability settings. Dropped afterwards."""
    name = f"sigueme_bench_{uuid.uuid4().hex[:12]}"
    url = make_url(dsn).set(drivername="postgresql+asyncpg", database=name)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url_text = url.render_as_string(hide_password=False)
            await upgrade_async(url_text)
            row = await admin.fetchrow(
                "SELECT current_setting('server_version') AS v, "
                "current_setting('fsync') AS fsync, "
                "current_setting('synchronous_commit') AS sc"
            )
            assert row is not None
            info = {
                "postgresql": str(row["v"]),
                "fsync": str(row["fsync"]),
                "synchronous_commit": str(row["sc"]),
            }
            yield url_text, info
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# -- travellers, trips and their phones ---------------------------------------------------------


@dataclass(eq=False)
class Phone:
    """One simulated phone: its trip, its route, its connection and what awaits an ack."""

    index: int
    trip_id: str
    token: str
    route: Route
    t0: float
    """When it set off (epoch seconds): it drives the route at SPEED_MPS since."""
    ws: ClientConnection | None = None
    seq: int = 0
    pending: dict[int, float] = field(default_factory=dict)
    """seq -> perf_counter() when sent."""

    def fix_frame(self, t: float, rng: random.Random) -> tuple[int, str]:
        """The next fix (its seq and frame) at epoch time ``t``, where the phone is then."""
        self.seq += 1
        lon, lat = self.route.point_at((t - self.t0) * SPEED_MPS)
        lat += rng.gauss(0.0, NOISE_M) / 111_320.0
        lon += rng.gauss(0.0, NOISE_M) / (111_320.0 * math.cos(math.radians(lat)))
        fix = fix_dict(self.seq, t, lat, lon, accuracy=NOISE_M * 2, speed=SPEED_MPS, battery=80)
        return self.seq, dumps({"type": "fix", **fix})


async def create_phones(http: str, admin_token: str, count: int, seed: int = 11) -> list[Phone]:
    """``count`` travellers enrolled by the admin, each with an active trip filed through
    the API on a route of its own."""
    rng = np.random.default_rng(seed)
    routes = [wiggly_route(rng, ROUTE_VERTICES, ROUTE_LENGTH_M) for _ in range(count)]
    departure = time.time() - 60.0
    run = uuid.uuid4().hex[:6]
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(client: httpx.AsyncClient, k: int) -> Phone:
        async with limit:
            token = await enrol(client, admin_token, f"bench-{run}-{k}")
            route = routes[k]
            trip_id = await file_trip(
                client,
                token,
                route,
                departure=departure,
                arrival=departure + route.length_m / SPEED_MPS * 1.5 + 600.0,
                label=f"bench {k}",
            )
            return Phone(k, trip_id, token, route, t0=time.time())

    async with httpx.AsyncClient(base_url=http, timeout=60) as client:
        return list(await asyncio.gather(*(one(client, k) for k in range(count))))


# -- measuring -------------------------------------------------------------------------------


@dataclass
class _Tally:
    """What came back during one rate's run."""

    window_end: float = math.inf
    latencies: list[float] = field(default_factory=list)
    acked_in_window: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def acked(self, sent_at: float, now: float) -> None:
        self.latencies.append(now - sent_at)
        if now <= self.window_end:
            self.acked_in_window += 1


@dataclass(frozen=True)
class RateResult:
    rate: float
    seconds: float
    sent: int
    acked: int
    acked_in_window: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    unacked: int
    send_lag_ms: float
    """How late the driver wrote the latest of its frames against the schedule."""
    worker_cpu: float
    """Cores' worth of CPU the worker used during the window (1.0: one core busy)."""
    driver_cpu: float
    machine_cpu: float
    """Cores' worth of CPU the whole machine used (worker, driver, PostgreSQL, others)."""

    @property
    def acked_per_second(self) -> float:
        return self.acked_in_window / self.seconds

    @property
    def driver_saturated(self) -> bool:
        return self.driver_cpu >= SATURATED_CPU

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": self.rate,
            "seconds": self.seconds,
            "sent": self.sent,
            "acked": self.acked,
            "acked_per_second": round(self.acked_per_second, 1),
            "ack_p50_ms": round(self.p50_ms, 2),
            "ack_p99_ms": round(self.p99_ms, 2),
            "ack_max_ms": round(self.max_ms, 2),
            "errors": sum(self.errors.values()) + self.unacked,
            "error_reasons": self.errors,
            "unacked": self.unacked,
            "send_lag_ms": round(self.send_lag_ms, 1),
            "worker_cpu": round(self.worker_cpu, 2),
            "driver_cpu": round(self.driver_cpu, 2),
            "machine_cpu": round(self.machine_cpu, 2),
            "driver_saturated": self.driver_saturated,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of values sorted ascending; NaN for none."""
    if not sorted_values:
        return math.nan
    k = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def _all_acked(phones: Sequence[Phone]) -> bool:
    return not any(p.pending for p in phones)


async def _until(done: Callable[[], bool], timeout_s: float) -> bool:
    """Wait until ``done()`` or ``timeout_s``; whether it is done."""
    deadline = time.perf_counter() + timeout_s
    while True:
        if done():
            return True
        if time.perf_counter() >= deadline:
            return False
        await asyncio.sleep(0.005)


class Driver:
    """The phones' connections and the load schedule, in this process's event loop."""

    def __init__(self, ws_base: str, phones: Sequence[Phone]) -> None:
        self.ws_base = ws_base
        self.phones = list(phones)
        self.tally = _Tally()
        self.rng = random.Random(5)
        self.readers: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(phone: Phone) -> None:
            async with limit:
                phone.ws = await open_phone(self.ws_base, phone.trip_id, phone.token)

        await asyncio.gather(*(one(p) for p in self.phones))
        self.readers = [asyncio.create_task(self._read(p)) for p in self.phones]

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await asyncio.gather(
            *(p.ws.close() for p in self.phones if p.ws is not None), return_exceptions=True
        )

    async def _read(self, phone: Phone) -> None:
        assert phone.ws is not None
        try:
            async for message in phone.ws:
                now = time.perf_counter()
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "ack":
                    for seq in frame["seqs"]:
                        sent_at = phone.pending.pop(seq, None)
                        if sent_at is not None:
                            self.tally.acked(sent_at, now)
                elif kind == "error":
                    self.tally.errors[str(frame.get("reason"))[:60]] += 1
        except ConnectionClosed as exc:
            phone.ws = None
            self.tally.errors[f"connection closed ({exc.rcvd.code if exc.rcvd else '-'})"] += 1

    async def warm_up(self) -> None:
        """One fix per phone, acknowledged, before anything is timed (the worker builds
        and caches each trip's plan on its first fix)."""
        self.tally = _Tally()
        for start in range(0, len(self.phones), CONNECT_CONCURRENCY):
            batch = self.phones[start : start + CONNECT_CONCURRENCY]
            for phone in batch:
                assert phone.ws is not None
                seq, text = phone.fix_frame(time.time(), self.rng)
                phone.pending[seq] = time.perf_counter()
                await phone.ws.send(text)
            if not await _until(functools.partial(_all_acked, batch), 60.0):
                raise BenchError("warm-up fixes were not acknowledged in 60 s")
        if self.tally.errors:
            raise BenchError(f"warm-up: {dict(self.tally.errors)}")

    async def run_rate(
        self, rate: float, seconds: float, worker_pid: int, stop: asyncio.Event | None = None
    ) -> RateResult:
        """Send ``rate`` fixes/s for ``seconds`` (or until ``stop`` is set: the window
        ends there), then wait for the acks still due."""
        n_phones = len(self.phones)
        total = max(1, round(rate * seconds))
        self.tally = tally = _Tally()
        # The frames are made beforehand (positions at their scheduled times), so the
        # timed loop only writes them.
        lead = 0.5 + total * 60e-6
        wall0 = time.time() + lead
        frames: list[tuple[Phone, int, str]] = []
        for g in range(total):
            phone = self.phones[g % n_phones]
            seq, text = phone.fix_frame(wall0 + g / rate, self.rng)
            frames.append((phone, seq, text))
        await asyncio.sleep(max(0.0, wall0 - time.time()))

        cpu0 = time.process_time()
        worker0 = process_cpu_seconds(worker_pid)
        busy0, all0 = machine_busy_seconds()
        start = time.perf_counter()
        tally.window_end = start + seconds
        sent = 0
        lag = 0.0
        while sent < total:
            if stop is not None and stop.is_set():
                tally.window_end = time.perf_counter()
                break
            now = time.perf_counter()
            due = min(total, int((now - start) * rate) + 1)
            lag = max(lag, now - (start + (due - 1) / rate))
            while sent < due:
                phone, seq, text = frames[sent]
                sent += 1
                if phone.ws is None:
                    tally.errors["not sent: connection closed"] += 1
                    continue
                phone.pending[seq] = time.perf_counter()
                try:
                    await phone.ws.send(text)
                except ConnectionClosed:
                    # The worker dropped the phone (e.g. its keep-alive ping went
                    # unanswered while it was swamped): counted, and the phone is done.
                    phone.ws = None
            wait = start + sent / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
        await asyncio.sleep(max(0.0, tally.window_end - time.perf_counter()))
        elapsed = time.perf_counter() - start
        window = min(seconds, tally.window_end - start)
        driver_cpu = (time.process_time() - cpu0) / elapsed
        worker_cpu = (process_cpu_seconds(worker_pid) - worker0) / elapsed
        busy1, all1 = machine_busy_seconds()
        machine_cpu = (busy1 - busy0) / max(all1 - all0, 1e-9) * (os.cpu_count() or 1)

        await _until(functools.partial(_all_acked, self.phones), DRAIN_S)
        unacked = sum(len(p.pending) for p in self.phones)
        for p in self.phones:
            p.pending.clear()
        latencies = sorted(tally.latencies)
        return RateResult(
            rate=rate,
            seconds=window,
            sent=sent,
            acked=len(latencies),
            acked_in_window=tally.acked_in_window,
            p50_ms=percentile(latencies, 0.50) * 1e3,
            p99_ms=percentile(latencies, 0.99) * 1e3,
            max_ms=(latencies[-1] if latencies else math.nan) * 1e3,
            errors=dict(tally.errors),
            unacked=unacked,
            send_lag_ms=lag * 1e3,
            worker_cpu=worker_cpu,
            driver_cpu=driver_cpu,
            machine_cpu=machine_cpu,
        )


# -- the whole run ---------------------------------------------------------------------------


def check_phones(phones: int, rates: Sequence[float], seconds: float) -> None:
    """Refuse rates that would need a phone to send beyond the service's per-connection
    limit (the benchmark measures the worker, not its rate limiter): at most 80 % of
    the sustained rate, or a window short enough for the phone's burst allowance."""
    top = max(rates)
    per_window = top * seconds / phones + 1
    if top / phones > PHONE_FRAMES_PER_S * 0.8 and per_window > PHONE_FRAME_BURST * 0.8:
        need = math.ceil(top / (PHONE_FRAMES_PER_S * 0.8))
        raise ValueError(
            f"{top:g} fixes/s over {phones} phones is {top / phones:.1f} frames/s each; the "
            f"service allows {PHONE_FRAMES_PER_S:g} per phone: use --phones {need} or more"
        )


async def _run(
    postgres_dsn: str,
    redis_url: str | None,
    phones: int,
    rates: Sequence[float],
    seconds: float,
    progress: Any,
) -> tuple[list[RateResult], dict[str, str]]:
    async with throwaway_database(postgres_dsn) as (url, pg_info):
        progress(f"database migrated; starting the worker{' (with Redis)' if redis_url else ''}")
        admin = await asyncio.to_thread(add_admin, url)
        worker = await asyncio.to_thread(start_worker, url, redis_url)
        try:
            progress(f"enrolling {phones} travellers and filing their trips ...")
            made = await create_phones(worker.http, admin, phones)
            driver = Driver(worker.ws, made)
            progress(f"connecting {phones} phones ...")
            await driver.connect()
            try:
                progress("warming up (one fix per phone) ...")
                await driver.warm_up()
                results = []
                for rate in rates:
                    progress(f"{rate:g} fixes/s for {seconds:g} s ...")
                    results.append(await driver.run_rate(rate, seconds, worker.process.pid))
                    if worker.process.poll() is not None:
                        raise BenchError(f"the worker died:\n{worker.log_text()[-2000:]}")
            finally:
                await driver.close()
        finally:
            log = await asyncio.to_thread(stop_worker, worker)
        if "Traceback" in log:
            progress("the worker logged tracebacks:\n" + log[-4000:])
    return results, pg_info


def run_live_bench(
    *,
    postgres_dsn: str,
    redis_url: str | None = None,
    phones: int = 1_250,
    rates: Sequence[float] = (1_000, 2_500, 5_000, 10_000),
    seconds: float = 10.0,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see :func:`render`)."""
    if not rates:
        raise ValueError("give at least one rate")
    check_phones(phones, rates, seconds)
    say = progress or (lambda _msg: None)
    results, pg_info = asyncio.run(_run(postgres_dsn, redis_url, phones, rates, seconds, say))
    info = machine()
    info.update(pg_info)
    return {
        "workload": {
            "phones": phones,
            "rates": list(rates),
            "seconds": seconds,
            "workers": 1,
            "redis": bool(redis_url),
            "drain_s": DRAIN_S,
        },
        "machine": info,
        "results": [r.to_dict() for r in results],
    }


HEADER: Final = (
    f"{'target/s':>9} {'sent':>8} {'acked/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
    f"{'errors':>7} {'worker':>7} {'driver':>7} {'machine':>8}"
)


def render(report: Mapping[str, Any]) -> str:
    """A table a person reads: one line per rate, the machine and the settings."""
    m, wl = report["machine"], report["workload"]
    lines = [
        f"machine:  {m['cpu']}, {m['cores']} cores; Python {m['python']}",
        f"          PostgreSQL {m['postgresql']} (fsync {m['fsync']}, synchronous_commit "
        f"{m['synchronous_commit']}){'; Redis' if wl['redis'] else ''}",
        f"workload: 1 worker (sigueme serve), {wl['phones']:,} phones on websockets from one "
        f"driver process, one fix per frame, {wl['seconds']:g} s per rate",
        "",
        HEADER,
    ]
    saturated = []
    for r in report["results"]:
        lines.append(
            f"{r['rate']:>9,.0f} {r['sent']:>8,} {r['acked_per_second']:>9,.0f} "
            f"{r['ack_p50_ms']:>8.1f} {r['ack_p99_ms']:>8.1f} {r['ack_max_ms']:>8.1f} "
            f"{r['errors']:>7,} {r['worker_cpu']:>7.2f} {r['driver_cpu']:>7.2f} "
            f"{r['machine_cpu']:>8.2f}"
        )
        if r["driver_saturated"]:
            saturated.append(f"{r['rate']:,.0f}")
    lines.append(
        "(acked/s: acks received within the window; latency: send to ack; errors: error "
        "frames and fixes unacknowledged after the drain; CPU in cores: the worker process, "
        "this driver, the whole machine)"
    )
    for r in report["results"]:
        if r["error_reasons"]:
            lines.append(f"errors at {r['rate']:,.0f}/s: {r['error_reasons']}")
    if saturated:
        lines.append(
            f"the driver used a whole core at {', '.join(saturated)} fixes/s: there the load "
            "is limited by this process too (run the driver on another machine, or split it)"
        )
    if m.get("fsync") == "off":
        lines.append("(PostgreSQL runs with fsync off, like the throw-away test server)")
    return "\n".join(lines)


def to_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2)


def parse_rates(text: str) -> list[float]:
    """``1000,2500,5k`` -> [1000.0, 2500.0, 5000.0]; ValueError with a reason."""
    rates = []
    for part in text.split(","):
        item = part.strip().lower()
        if not item:
            continue
        scale = 1_000.0 if item.endswith("k") else 1.0
        try:
            value = float(item.removesuffix("k")) * scale
        except ValueError:
            raise ValueError(f"{part.strip()!r} is not a number") from None
        if not 0 < value <= 1_000_000 or not math.isfinite(value):
            raise ValueError(f"{part.strip()!r}: a rate is more than 0 and at most 1,000,000")
        rates.append(value)
    if not rates:
        raise ValueError("no rates given")
    return rates


__all__ = [
    "BenchError",
    "Driver",
    "Phone",
    "RateResult",
    "Worker",
    "add_admin",
    "create_phones",
    "parse_rates",
    "render",
    "run_live_bench",
    "start_worker",
    "stop_worker",
    "throwaway_database",
    "to_json",
]
