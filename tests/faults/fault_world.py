"""What the fault tests share: servers of their own that they kill and restart, a phone
that behaves as the protocol asks (resend what was not acknowledged, retry what the
server asked to retry, reconnect when the connection drops), travellers and trips
filed through the API, and what the database holds afterwards.

Everything here talks to the service as a phone, an operator or a database
administrator would: processes, HTTP, websockets, SQL. Nothing imports the service's
internals except the pure geo core (to compute what a monitor should have decided).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import asyncpg
import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from sigueme.bench.live import free_port
from sigueme.cli.main import Scenario, scenario_moves
from sigueme.geo import Fix, Route, TripMonitor, TripPlan
from sigueme.replay import parse_route
from sigueme.simulate import Noise, simulate

SAMPLES: Final = Path(__file__).parents[2] / "sigueme" / "replay" / "samples"
PG_BINDIR: Final = Path(os.environ.get("SIGUEME_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SOAK: Final = os.environ.get("SIGUEME_SOAK", "") == "1"
"""Longer, heavier runs of the same tests (more phones, more fixes, more faults)."""
WAIT_S: Final = 180.0 if SOAK else 60.0
"""A generous deadline for any condition the tests wait for."""
INTERVAL_S: Final = 5.0
"""Device time between two fixes of a simulated phone."""


def keep_log(name: str, text: str) -> None:
    """Write a worker's log to ``$SIGUEME_FAULT_LOGS/NAME.log`` when that is set (to read
    what a worker said during a fault)."""
    folder = os.environ.get("SIGUEME_FAULT_LOGS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.log").write_text(text)


def crashes(log: str) -> list[str]:
    """Lines of a worker's log that say a handler or a task crashed."""
    markers = ("Exception in ASGI application", "never retrieved", "Unhandled exception")
    return [line for line in log.splitlines() if any(m in line for m in markers)]


def report(name: str, **figures: object) -> None:
    """Print a test's figures (``pytest -s`` shows them; docs/reliability.md quotes them)."""
    print(f"\n[faults] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# -- servers of our own ------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


async def until(done: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait (in the event loop) until ``done()``; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        await asyncio.sleep(0.01)


def _wait_for(done: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s")
        time.sleep(0.05)


def scratch_dir() -> Path:
    """A temporary directory every user may enter (PostgreSQL runs as ``postgres``)."""
    path = Path(tempfile.mkdtemp(prefix="sigueme-faults-"))
    path.chmod(0o755)
    return path


class PrivateRedis:
    """A redis-server process of this test: killed with SIGKILL and started again on the
    same port and directory. With ``aof`` every write is fsynced to an append-only file
    before Redis answers, so a stream survives the kill (as a production Redis for the
    police queue is configured); without it Redis comes back empty."""

    def __init__(self, root: Path, *, aof: bool = True) -> None:
        self.dir = root / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.aof
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for(self.answers, "redis-server answering PING")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no chance to save or say goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class PrivatePostgres:
    """A PostgreSQL + PostGIS cluster of this test (initdb, as ``scripts/services.sh``
    makes the shared one), with one migrated database ``sigueme``; restarted with
    ``pg_ctl restart -m fast``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.port = free_port()

    @property
    def dsn(self) -> str:
        """asyncpg/libpq form."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/sigueme"

    @property
    def url(self) -> str:
        """SQLAlchemy form, for the service."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/sigueme"

    def _run(self, *args: str, timeout_s: float = 120.0) -> None:
        command = [str(PG_BINDIR / args[0]), *args[1:]]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            tail = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise AssertionError(f"{args[0]} failed: {done.stdout}\n{done.stderr}\n{tail}")

    def start(self) -> None:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-locale",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\nlisten_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\n"
            )
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, *more: str) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", *more, action
        )

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is ended, its transaction rolled
        back, and the server comes back."""
        self._pg_ctl("restart", "-m", "fast")

    def down(self) -> None:
        """``pg_ctl stop -m fast``: the server is away until :meth:`up`."""
        self._pg_ctl("stop", "-m", "fast")

    def up(self) -> None:
        self._pg_ctl("start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self._pg_ctl("stop", "-m", "immediate")

    async def create_database(self) -> None:
        """Database ``sigueme`` with PostGIS, migrated to the code's schema."""
        from sigueme.store.db import upgrade_async

        admin = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            await admin.execute("CREATE DATABASE sigueme")
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("CREATE EXTENSION postgis")
        finally:
            await conn.close()
        await upgrade_async(self.url)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    root = scratch_dir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- travellers and their trips ----------------------------------------------------------


def cuernavaca() -> Route:
    return parse_route((SAMPLES / "cuernavaca_route.geojson").read_bytes())


@dataclass(frozen=True)
class Trip:
    id: str
    token: str
    plan: TripPlan


SILENCE_TIMEOUT_S: Final = 3600.0
"""The longest a trip may go unheard (the API's maximum)."""


def past_departure() -> float:
    """A departure 50 minutes ago: a simulated journey's device times (from a minute
    after it, 5 s apart, sent much faster than that) stay in the past, and the trip is
    not silent before its phone starts (its first deadline is departure plus
    :data:`SILENCE_TIMEOUT_S`), so the watchdog raises nothing of its own."""
    return float(int(time.time() - 3000))


def file_trips(
    http: str,
    admin_token: str,
    route: Route,
    count: int,
    *,
    departure: float,
    duration_min: float = 240.0,
    label: str = "falla",
) -> list[Trip]:
    """``count`` travellers enrolled by the admin, each with one trip on ``route``
    (planned arrival well ahead: never overdue during a test)."""
    trips = []
    with httpx.Client(base_url=http, timeout=60) as client:
        for k in range(count):
            user = client.post(
                "/v1/users",
                headers={"Authorization": f"Bearer {admin_token}"},
                json={"name": f"viajera-{k}-{uuid.uuid4().hex[:6]}", "role": "traveller"},
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
                    "silence_timeout_s": SILENCE_TIMEOUT_S,
                    "label": f"{label} {k}",
                },
            )
            assert trip.status_code == 201, trip.text
            plan = TripPlan(route, departure=departure, arrival=departure + duration_min * 60)
            trips.append(Trip(trip.json()["id"], token, plan))
    return trips


def journey(
    route: Route, scenario: Scenario, *, start_t: float, seed: int, noise_m: float = 8.0
) -> list[Fix]:
    """A phone's fixes along ``route`` (fixed seed), one every :data:`INTERVAL_S`."""
    return simulate(
        route,
        scenario_moves(scenario, route.length_m),
        start_t=start_t,
        interval_s=INTERVAL_S,
        noise=Noise(noise_m=noise_m),
        seed=seed,
    )


def first_event(plan: TripPlan, fixes: Sequence[Fix], kind: str) -> int:
    """The seq (index + 1) of the fix at which one monitor fed ``fixes`` in order first
    raises ``kind``."""
    monitor = TripMonitor(plan)
    for seq, fix in enumerate(fixes, start=1):
        if any(e.kind.value == kind for e in monitor.update(fix).events):
            return seq
    raise AssertionError(f"no {kind} in this journey")


def fix_frame(seq: int, fix: Fix, t: float | None = None) -> str:
    """A ``fix`` frame with the values exactly as simulated (no rounding), so a
    monitor in this process fed ``fix`` decides exactly as the worker did."""
    return json.dumps(
        {
            "type": "fix",
            "seq": seq,
            "t": fix.t if t is None else t,
            "lat": fix.lat,
            "lon": fix.lon,
            "accuracy": fix.accuracy,
            "speed": fix.speed,
            "battery": fix.battery,
        }
    )


# -- the phone -------------------------------------------------------------------------------

REPLY_TIMEOUT_S: Final = 30.0
RETRY_PAUSE_S: Final = 0.2
NOT_RETRYABLE: Final = frozenset({4401, 4404, 4409})
"""Close codes after which a phone must not just reconnect and resend."""


class PhoneGaveUp(AssertionError):
    """The phone could not get its fixes acknowledged in time."""


@dataclass(eq=False)
class Phone:
    """One traveller's phone streaming a trip's fixes (seq = index + 1), as the protocol
    asks: a fix is forgotten only once acknowledged; a ``retry`` error is resent after a
    pause; a dropped connection is reopened (to whatever worker ``base()`` names then)
    and everything not acknowledged is resent.

    Replies come in the order of the frames, so with several frames in flight the
    n-th reply answers the n-th frame (the error frame of a database failure names no
    seq)."""

    trip: Trip
    fixes: Sequence[Fix]
    base: Callable[[], str]
    """The ws:// base to (re)connect to."""
    window: int = 1
    """Frames in flight before waiting for a reply."""
    gap_s: float = 0.1
    """Pause after each frame sent (the service allows 10 frames/s, bursts of 50)."""
    clock_offset_s: float = 0.0
    """Added to every fix's time: a device clock that runs ahead (+) or behind (-)."""
    ws: ClientConnection | None = None
    sent: int = 0
    """Fix frames written (resends included)."""
    ack_frames: int = 0
    """Acknowledgements received (of resends too)."""
    acked: set[int] = field(default_factory=set)
    acks: dict[int, dict[str, Any]] = field(default_factory=dict)
    """The (last) ack of each seq."""
    duplicates: set[int] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    """Error frames received, by reason."""
    refusals: list[dict[str, Any]] = field(default_factory=list)
    """Error frames without ``retry`` (the fix is refused for good)."""
    closes: list[tuple[int | None, str]] = field(default_factory=list)
    """(code, reason) of every connection that ended under the phone."""
    connects: int = 0

    async def open(self, deadline: float) -> ClientConnection:
        """A connection with ``ready`` received, retrying until ``deadline``."""
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                ws = await connect(
                    f"{self.base()}/v1/trips/{self.trip.id}/phone",
                    additional_headers={"Authorization": f"Bearer {self.trip.token}"},
                    open_timeout=REPLY_TIMEOUT_S,
                    ping_interval=None,
                    compression=None,
                )
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                last = exc
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            try:
                ready = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
            except ConnectionClosed as exc:
                self._closed(exc)
                last = exc
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            assert ready["type"] == "ready", ready
            self.connects += 1
            self.ws = ws
            return ws
        raise PhoneGaveUp(f"trip {self.trip.id}: no connection before the deadline ({last!r})")

    def _closed(self, exc: ConnectionClosed) -> None:
        rcvd = exc.rcvd
        self.closes.append((rcvd.code, rcvd.reason) if rcvd else (None, "no close frame"))
        if rcvd is not None and rcvd.code in NOT_RETRYABLE:
            raise PhoneGaveUp(f"trip {self.trip.id}: closed {rcvd.code} {rcvd.reason}")
        self.ws = None

    def frame(self, seq: int) -> str:
        fix = self.fixes[seq - 1]
        return fix_frame(seq, fix, fix.t + self.clock_offset_s)

    async def stream(self, seqs: Sequence[int], *, timeout_s: float = WAIT_S) -> None:
        """Send ``seqs`` until every one is acknowledged (or refused for good)."""
        deadline = time.monotonic() + timeout_s
        todo = deque(seqs)
        while todo:
            ws = self.ws or await self.open(deadline)
            inflight: deque[int] = deque()
            try:
                while todo or inflight:
                    if time.monotonic() > deadline:
                        raise PhoneGaveUp(
                            f"trip {self.trip.id}: {len(todo) + len(inflight)} fixes "
                            f"unacknowledged (errors {dict(self.errors)}, closes {self.closes})"
                        )
                    while todo and len(inflight) < self.window:
                        seq = todo.popleft()
                        inflight.append(seq)
                        await ws.send(self.frame(seq))
                        self.sent += 1
                        if self.gap_s:
                            await asyncio.sleep(self.gap_s)
                    reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
                    await self._answer(reply, inflight, todo)
            except ConnectionClosed as exc:
                # What the server answered before closing is still to be read (the
                # close may have surfaced while sending): read it, as a phone must.
                with contextlib.suppress(ConnectionClosed):
                    while inflight:
                        await self._answer(json.loads(await ws.recv()), inflight, todo)
                todo.extendleft(reversed(inflight))
                self._closed(exc)

    async def _answer(self, reply: dict[str, Any], inflight: deque[int], todo: deque[int]) -> None:
        seq = inflight.popleft()
        if reply["type"] == "ack":
            assert reply["seqs"] == [seq], (reply, seq)
            self.ack_frames += 1
            self.acked.add(seq)
            self.acks[seq] = reply
            if reply["duplicates"]:
                assert reply["duplicates"] == [seq], reply
                self.duplicates.add(seq)
            return
        assert reply["type"] == "error", reply
        self.errors[reply["reason"]] += 1
        if reply.get("retry"):
            todo.appendleft(seq)
            await asyncio.sleep(max(RETRY_PAUSE_S, float(reply.get("retry_after_s") or 0)))
        else:
            self.refusals.append(reply)

    async def sos(self, seq: int, *, timeout_s: float = WAIT_S) -> dict[str, Any]:
        """Press SOS with fix ``seq`` (its position); the ``sos_ack``, retrying errors."""
        deadline = time.monotonic() + timeout_s
        fix = self.fixes[seq - 1]
        payload = json.loads(self.frame(seq))
        del payload["type"]
        frame = json.dumps({"type": "sos", "fix": payload, "note": "prueba de falla"})
        while time.monotonic() < deadline:
            ws = self.ws or await self.open(deadline)
            try:
                await ws.send(frame)
                self.sent += 1
                reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
            except ConnectionClosed as exc:
                self._closed(exc)
                continue
            if reply["type"] == "sos_ack":
                assert reply["seq"] == seq, reply
                self.ack_frames += 1
                self.acked.add(seq)
                return dict(reply)
            assert reply["type"] == "error", reply
            assert reply.get("retry"), reply
            self.errors[reply["reason"]] += 1
            await asyncio.sleep(RETRY_PAUSE_S)
        raise PhoneGaveUp(f"trip {self.trip.id}: SOS at {fix} not acknowledged in time")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


@dataclass(eq=False)
class LivePhone(Phone):
    """A phone moving along its trip's route in real time at ``speed_mps``: each fix is
    where it is when sent, stamped with its clock then (the true time plus
    ``clock_offset_s``). ``fixes`` is not used."""

    t0: float = field(default_factory=time.time)
    speed_mps: float = 12.0
    start_m: float = 200.0

    def device_time(self, seq: int, now: float) -> float:
        return now + self.clock_offset_s

    def frame(self, seq: int) -> str:
        now = time.time()
        lon, lat = self.trip.plan.route.point_at(self.start_m + (now - self.t0) * self.speed_mps)
        fix = Fix(t=now, lat=lat, lon=lon, accuracy=5.0, speed=self.speed_mps, battery=80.0)
        return fix_frame(seq, fix, self.device_time(seq, now))


# -- what the database holds -------------------------------------------------------------------


async def stored_seqs(dsn: str, trip_ids: Sequence[str]) -> dict[str, list[int]]:
    """Every stored fix's seq, per trip (a seq stored twice appears twice)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT trip_id, seq FROM fixes WHERE trip_id = ANY($1::text[]) ORDER BY id",
            list(trip_ids),
        )
    finally:
        await conn.close()
    out: dict[str, list[int]] = {t: [] for t in trip_ids}
    for row in rows:
        out[row["trip_id"]].append(row["seq"])
    return out


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def check_stored(phones: Sequence[Phone], stored: dict[str, list[int]]) -> tuple[int, int]:
    """Every acknowledged fix stored, nothing stored twice: (acked, stored)."""
    acked = stored_total = 0
    for phone in phones:
        seqs = stored[phone.trip.id]
        assert len(seqs) == len(set(seqs)), f"trip {phone.trip.id}: a fix stored twice"
        assert phone.acked <= set(seqs), (
            f"trip {phone.trip.id}: acknowledged but not stored: {sorted(phone.acked - set(seqs))}"
        )
        acked += len(phone.acked)
        stored_total += len(seqs)
    return acked, stored_total


def metric(http: str, name: str) -> float:
    """One unlabelled counter or gauge from the worker's ``/metrics`` (0 if absent)."""
    text = httpx.get(f"{http}/metrics", timeout=10).text
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name:
            return float(value)
    return 0.0


def worker_healthy(http: str) -> bool:
    try:
        return httpx.get(f"{http}/healthz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False
