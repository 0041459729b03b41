"""Simulated phones on a running server (``sigueme simulate phones``), and the client
side of the service that the live benchmarks share with it.

The simulation: ``phones`` travellers are enrolled through the API by an admin; each
files a trip on a route (from a file, or generated around Cuernavaca) and its phone
opens the trip's websocket (``/v1/trips/{id}/phone``) and streams what a phone would
send: a fix every ``interval_s`` of the journey, with urban GPS noise
(:data:`~sigueme.simulate.URBAN_NOISE`), in real time or ``speed_up`` times faster.
Each phone keeps a behaviour for the whole trip (:class:`Behaviour`): it drives its
route, or leaves it for a few minutes, or stops on the way, or goes silent part way
(its connection drops and it sends nothing more), or presses SOS part way. The phones
resend what the server did not acknowledge when it asks them to (an error frame with
``retry``), as a phone app does.

Time: the server refuses fixes more than five minutes ahead of its clock, and a
journey sped up must still look like a journey (fixes ``interval_s`` apart in the
phone's clock, at driving speeds). So each trip departs in the past, by as much as its
journey gains on the real clock (``duration x (1 - 1/speed_up)``): the last fix a phone
sends is stamped with the moment it is sent, the earlier ones before theirs. The
trip's silence timeout (the watchdog's ``signal_lost``) runs on the server's clock from
departure until the first fix arrives, so it is at least that head start plus a minute
(and at most the API's 3,600 s); at ``speed_up`` 1 it is ``silence_timeout_s``.

At the end, or on Ctrl-C, the phones still connected wait briefly for their last
acknowledgements and their trips are finished (as a traveller ends a trip on
arrival); the silent phones' trips are left active, so that the watchdog raises their
``signal_lost`` alerts.

Everything here talks to the service as a phone and an operator would (HTTP and
websockets); nothing imports the service's API or storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

import httpx
import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from sigueme.alerts.kinds import alert_kind_for
from sigueme.bench.workload import CUERNAVACA, START_T, route_near
from sigueme.geo import EventKind, Fix, Route
from sigueme.simulate import URBAN_NOISE, Drive, Move, Noise, Offset, Stop, simulate

MAX_FRAMES_PER_S: Final = 8.0
"""A phone sends at most this many frames a second (the server takes 10, burst 50)."""
MAX_FIXES_PER_S: Final = 80.0
"""... and at most this many fixes (the server takes 100, burst 1,000)."""
MAX_FIXES_PER_FRAME: Final = 500
MIN_SILENCE_TIMEOUT_S: Final = 60.0
MAX_SILENCE_TIMEOUT_S: Final = 3_600.0
"""The API's bounds of a trip's silence timeout."""
START_MARGIN_S: Final = 60.0
"""A trip's silence deadline is at least this long after the planned start."""
DRAIN_S: Final = 10.0
"""After its last fix, how long a phone waits for the acknowledgements still due."""
SETUP_CONCURRENCY: Final = 16
CONNECT_CONCURRENCY: Final = 64
STOP_S: Final = 420.0
"""How long a stopping phone stands still (the monitor's stop_seconds is 300)."""
SOS_NOTE: Final = "simulated SOS (sigueme simulate phones)"


class ServiceError(Exception):
    """The server refused or could not be reached, or a worker died: the reason."""


# -- the client side of the service ------------------------------------------------------------


def ws_base(http_base: str) -> str:
    """``http://host:port`` -> ``ws://host:port`` (``https`` -> ``wss``)."""
    base = http_base.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://")
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://")
    raise ValueError(f"{http_base!r}: the server's URL starts with http:// or https://")


def iso(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC (``...Z``)."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _refused(what: str, response: httpx.Response) -> ServiceError:
    return ServiceError(f"{what}: {response.status_code} {response.text[:200]}")


async def enrol(
    client: httpx.AsyncClient, admin_token: str, name: str, role: str = "traveller"
) -> str:
    """Enrol a user through the API (``POST /v1/users``, as the admin): their token."""
    response = await client.post(
        "/v1/users",
        headers={"Authorization": f"Bearer {admin_token}"},
        json={"name": name, "role": role},
    )
    if response.status_code != 201:
        raise _refused("POST /v1/users", response)
    return str(response.json()["token"])


async def file_trip(
    client: httpx.AsyncClient,
    token: str,
    route: Route,
    *,
    departure: float,
    arrival: float,
    label: str,
    silence_timeout_s: float | None = None,
) -> str:
    """File a trip through the API as its traveller (``POST /v1/trips``): its id."""
    body: dict[str, Any] = {
        "route": {"type": "LineString", "coordinates": route.lonlat.tolist()},
        "departure": iso(departure),
        "arrival": iso(arrival),
        "label": label,
    }
    if silence_timeout_s is not None:
        body["silence_timeout_s"] = silence_timeout_s
    response = await client.post(
        "/v1/trips", headers={"Authorization": f"Bearer {token}"}, json=body
    )
    if response.status_code != 201:
        raise _refused("POST /v1/trips", response)
    return str(response.json()["id"])


async def open_phone(
    ws_url: str, trip_id: str, token: str, *, timeout_s: float = 60.0
) -> ClientConnection:
    """The trip's phone socket, authenticated (``ready`` received)."""
    try:
        ws = await connect(
            f"{ws_url}/v1/trips/{trip_id}/phone",
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=timeout_s,
            ping_interval=None,  # the server pings; the client answers by itself
            compression=None,
        )
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        raise ServiceError(f"the phone socket of trip {trip_id}: {exc}") from None
    try:
        ready = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    except (ConnectionClosed, TimeoutError) as exc:
        await ws.close()
        raise ServiceError(f"the phone socket of trip {trip_id} closed: {exc}") from None
    if ready.get("type") != "ready":
        await ws.close()
        raise ServiceError(f"the phone socket answered {ready!r}, not ready")
    return ws


def fix_dict(
    seq: int,
    t: float,
    lat: float,
    lon: float,
    *,
    accuracy: float | None = None,
    speed: float | None = None,
    heading: float | None = None,
    battery: float | None = None,
) -> dict[str, Any]:
    """One fix as the phone protocol carries it (without ``type``)."""
    out: dict[str, Any] = {"seq": seq, "t": round(t, 3), "lat": round(lat, 7), "lon": round(lon, 7)}
    for name, value, digits in (
        ("accuracy", accuracy, 1),
        ("speed", speed, 2),
        ("heading", heading, 1),
        ("battery", battery, 1),
    ):
        if value is not None:
            out[name] = round(value, digits)
    return out


def fix_payload(seq: int, fix: Fix, t: float | None = None) -> dict[str, Any]:
    """``fix`` as the phone protocol carries it, stamped ``t`` when given."""
    return fix_dict(
        seq,
        fix.t if t is None else t,
        fix.lat,
        fix.lon,
        accuracy=fix.accuracy,
        speed=fix.speed,
        heading=fix.heading,
        battery=fix.battery,
    )


def fix_frame(seq: int, fix: Fix, t: float | None = None) -> str:
    """A ``fix`` frame."""
    return dumps({"type": "fix", **fix_payload(seq, fix, t)})


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def fixes_frame(payloads: Sequence[dict[str, Any]]) -> str:
    """One ``fix`` frame for one fix, a ``fixes`` frame for several."""
    if len(payloads) == 1:
        return dumps({"type": "fix", **payloads[0]})
    return dumps({"type": "fixes", "fixes": list(payloads)})


def sos_frame(payload: dict[str, Any] | None, note: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "sos"}
    if payload is not None:
        frame["fix"] = payload
    if note:
        frame["note"] = note
    return dumps(frame)


def alert_of_event(kind: str) -> str | None:
    """The alert kind a monitor event raises (``off_route`` -> ``off_route``), if any."""
    try:
        alert = alert_kind_for(EventKind(kind))
    except ValueError:
        return None
    return None if alert is None else alert.value


# -- what each phone does ------------------------------------------------------------------------


class Behaviour(StrEnum):
    NORMAL = "normal"
    """Drives its route to the end."""
    DEVIATE = "deviate"
    """Leaves the route by 400-700 m for 2.5 to 5 minutes, then comes back."""
    STOP = "stop"
    """Stands still for 7 minutes part way (the monitor's stop_seconds is 5)."""
    SILENT = "silent"
    """Goes silent part way (30-60 %): its connection drops, nothing more is sent."""
    SOS = "sos"
    """Presses SOS part way (30-70 %), with its position, and drives on."""


@dataclass(frozen=True)
class Mix:
    """Shares of the phones that deviate, stop, go silent and press SOS (the rest drive
    normally); each phone has one behaviour. Counts are rounded to the nearest."""

    deviate: float = 0.0
    stop: float = 0.0
    silent: float = 0.0
    sos: float = 0.0

    def __post_init__(self) -> None:
        for name in ("deviate", "stop", "silent", "sos"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"--{name}: a share from 0 to 1")
        if self.deviate + self.stop + self.silent + self.sos > 1.0 + 1e-9:
            raise ValueError(
                "the shares of --deviate, --stop, --silent and --sos add up to more than 1"
            )

    def counts(self, phones: int) -> dict[Behaviour, int]:
        counts = {
            Behaviour.DEVIATE: math.floor(self.deviate * phones + 0.5),
            Behaviour.STOP: math.floor(self.stop * phones + 0.5),
            Behaviour.SILENT: math.floor(self.silent * phones + 0.5),
            Behaviour.SOS: math.floor(self.sos * phones + 0.5),
        }
        # Rounding up each share may overshoot: take the excess from the largest.
        while sum(counts.values()) > phones:
            counts[max(counts, key=lambda b: counts[b])] -= 1
        return {Behaviour.NORMAL: phones - sum(counts.values()), **counts}


@dataclass(frozen=True)
class PhonePlan:
    """One phone's journey, in its own clock from :data:`START_T` (shifted when sent)."""

    index: int
    behaviour: Behaviour
    route: Route
    fixes: tuple[Fix, ...]
    planned_s: float
    """The trip's planned duration (departure to arrival)."""
    sos_at: int | None = None
    """The fix sent with the SOS (index into ``fixes``)."""
    silent_from: int | None = None
    """Fixes from this index on are never sent."""

    @property
    def last(self) -> int:
        """Index of the last fix this phone sends."""
        return (self.silent_from if self.silent_from is not None else len(self.fixes)) - 1

    def elapsed(self, k: int) -> float:
        """Seconds from departure to fix ``k`` in the phone's clock."""
        return self.fixes[k].t - START_T

    @property
    def journey_s(self) -> float:
        """From departure to the last fix sent."""
        return self.elapsed(self.last)


def _moves(
    behaviour: Behaviour, length: float, speed: float, rng: np.random.Generator
) -> list[Move]:
    if behaviour is Behaviour.DEVIATE:
        leave = rng.uniform(0.2, 0.4) * length
        off_s = rng.uniform(150.0, 300.0)
        back = min(leave + speed * off_s, 0.85 * length)
        lateral = rng.uniform(400.0, 700.0)
        return [
            Drive(leave, speed),
            Offset(lateral, 8.0),
            Drive(back, speed),
            Offset(0.0, 8.0),
            Drive(length, speed),
        ]
    if behaviour is Behaviour.STOP:
        return [Drive(rng.uniform(0.3, 0.6) * length, speed), Stop(STOP_S), Drive(length, speed)]
    return [Drive(length, speed)]


def plan_phones(
    phones: int,
    mix: Mix,
    *,
    routes: Sequence[Route] = (),
    route_km: float = 6.0,
    interval_s: float = 5.0,
    noise: Noise = URBAN_NOISE,
    seed: int = 0,
) -> list[PhonePlan]:
    """Each phone's behaviour and journey: on the given routes in turn, or on routes of
    about ``route_km`` generated around Cuernavaca. Pure and reproducible (``seed``)."""
    if phones < 1:
        raise ValueError("--phones: at least 1")
    rng = np.random.default_rng(seed)
    behaviours = [b for b, n in mix.counts(phones).items() for _ in range(n)]
    rng.shuffle(behaviours)
    plans = []
    for k, behaviour in enumerate(behaviours):
        route = (
            routes[k % len(routes)]
            if routes
            else route_near(rng, CUERNAVACA, length_m=route_km * 1000.0)
        )
        speed = float(rng.uniform(8.0, 14.0))
        # Phones do not all send at the same instant.
        start = START_T + float(rng.uniform(0.0, interval_s))
        fixes = tuple(
            simulate(
                route,
                _moves(behaviour, route.length_m, speed, rng),
                start_t=start,
                interval_s=interval_s,
                noise=noise,
                seed=seed * 100_003 + k,
                battery_start=float(rng.uniform(40.0, 100.0)),
            )
        )
        planned = route.length_m / speed * 1.25 + 300.0
        sos_at = silent_from = None
        if behaviour is Behaviour.SOS:
            sos_at = max(1, int(len(fixes) * rng.uniform(0.3, 0.7)))
        elif behaviour is Behaviour.SILENT:
            silent_from = max(2, int(len(fixes) * rng.uniform(0.3, 0.6)))
        plans.append(PhonePlan(k, Behaviour(behaviour), route, fixes, planned, sos_at, silent_from))
    return plans


def head_start(plan: PhonePlan, speed_up: float) -> float:
    """How long before the simulation's start the trip departs (its journey's gain on
    the real clock): the last fix sent is stamped with its real time."""
    return plan.journey_s * (1.0 - 1.0 / speed_up)


def silence_timeout(plan: PhonePlan, speed_up: float, wanted_s: float) -> float:
    """The trip's silence timeout: ``wanted_s``, or longer when the trip departs in the
    past (see the module's doc). ValueError when the API's 3,600 s would not do."""
    need = math.ceil(head_start(plan, speed_up) + START_MARGIN_S)
    timeout = max(wanted_s, need)
    if timeout > MAX_SILENCE_TIMEOUT_S:
        raise ValueError(
            f"at --speed-up {speed_up:g} a journey of {plan.journey_s / 60:.0f} min starts "
            f"{head_start(plan, speed_up) / 60:.0f} min in the past, longer than a trip's "
            "silence timeout may be (1 h): use a smaller --speed-up or shorter routes"
        )
    return float(timeout)


def check_rate(interval_s: float, speed_up: float) -> None:
    """Refuse a speed-up that would make a phone send more fixes than the server takes."""
    if speed_up / interval_s > MAX_FIXES_PER_S:
        raise ValueError(
            f"--speed-up {speed_up:g} with a fix every {interval_s:g} s is "
            f"{speed_up / interval_s:.0f} fixes/s per phone; the server takes 100: use "
            f"--speed-up {math.floor(MAX_FIXES_PER_S * interval_s)} or less"
        )


# -- running them -------------------------------------------------------------------------------


@dataclass
class Tally:
    """What the phones sent and what came back."""

    sent: int = 0
    resent: int = 0
    acked: int = 0
    duplicates: int = 0
    sos_sent: int = 0
    sos_acked: int = 0
    events: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    """Alerts raised, as the acks' events and the SOS acknowledgements tell."""
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False)
class LivePhone:
    """One phone's connection and what it still waits for."""

    plan: PhonePlan
    trip_id: str
    token: str
    departure: float
    """Its trip's departure (epoch seconds): fix ``k`` is stamped ``departure +
    plan.elapsed(k)``."""
    silence_timeout_s: float
    ws: ClientConnection | None = None
    next_k: int = 0
    unacked: dict[int, dict[str, Any]] = field(default_factory=dict)
    """seq -> the fix as sent (resent when the server asks)."""
    resend_at: float | None = None
    sos_unacked: str | None = None
    """The SOS frame, until its ``sos_ack``."""
    state: str = "waiting"
    """waiting, streaming, silent, done, closed (the server closed it)."""
    closing: bool = False


class Simulation:
    """The phones of one run and their tasks."""

    def __init__(
        self,
        server: str,
        admin_token: str,
        plans: Sequence[PhonePlan],
        *,
        speed_up: float = 1.0,
        silence_timeout_s: float = 120.0,
        stop: asyncio.Event | None = None,
        progress: Callable[[str], None] | None = None,
        progress_every_s: float = 5.0,
    ) -> None:
        self.http = server.rstrip("/")
        self.ws = ws_base(self.http)
        self.admin_token = admin_token
        self.plans = list(plans)
        self.speed_up = speed_up
        self.timeouts = [silence_timeout(p, speed_up, silence_timeout_s) for p in plans]
        self.stop = stop or asyncio.Event()
        self.say = progress or (lambda _msg: None)
        self.progress_every_s = progress_every_s
        self.phones: list[LivePhone] = []
        self.tally = Tally()
        self.start = 0.0
        """Wall time (epoch seconds) of the simulation's start."""
        self.t0 = 0.0
        """The same instant on ``time.perf_counter()``."""
        self.interrupted = False
        self.finished = 0
        self.server_alerts: dict[str, int] | None = None

    # -- set-up --------------------------------------------------------------------------

    async def check_admin(self, client: httpx.AsyncClient) -> None:
        me = await client.get("/v1/me", headers={"Authorization": f"Bearer {self.admin_token}"})
        if me.status_code == 401:
            raise ServiceError("the admin token was refused (401): invalid, revoked or expired")
        if me.status_code != 200:
            raise _refused("GET /v1/me", me)
        if me.json().get("role") != "admin":
            raise ServiceError("the admin token is not an admin's: enrolling travellers needs one")

    async def enrol_all(self, client: httpx.AsyncClient) -> None:
        run = uuid.uuid4().hex[:6]
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(plan: PhonePlan, silence_s: float) -> LivePhone:
            async with limit:
                token = await enrol(client, self.admin_token, f"sim-{run}-{plan.index}")
                departure = self.start - head_start(plan, self.speed_up)
                trip_id = await file_trip(
                    client,
                    token,
                    plan.route,
                    departure=departure,
                    arrival=departure + plan.planned_s,
                    label=f"simulated {plan.index} ({plan.behaviour.value})",
                    silence_timeout_s=silence_s,
                )
                return LivePhone(plan, trip_id, token, departure, silence_s)

        self.phones = list(
            await asyncio.gather(
                *(one(p, t) for p, t in zip(self.plans, self.timeouts, strict=True))
            )
        )

    async def connect_all(self) -> None:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(phone: LivePhone) -> None:
            async with limit:
                phone.ws = await open_phone(self.ws, phone.trip_id, phone.token)

        await asyncio.gather(*(one(p) for p in self.phones))

    # -- streaming -----------------------------------------------------------------------

    def due(self, phone: LivePhone, k: int) -> float:
        """When fix ``k`` is sent (perf_counter)."""
        return self.t0 + phone.plan.elapsed(k) / self.speed_up

    async def pause(self, seconds: float) -> bool:
        """Sleep, or less if the simulation is stopped; whether it was."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    async def send(self, phone: LivePhone, text: str) -> bool:
        if phone.ws is None:
            return False
        try:
            await phone.ws.send(text)
        except ConnectionClosed:
            phone.ws = None
            phone.state = "closed"
            return False
        return True

    async def stream(self, phone: LivePhone) -> None:
        """Send the phone's fixes when due (those due together in one frame), its SOS when
        due, resends when asked; then wait for the last acknowledgements. A silent phone
        then drops its connection."""
        plan = phone.plan
        phone.state = "streaming"
        gap = 1.0 / MAX_FRAMES_PER_S
        last_sent = -math.inf
        while phone.next_k <= plan.last and phone.ws is not None:
            now = time.perf_counter()
            wait = max(self.due(phone, phone.next_k) - now, last_sent + gap - now)
            if await self.pause(wait):
                return
            last_sent = time.perf_counter()
            if phone.resend_at is not None and last_sent >= phone.resend_at:
                await self.resend(phone)
                continue
            batch = self.due_batch(phone, last_sent)
            phone.next_k = batch[-1] + 1
            payloads = [self.payload(phone, k) for k in batch]
            for k, body in zip(batch, payloads, strict=True):
                phone.unacked[k + 1] = body
            self.tally.sent += len(batch)
            if batch[0] == plan.sos_at:
                phone.sos_unacked = sos_frame(payloads[0], SOS_NOTE)
                self.tally.sos_sent += 1
                await self.send(phone, phone.sos_unacked)
            else:
                await self.send(phone, fixes_frame(payloads))
        await self.drain(phone, DRAIN_S)
        if plan.behaviour is Behaviour.SILENT and phone.ws is not None:
            phone.state = "silent"
            await self.close(phone)

    def due_batch(self, phone: LivePhone, now: float) -> list[int]:
        """The fixes due at ``now`` from ``phone.next_k`` on (at least that one), up to a
        frame's worth; the SOS fix goes alone."""
        plan = phone.plan
        k = phone.next_k
        if k == plan.sos_at:
            return [k]
        batch = [k]
        k += 1
        while (
            k <= plan.last
            and k != plan.sos_at
            and self.due(phone, k) <= now
            and len(batch) < MAX_FIXES_PER_FRAME
        ):
            batch.append(k)
            k += 1
        return batch

    def payload(self, phone: LivePhone, k: int) -> dict[str, Any]:
        fix = phone.plan.fixes[k]
        return fix_payload(k + 1, fix, t=phone.departure + phone.plan.elapsed(k))

    async def resend(self, phone: LivePhone) -> None:
        phone.resend_at = None
        if phone.sos_unacked is not None:
            await self.send(phone, phone.sos_unacked)
            return
        pending = [phone.unacked[s] for s in sorted(phone.unacked)][:MAX_FIXES_PER_FRAME]
        if pending:
            self.tally.resent += len(pending)
            await self.send(phone, fixes_frame(pending))

    async def drain(self, phone: LivePhone, seconds: float) -> None:
        """Wait up to ``seconds`` for what the phone still awaits (resending if asked)."""
        deadline = time.perf_counter() + seconds
        while (phone.unacked or phone.sos_unacked) and phone.ws is not None:
            if time.perf_counter() >= deadline:
                break
            await asyncio.sleep(0.05)
            if phone.resend_at is not None and time.perf_counter() >= phone.resend_at:
                await self.resend(phone)
        if phone.state == "streaming":
            phone.state = "done"

    async def read(self, phone: LivePhone) -> None:
        """The server's answers: acks, SOS acks, errors."""
        assert phone.ws is not None
        tally = self.tally
        try:
            async for message in phone.ws:
                frame = json.loads(message)
                kind = frame.get("type")
                if kind == "ack":
                    for seq in frame.get("seqs", ()):
                        if phone.unacked.pop(seq, None) is not None:
                            tally.acked += 1
                    tally.duplicates += len(frame.get("duplicates", ()))
                    for event in frame.get("events", ()):
                        name = str(event.get("kind"))
                        tally.events[name] += 1
                        alert = alert_of_event(name)
                        if alert is not None:
                            tally.alerts[alert] += 1
                elif kind == "sos_ack":
                    phone.sos_unacked = None
                    tally.sos_acked += 1
                    tally.alerts["sos"] += 1
                    seq = frame.get("seq")
                    if seq is not None and phone.unacked.pop(seq, None) is not None:
                        tally.acked += 1
                elif kind == "error":
                    tally.errors[str(frame.get("reason"))[:60]] += 1
                    if frame.get("retry"):
                        after = float(frame.get("retry_after_s") or 1.0)
                        phone.resend_at = time.perf_counter() + after
        except ConnectionClosed as exc:
            if not phone.closing:
                code = exc.rcvd.code if exc.rcvd else "-"
                tally.errors[f"connection closed by the server ({code})"] += 1
                phone.state = "closed"
                phone.ws = None

    async def close(self, phone: LivePhone) -> None:
        ws, phone.ws = phone.ws, None
        phone.closing = True
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def report_progress(self) -> None:
        while not await self.pause(self.progress_every_s):
            self.say(self.progress_line())

    def progress_line(self) -> str:
        states = Counter(p.state for p in self.phones)
        t = self.tally
        alerts = ", ".join(f"{k} {v}" for k, v in sorted(t.alerts.items())) or "none"
        return (
            f"t+{time.perf_counter() - self.t0:.0f}s  phones: streaming {states['streaming']}, "
            f"silent {states['silent']}, done {states['done']}, closed {states['closed']} | "
            f"fixes sent {t.sent:,}, acked {t.acked:,} | alerts: {alerts}"
        )

    # -- ending --------------------------------------------------------------------------

    async def finish_trips(self, client: httpx.AsyncClient) -> None:
        """End the trips of the phones that did not go silent."""
        limit = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def one(phone: LivePhone) -> bool:
            async with limit:
                response = await client.post(
                    f"/v1/trips/{phone.trip_id}/finish",
                    headers={"Authorization": f"Bearer {phone.token}"},
                )
                return response.status_code == 200

        ending = [p for p in self.phones if p.state != "silent"]
        done = await asyncio.gather(*(one(p) for p in ending), return_exceptions=True)
        self.finished = sum(1 for d in done if d is True)

    async def read_server_alerts(self, client: httpx.AsyncClient) -> None:
        """The live alerts of these trips, as dispatchers see them in ``/v1/alerts``."""
        ours = {p.trip_id for p in self.phones}
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            response = await client.get(
                "/v1/alerts",
                params={"limit": 500},
                headers={"Authorization": f"Bearer {self.admin_token}"},
            )
            if response.status_code == 200:
                kinds = Counter(
                    a["kind"] for a in response.json()["alerts"] if a["trip"]["id"] in ours
                )
                self.server_alerts = dict(sorted(kinds.items()))

    # -- the whole run --------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        """Enrol, file, connect, stream until every phone is done or ``stop`` is set,
        finish the trips; the summary (:func:`render_summary`)."""
        began = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.http, timeout=60) as client:
            try:
                await self.check_admin(client)
            except httpx.HTTPError as exc:
                raise ServiceError(f"cannot reach {self.http}: {exc}") from None
            # The trips' departures are set from the planned start: leave time to set up.
            self.start = time.time() + 5.0 + 0.02 * len(self.plans)
            self.say(f"enrolling {len(self.plans)} travellers and filing their trips ...")
            try:
                await self.enrol_all(client)
            except httpx.HTTPError as exc:
                raise ServiceError(f"{self.http} stopped answering: {exc}") from None
            try:
                if not self.stop.is_set():
                    self.say(f"connecting {len(self.phones)} phones ...")
                    await self.connect_all()
                    await self.stream_all()
            finally:
                self.interrupted = self.stop.is_set()
                await asyncio.gather(*(self.close(p) for p in self.phones))
                await self.finish_trips(client)
                await self.read_server_alerts(client)
        return self.summary(time.perf_counter() - began)

    async def stream_all(self) -> None:
        wait = self.start - time.time()
        if wait > 0 and await self.pause(wait):
            return
        self.t0 = time.perf_counter() - max(0.0, time.time() - self.start)
        self.say(f"streaming (speed-up {self.speed_up:g}x) ...")
        readers = [asyncio.create_task(self.read(p)) for p in self.phones]
        reporter = asyncio.create_task(self.report_progress())
        try:
            await asyncio.gather(*(self.stream(p) for p in self.phones))
            if self.stop.is_set():
                # Stopped: a last moment for the acknowledgements on their way.
                await asyncio.gather(*(self.drain(p, 2.0) for p in self.phones))
        finally:
            reporter.cancel()
            for task in readers:
                task.cancel()
            await asyncio.gather(reporter, *readers, return_exceptions=True)

    def summary(self, seconds: float) -> dict[str, Any]:
        t = self.tally
        behaviours = Counter(p.behaviour.value for p in self.plans)
        silent = [p for p in self.phones if p.state == "silent"]
        return {
            "server": self.http,
            "phones": len(self.plans),
            "behaviours": {b.value: behaviours.get(b.value, 0) for b in Behaviour},
            "speed_up": self.speed_up,
            "interval_s": _interval(self.plans),
            "trips_filed": len(self.phones),
            "trips_finished": self.finished,
            "trips_left_active": len(self.phones) - self.finished,
            "fixes_sent": t.sent,
            "fixes_resent": t.resent,
            "fixes_acked": t.acked,
            "fixes_unacked": sum(len(p.unacked) for p in self.phones),
            "duplicates": t.duplicates,
            "sos_sent": t.sos_sent,
            "sos_acked": t.sos_acked,
            "events": dict(sorted(t.events.items())),
            "alerts_raised": dict(sorted(t.alerts.items())),
            "alerts_on_server": self.server_alerts,
            "errors": dict(t.errors),
            "silent_phones": len(silent),
            "silence_timeouts_s": sorted({p.silence_timeout_s for p in silent}),
            "trips": [
                {
                    "trip_id": p.trip_id,
                    "behaviour": p.plan.behaviour.value,
                    "state": p.state,
                    "fixes": p.plan.last + 1,
                }
                for p in self.phones
            ],
            "seconds": round(seconds, 1),
            "interrupted": self.interrupted,
        }


def _interval(plans: Sequence[PhonePlan]) -> float | None:
    for plan in plans:
        if len(plan.fixes) > 1:
            return round(plan.fixes[1].t - plan.fixes[0].t, 3)
    return None


def _counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{k} {v:,}" for k, v in counts.items())


def render_summary(s: dict[str, Any]) -> str:
    """What a person reads at the end."""
    how = "stopped (Ctrl-C)" if s["interrupted"] else "completed"
    lines = [
        f"simulated {s['phones']:,} phones on {s['server']}: {how} after {s['seconds']:g} s "
        f"(speed-up {s['speed_up']:g}x, a fix every {s['interval_s']:g} s of the journey)",
        f"  behaviours:    {_counts(s['behaviours'])}",
        f"  trips:         filed {s['trips_filed']:,}, finished {s['trips_finished']:,}, "
        f"left active {s['trips_left_active']:,}",
        f"  fixes:         sent {s['fixes_sent']:,}, acknowledged {s['fixes_acked']:,}, "
        f"unacknowledged {s['fixes_unacked']:,}, resent {s['fixes_resent']:,}, "
        f"duplicates {s['duplicates']:,}",
        f"  SOS:           sent {s['sos_sent']:,}, acknowledged {s['sos_acked']:,}",
        f"  events:        {_counts(s['events'])}",
        f"  alerts raised: {_counts(s['alerts_raised'])}  (from the acks' events and SOS acks)",
    ]
    if s["alerts_on_server"] is not None:
        lines.append(f"  live alerts:   {_counts(s['alerts_on_server'])}  (GET /v1/alerts)")
    if s["errors"]:
        lines.append(f"  errors:        {_counts(s['errors'])}")
    if s["silent_phones"]:
        timeouts = ", ".join(f"{t:g}" for t in s["silence_timeouts_s"])
        lines.append(
            f"  silent phones: {s['silent_phones']:,}; their trips stay active and the watchdog "
            f"raises signal_lost {timeouts} s after their last fix"
        )
    return "\n".join(lines)


def run_simulation(
    server: str,
    admin_token: str,
    plans: Sequence[PhonePlan],
    *,
    speed_up: float = 1.0,
    silence_timeout_s: float = 120.0,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 5.0,
) -> dict[str, Any]:
    """Run the phones until they are done, or until SIGINT/SIGTERM (then the phones stop,
    their trips are finished, and the summary says so); the summary."""

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []

        def on_signal() -> None:
            if progress is not None and not stop.is_set():
                progress("stopping: finishing the trips (Ctrl-C again to quit at once) ...")
            stop.set()
            for sig in installed:
                loop.remove_signal_handler(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)
        try:
            simulation = Simulation(
                server,
                admin_token,
                plans,
                speed_up=speed_up,
                silence_timeout_s=silence_timeout_s,
                stop=stop,
                progress=progress,
                progress_every_s=progress_every_s,
            )
            return await simulation.run()
        finally:
            for sig in installed:
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)

    return asyncio.run(main())


__all__ = [
    "Behaviour",
    "LivePhone",
    "Mix",
    "PhonePlan",
    "ServiceError",
    "Simulation",
    "Tally",
    "check_rate",
    "enrol",
    "file_trip",
    "fix_dict",
    "fix_frame",
    "fix_payload",
    "fixes_frame",
    "open_phone",
    "plan_phones",
    "render_summary",
    "run_simulation",
    "silence_timeout",
    "sos_frame",
    "ws_base",
]
