"""Nothing secret or personal in the logs (issue 7, "Security and privacy").

A realistic session runs with every ``sigueme`` logger (and the rest) at DEBUG: an admin
enrols a traveller with her name and phone, registers a webhook (delivered to a receiver
on this machine); she files a trip, sets her PINs, shares it with a monitor and by link,
binds a tracker app; her phone streams fixes and presses SOS; the tracker app sends a
fix; the monitor and the link holder watch; a dispatcher works the alert and exports it;
she cancels with a wrong PIN and then the right one; she files a report that a
dispatcher reveals; a citizen reports by WhatsApp (the reply to them fails, and that is
logged). Then no log record of ``sigueme`` (or ``uvicorn``) holds a token (``sgm_``,
``sgl_``, ``sgd_``, ``sgw_``), a name, a phone number, a report's text or a position to
four decimals.

The same holds for the real ``sigueme serve --log-level debug`` (uvicorn's loggers, with
share-link tokens and device secrets in URL paths): see the second test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_websocket import connect
from fastapi import FastAPI
from fuzz_world import APP_SECRET, PEOPLE, ROUTE, Account, add_people, fuzz_settings
from sqlalchemy import func, select
from websockets.sync.client import connect as ws_connect

from sigueme.api.app import create_app
from sigueme.bench.live import free_port
from sigueme.reports.whatsapp import SIGNATURE_HEADER, sign
from sigueme.store.models import AlertOutbox, WebhookAttempt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "reports"))
from graph_standin import message, notification

NAME, CONTACT = "Lucía Fernández Ortega", "+52 777 555 0101"
WA_NAME, WA_NUMBER = "Rosa Citlali Tapia", "5217775550202"
REPORT_TEXT = "Una camioneta gris nos sigue desde Temixco"
NOTE = "Ayuda, me siguen en la glorieta"
# Fixes along the route, to seven decimals: no log may hold any of them to four.
T0 = time.time() - 300
FIXES = [
    (
        round(ROUTE[0][1] + i * 0.0004321, 7),
        round(ROUTE[0][0] + i * 0.0005432, 7),
    )
    for i in range(8)
]
SOS_AT = (18.9187654, -99.2298765)
REPORT_AT = (18.9012345, -99.2123456)
TRACKER_AT = (18.9123987, -99.2267123)
TOKEN = re.compile(r"sg[mldw]_")


def _four_decimals(value: float) -> set[str]:
    """How a log could show ``value`` to four decimals or more: rounded or cut."""
    text = f"{value:.7f}"
    cut = text[: text.index(".") + 5]
    return {cut, f"{value:.4f}"}


class Receiver:
    """A webhook endpoint on this machine that answers 200 to everything."""

    def __init__(self) -> None:
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            self.requests += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def live_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The whole app, background services and webhook deliveries included."""
    app = create_app(fuzz_settings(database_url, tmp_path / "evidence", escalate_after_s=120.0))
    async with app.router.lifespan_context(app):
        yield app


async def _wait(done: Any, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await done():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _session(app: FastAPI, people: dict[str, Account], hook_port: int) -> dict[str, Any]:
    """Everything a day of Sígueme does, once; returns the secrets it handed out."""
    secrets: dict[str, Any] = {}
    root, diego, marta = people["root"].headers, people["diego"].headers, people["marta"].headers
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sigueme.test") as c:

        async def ok(r: httpx.Response, status: int = 200) -> Any:
            assert r.status_code == status, (r.request.url, r.status_code, r.text[:300])
            return r.json() if r.content else None

        created = await ok(
            await c.post(
                "/v1/users",
                json={
                    "name": "lucia",
                    "role": "traveller",
                    "display_name": NAME,
                    "contact": CONTACT,
                },
                headers=root,
            ),
            201,
        )
        lucia = {"Authorization": f"Bearer {created['token']}"}
        secrets["lucia"] = created["token"]
        hook = await ok(
            await c.post(
                "/v1/webhooks",
                json={"url": f"http://127.0.0.1:{hook_port}/hook?key=llave-privada", "label": "C5"},
                headers=root,
            ),
            201,
        )
        secrets["webhook"] = hook["secret"]
        departure = datetime.now(UTC) - timedelta(seconds=300)
        trip = await ok(
            await c.post(
                "/v1/trips",
                json={
                    "route": {"type": "LineString", "coordinates": ROUTE},
                    "departure": departure.isoformat(),
                    "duration_min": 60,
                    "label": "A casa de mi mamá",
                },
                headers=lucia,
            ),
            201,
        )
        trip_id = trip["id"]
        await ok(
            await c.put("/v1/me/pins", json={"pin": "2468", "duress_pin": "1357"}, headers=lucia),
            204,
        )
        await ok(
            await c.post(
                f"/v1/trips/{trip_id}/shares", json={"user": "marta", "hours": 2}, headers=lucia
            ),
            201,
        )
        link = await ok(
            await c.post(
                f"/v1/trips/{trip_id}/links", json={"hours": 2, "label": "mamá"}, headers=lucia
            ),
            201,
        )
        secrets["link"] = link["token"]
        device = await ok(
            await c.post(
                "/v1/devices",
                json={"protocol": "osmand", "device_id": "lucia-moto", "trip_id": trip_id},
                headers=lucia,
            ),
            201,
        )
        secrets["device"] = device["secret"]

        # The watchers: the monitor by header, the link holder by its first frame.
        async with (
            connect(app, "/v1/live", marta) as monitor,
            connect(app, "/v1/live") as holder,
            connect(app, f"/v1/trips/{trip_id}/phone", lucia) as phone,
        ):
            assert (await monitor.receive_json())["type"] == "ready"
            await monitor.send_json({"type": "subscribe", "trips": [trip_id]})
            assert (await monitor.receive_json())["type"] == "FeatureCollection"
            await holder.send_json({"type": "auth", "token": link["token"]})
            assert (await holder.receive_json())["type"] == "ready"
            assert (await phone.receive_json())["type"] == "ready"
            for seq, (lat, lon) in enumerate(FIXES):
                await phone.send_json(
                    {
                        "type": "fix",
                        "seq": seq,
                        "t": T0 + 10 * seq,
                        "lat": lat,
                        "lon": lon,
                        "accuracy": 6.5,
                        "battery": 64,
                    }
                )
                assert (await phone.receive_json())["type"] == "ack"
            await phone.send_json(
                {
                    "type": "sos",
                    "note": NOTE,
                    "fix": {"seq": 99, "t": T0 + 200, "lat": SOS_AT[0], "lon": SOS_AT[1]},
                }
            )
            sos = await phone.receive_json()
            assert sos["type"] == "sos_ack", sos

            # The tracker app, its secret in the URL path as Traccar Client sends it.
            r = await c.get(
                f"/osmand/{device['secret']}",
                params={
                    "id": "lucia-moto",
                    "lat": TRACKER_AT[0],
                    "lon": TRACKER_AT[1],
                    "timestamp": int(T0 + 210),
                    "batt": 63,
                },
            )
            await ok(r)

            # The dispatcher works the SOS and exports it.
            alerts = await ok(await c.get("/v1/alerts", headers=diego))
            assert any(a["id"] == sos["alert_id"] for a in alerts["alerts"])
            await ok(await c.get(f"/v1/alerts/{sos['alert_id']}", headers=diego))
            r = await c.get(f"/v1/alerts/{sos['alert_id']}.cap", headers=diego)
            assert r.status_code == 200
            await ok(
                await c.post(
                    f"/v1/alerts/{sos['alert_id']}/acknowledge",
                    json={"note": "enterado"},
                    headers=diego,
                )
            )
            await ok(
                await c.post(
                    f"/v1/alerts/{sos['alert_id']}/dispatch",
                    json={"unit": "MOR-117"},
                    headers=diego,
                )
            )
            await phone.send_json({"type": "sos", "fix": None, "note": "otra vez"})
            assert (await phone.receive_json())["type"] == "sos_ack"
            await phone.send_json({"type": "cancel", "pin": "0000"})
            assert (await phone.receive_json())["field"] == "pin"
            await phone.send_json({"type": "cancel", "pin": "2468"})
            assert (await phone.receive_json())["type"] == "cancelled"
            await ok(await c.get(f"/v1/trips/{trip_id}/track", headers=marta))
            await ok(
                await c.get(
                    f"/v1/trips/{trip_id}", headers={"Authorization": f"Bearer {link['token']}"}
                )
            )

        # A report with its place, revealed by a dispatcher; one more by WhatsApp.
        report = await ok(
            await c.post(
                "/v1/reports",
                json={
                    "text": REPORT_TEXT,
                    "lat": REPORT_AT[0],
                    "lon": REPORT_AT[1],
                    "trip_id": trip_id,
                },
                headers=lucia,
            ),
            201,
        )
        await ok(await c.get(f"/v1/reports/{report['id']}", headers=diego))
        revealed = await ok(
            await c.post(
                f"/v1/reports/{report['id']}/reveal",
                json={"reason": "Carpeta CI-123"},
                headers=diego,
            )
        )
        assert CONTACT in str(revealed)
        document = notification(
            message(
                "text",
                {"body": REPORT_TEXT},
                wamid="wamid.privacy",
                timestamp=int(time.time()),
                sender=WA_NUMBER,
            ),
            name=WA_NAME,
            wa_id=WA_NUMBER,
        )
        body = _json(document)
        r = await c.post(
            "/webhooks/whatsapp",
            content=body,
            headers={"content-type": "application/json", SIGNATURE_HEADER: sign(APP_SECRET, body)},
        )
        assert (await ok(r))["taken"] == 1

        await ok(await c.post(f"/v1/trips/{trip_id}/finish", headers=lucia))

    async def relayed() -> bool:
        async with app.state.sessions() as session:
            waiting = await session.scalar(
                select(func.count())
                .select_from(AlertOutbox)
                .where(AlertOutbox.published_at.is_(None))
            )
            attempts = await session.scalar(select(func.count()).select_from(WebhookAttempt))
        return waiting == 0 and (attempts or 0) > 0

    await _wait(relayed, "alerts relayed to the police queue and a webhook delivered")
    return secrets


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def _forbidden(secrets: dict[str, Any], people: dict[str, Account]) -> dict[str, str]:
    """What no log may hold, and what it is."""
    out: dict[str, str] = {}
    for who, value in secrets.items():
        out[str(value)] = f"the {who} token"
    for account in people.values():
        out[account.token] = f"{account.name}'s token"
    for name, (_, display, contact) in PEOPLE.items():
        out[display] = f"{name}'s name"
        out[contact] = f"{name}'s phone"
    for text, what in (
        (NAME, "the traveller's name"),
        (CONTACT, "the traveller's phone"),
        (CONTACT.replace(" ", "").lstrip("+"), "the traveller's phone, digits"),
        (WA_NAME, "the WhatsApp reporter's name"),
        (WA_NUMBER, "the WhatsApp reporter's number"),
        (REPORT_TEXT, "a report's text"),
        (NOTE, "an SOS note"),
        ("llave-privada", "the webhook URL's query string"),
    ):
        out[text] = what
    for lat, lon in [*FIXES, SOS_AT, REPORT_AT, TRACKER_AT]:
        for value in (lat, lon):
            for shown in _four_decimals(value):
                out[shown] = "a position"
    return out


def _leaks(lines: Iterable[tuple[str, str]], forbidden: dict[str, str]) -> list[str]:
    found = []
    for source, line in lines:
        if TOKEN.search(line):
            found.append(f"{source}: a token prefix in {line[:300]!r}")
        for text, what in forbidden.items():
            if text in line:
                found.append(f"{source}: {what} in {line[:300]!r}")
    return found


def _text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text


async def test_a_realistic_session_logs_nothing_secret_or_personal(
    live_app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    people = await add_people(live_app.state.engine)
    caplog.set_level(logging.DEBUG)  # every logger, the root too
    caplog.set_level(logging.DEBUG, logger="sigueme")
    caplog.set_level(logging.DEBUG, logger="uvicorn.access")
    async with Receiver() as port:
        secrets = await _session(live_app, people, port)
    forbidden = _forbidden(secrets, people)
    ours = [r for r in caplog.records if r.name.startswith(("sigueme", "uvicorn"))]
    leaks = _leaks(((r.name, _text(r)) for r in ours), forbidden)
    assert not leaks, "\n".join(leaks)
    # The session did log (a webhook delivery, the WhatsApp reply that failed): the
    # check above looked at real records.
    assert any("webhooks: delivery" in r.getMessage() for r in ours), [r.getMessage() for r in ours]
    assert any("whatsapp: reply not sent" in r.getMessage() for r in ours)
    # Other libraries: only the database drivers' own DEBUG traces (SQL parameters) may
    # hold anything, and only when the operator turns DEBUG on for them.
    others = [r for r in caplog.records if not r.name.startswith(("sigueme", "uvicorn"))]
    third = _leaks(((r.name, _text(r)) for r in others), forbidden)
    drivers = ("aiosqlite", "asyncpg", "sqlalchemy")
    beyond = [line for line in third if not line.startswith(drivers)]
    assert not beyond, "\n".join(beyond)
    print(
        f"\n[privacy] {len(ours)} sigueme records, no leak; other libraries at DEBUG: "
        f"{len(others)} records, {len(third)} with something personal "
        f"({sorted({line.split(':')[0] for line in third})})"
    )


def test_sigueme_serve_at_debug_logs_no_token_or_position(tmp_path: Path) -> None:
    """The real server, its uvicorn loggers at DEBUG: share-link tokens and device
    secrets travel in URL paths (``/s/{token}``, ``/osmand/{secret}``) and must not reach
    its output."""
    db = tmp_path / "serve.db"
    env = {**os.environ, "SIGUEME_DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    env.pop("SIGUEME_REDIS_URL", None)
    sigueme = str(Path(sys.executable).with_name("sigueme"))

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sigueme, *args], env=env, capture_output=True, text=True, timeout=120, check=True
        )
        return done.stdout.strip()

    cli("migrate")
    token = cli(
        "users", "add", "lucia", "--role", "traveller", "--display-name", NAME, "--contact", CONTACT
    )
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [sigueme, "serve", "--port", str(port), "--log-level", "debug"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            secrets = _drive(f"http://127.0.0.1:{port}", token)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    output = log_path.read_text()
    assert "Uvicorn running" in output or "listening" in output, output[:2000]
    forbidden = {token: "the traveller's token", NAME: "a name", CONTACT: "a phone"}
    forbidden |= {value: what for what, value in secrets.items()}
    for lat, lon in FIXES[:3]:
        for value in (lat, lon):
            forbidden |= dict.fromkeys(_four_decimals(value), "a position")
    leaks = _leaks((("serve", line) for line in output.splitlines()), forbidden)
    assert not leaks, "\n".join(leaks)


def _drive(base: str, token: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=10) as c:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if c.get("/healthz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "sigueme serve did not start"
            time.sleep(0.1)
        departure = datetime.now(UTC) - timedelta(seconds=300)
        trip = c.post(
            "/v1/trips",
            json={
                "route": {"type": "LineString", "coordinates": ROUTE},
                "departure": departure.isoformat(),
                "duration_min": 60,
            },
            headers=headers,
        ).json()
        link = c.post(f"/v1/trips/{trip['id']}/links", json={"hours": 1}, headers=headers).json()
        device = c.post(
            "/v1/devices",
            json={"protocol": "osmand", "device_id": "moto", "trip_id": trip["id"]},
            headers=headers,
        ).json()
        assert c.get(f"/s/{link['token']}").status_code == 200
        assert (
            c.get("/v1/me", headers={"Authorization": f"Bearer {link['token']}"}).status_code == 200
        )
        r = c.get(
            f"/osmand/{device['secret']}",
            params={
                "id": "moto",
                "lat": FIXES[2][0],
                "lon": FIXES[2][1],
                "timestamp": int(T0 + 20),
            },
        )
        assert r.status_code == 200, r.text
        assert (
            c.get("/v1/me", headers={"Authorization": "Bearer sgm_wrong-token"}).status_code == 401
        )
    ws_base = base.replace("http://", "ws://")
    with ws_connect(f"{ws_base}/v1/trips/{trip['id']}/phone", additional_headers=headers) as ws:
        assert '"ready"' in ws.recv(timeout=10)
        for seq, (lat, lon) in enumerate(FIXES[:2]):
            ws.send(
                _json(
                    {"type": "fix", "seq": seq, "t": T0 + 10 * seq, "lat": lat, "lon": lon}
                ).decode()
            )
            assert '"ack"' in ws.recv(timeout=10)
    with ws_connect(f"{ws_base}/v1/live") as ws:
        ws.send(_json({"type": "auth", "token": link["token"]}).decode())
        assert '"ready"' in ws.recv(timeout=10)
    return {"the link token": link["token"], "the device secret": device["secret"]}
