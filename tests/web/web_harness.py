"""What the browser tests drive: a real ``sigueme serve`` worker, people enrolled through
the API, trips filed through it, and phones on the trip's websocket.

Imported by the web tests (``from web_harness import ...``). Nothing here reaches into the
service: it is started as a process and spoken to over HTTP and websockets, like a phone
and an operator would (the one exception, a share link made to end early, is written
with the store's models, as the API never makes a share that has already ended).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import tempfile
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    ViewportSize,
)
from websockets.asyncio.client import ClientConnection, connect

from sigueme.bench.live import Worker, free_port, service_env, sigueme_command, stop_worker
from sigueme.geo import Fix, Route
from sigueme.replay import parse_route
from sigueme.simulate import Drive, Move, Noise, Offset, simulate

ROOT = Path(__file__).parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
SAMPLE_ROUTE = ROOT / "sigueme" / "replay" / "samples" / "cuernavaca_route.geojson"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The alert beep plays without a click first (a real dispatcher clicks once).
    "--autoplay-policy=no-user-gesture-required",
]
DESKTOP: ViewportSize = {"width": 1366, "height": 860}
START_TIMEOUT_S = 60.0
WAIT_MS = 20_000


# -- the service ------------------------------------------------------------------------------


def start_service(database_url: str, redis_url: str, **settings: str) -> Worker:
    """``sigueme serve`` on a free loopback port with ``SIGUEME_*`` ``settings`` (lower
    case names), once ``/healthz`` answers."""
    port = free_port()
    env = service_env(database_url, redis_url)
    env["SIGUEME_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    for name, value in settings.items():
        env[f"SIGUEME_{name.upper()}"] = value
    log = tempfile.TemporaryFile("a+b")  # noqa: SIM115  (closed by stop_worker)
    process = subprocess.Popen(
        sigueme_command("serve", "--port", str(port), "--log-level", "warning"),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    worker = Worker(process, port, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"sigueme serve exited:\n{worker.log_text()}")
        try:
            if httpx.get(f"{worker.http}/healthz", timeout=1).status_code == 200:
                return worker
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_worker(worker)
            raise RuntimeError("sigueme serve did not answer /healthz in time")
        time.sleep(0.1)


@dataclass
class Service:
    worker: Worker
    database_url: str
    admin_token: str

    @property
    def http(self) -> str:
        return self.worker.http

    @property
    def ws(self) -> str:
        return self.worker.ws

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.http, headers=headers, timeout=30)

    async def enrol(self, role: str, display_name: str, **extra: str) -> str:
        """A new user with ``role``, their login name made from ``display_name`` and
        kept unique: their token."""
        plain = unicodedata.normalize("NFKD", display_name).encode("ascii", "ignore").decode()
        name = ".".join(re.findall(r"[a-z]+", plain.lower())[:2]) + "." + uuid.uuid4().hex[:4]
        async with self.client(self.admin_token) as admin:
            answer = await admin.post(
                "/v1/users",
                json={"name": name, "role": role, "display_name": display_name, **extra},
            )
        assert answer.status_code == 201, answer.text
        token: str = answer.json()["token"]
        return token

    async def me(self, token: str) -> dict[str, Any]:
        async with self.client(token) as c:
            answer = await c.get("/v1/me")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


# -- trips and phones -------------------------------------------------------------------------


@dataclass
class Journey:
    """A trip filed on the sample route across Cuernavaca and the fixes of its phone."""

    trip_id: str
    token: str
    route: Route
    fixes: list[Fix]


def sample_route() -> Route:
    return parse_route(SAMPLE_ROUTE.read_bytes())


async def file_trip(
    service: Service,
    token: str,
    label: str,
    *,
    moves: list[Move] | None = None,
    started_min_ago: float = 10.0,
    duration_min: float = 40.0,
    seed: int = 1,
) -> Journey:
    """File a trip that departed ``started_min_ago`` and simulate its phone: fixes every
    5 s from a minute after departure, along the route or as ``moves`` say."""
    route = sample_route()
    departure = datetime.now(UTC) - timedelta(minutes=started_min_ago)
    async with service.client(token) as c:
        answer = await c.post(
            "/v1/trips",
            json={
                "route": {"type": "LineString", "coordinates": route.lonlat.tolist()},
                "departure": departure.isoformat(),
                "duration_min": duration_min,
                "label": label,
                # Filed after its departure: the watchdog would otherwise find it silent
                # (signal_lost) in the moment before the phone sends its first fixes.
                "silence_timeout_s": 1800,
            },
        )
    assert answer.status_code == 201, answer.text
    fixes = simulate(
        route,
        moves or [Drive(route.length_m)],
        start_t=departure.timestamp() + 60,
        interval_s=5.0,
        noise=Noise(noise_m=4.0, outlier_rate=0.0),
        seed=seed,
        battery_start=64.0,
    )
    return Journey(answer.json()["id"], token, route, fixes)


def detour(route: Route) -> list[Move]:
    """Along the route to 30 %, then 600 m off it (four corridors) and on, parallel."""
    return [Drive(0.30 * route.length_m), Offset(600.0), Drive(0.42 * route.length_m)]


@dataclass
class Phone:
    """The traveller's phone on the trip's websocket."""

    ws: ClientConnection
    journey: Journey
    seq: int = 0
    sent: int = field(default=0)

    @classmethod
    async def open(cls, service: Service, journey: Journey) -> Phone:
        ws = await connect(
            f"{service.ws}/v1/trips/{journey.trip_id}/phone",
            additional_headers={"Authorization": f"Bearer {journey.token}"},
            open_timeout=30,
        )
        ready = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert ready["type"] == "ready", ready
        return cls(ws, journey)

    def _frame_fix(self, fix: Fix) -> dict[str, Any]:
        self.seq += 1
        return {
            "seq": self.seq,
            "t": fix.t,
            "lat": fix.lat,
            "lon": fix.lon,
            "accuracy": fix.accuracy,
            "speed": fix.speed,
            "battery": fix.battery,
        }

    async def _answer(self, kind: str) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if frame["type"] == kind:
                return frame
            assert frame["type"] not in ("error",), frame

    async def send(self, count: int) -> list[Fix]:
        """The journey's next ``count`` fixes in one frame; waits for the ack."""
        fixes = self.journey.fixes[self.sent : self.sent + count]
        assert fixes, "the journey has no more fixes"
        self.sent += len(fixes)
        await self.ws.send(
            json.dumps({"type": "fixes", "fixes": [self._frame_fix(f) for f in fixes]})
        )
        ack = await self._answer("ack")
        assert len(ack["seqs"]) == len(fixes), ack
        return fixes

    async def send_until(self, before_t: float) -> int:
        """Every fix of the journey older than ``before_t`` (in frames of 200)."""
        count = 0
        while self.sent < len(self.journey.fixes) and self.journey.fixes[self.sent].t < before_t:
            n = 0
            while (
                self.sent + n < len(self.journey.fixes)
                and self.journey.fixes[self.sent + n].t < before_t
                and n < 200
            ):
                n += 1
            await self.send(n)
            count += n
        return count

    async def sos(self, note: str) -> str:
        """Press SOS at the last position sent: the alert's id."""
        last = self.journey.fixes[max(self.sent - 1, 0)]
        now = Fix(t=time.time(), lat=last.lat, lon=last.lon, accuracy=6.0, battery=last.battery)
        await self.ws.send(json.dumps({"type": "sos", "fix": self._frame_fix(now), "note": note}))
        answer = await self._answer("sos_ack")
        alert_id: str = answer["alert_id"]
        return alert_id

    async def close(self) -> None:
        await self.ws.close()


# -- the browser ------------------------------------------------------------------------------


@dataclass
class Watched:
    """A page and what went wrong on it: console errors, script errors, and any request
    that tried to leave the service (the pages must work offline)."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    expected_errors: tuple[str, ...] = ()

    def check(self) -> None:
        unexpected = [e for e in self.errors if not any(x in e for x in self.expected_errors)]
        assert not unexpected, unexpected
        assert not self.outside, self.outside


async def open_page(
    browser: Browser, service: Service, *, viewport: ViewportSize | None = None
) -> Watched:
    context = await browser.new_context(
        viewport=viewport or DESKTOP,
        locale="es-MX",
        timezone_id="America/Mexico_City",
        accept_downloads=True,
    )
    page = await context.new_page()
    watched = Watched(context, page)
    base = service.http + "/"

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(f"console: {message.text} @ {message.location}")

    def on_request(request: Request) -> None:
        url = request.url
        if not (url.startswith(base) or url.startswith(("data:", "blob:"))):
            watched.outside.append(url)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"script: {exc}"))
    page.on("request", on_request)
    # Nothing leaves the machine, whatever a page would ask for.
    await context.route(
        lambda url: not url.startswith(base),
        lambda route: route.abort(),
    )
    return watched


async def log_in(page: Page, service: Service, token: str) -> None:
    """The log-in page as a person uses it: paste the token, press Entrar."""
    await page.goto(f"{service.http}/entrar")
    await page.get_by_label("Clave de acceso").fill(token)
    await page.get_by_role("button", name="Entrar").click()


def screenshot_path(name: str) -> str:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return str(SCREENSHOTS / name)


def chromium_or_fail() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            f"{CHROMIUM} is missing: run scripts/setup.sh as root (it installs Debian's "
            "chromium and chromium-driver)"
        )
    return CHROMIUM
