"""The webhook API (admins only): registering (the secret once), listing, reading,
disabling, the delivery log; and the app's background task delivering to a real
receiver on a loopback port, signed with the secret the API gave."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections import deque
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from conftest import Account, AddAccount
from fastapi import FastAPI
from trip_world import file_trip

from sigueme.services import webhooks as service
from sigueme.store.models import Alert, AlertOutbox, Role, Webhook, utcnow

# -- a real HTTP receiver ---------------------------------------------------------------


class Receiver:
    """A minimal HTTP/1.1 server on 127.0.0.1: records each request (headers, raw body)
    and answers with the next queued status, then 200."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: deque[int] = deque()
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/sigueme?k=v"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers, body))
            self.arrived.set()
            status = self.answers.popleft() if self.answers else 200
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


@pytest_asyncio.fixture(loop_scope="session")
async def root(add_account: AddAccount) -> Account:
    return await add_account("root", Role.ADMIN)


async def register(client: httpx.AsyncClient, admin: Account, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/webhooks", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def alert_event(app: FastAPI, owner: Account, *, due_in: timedelta = timedelta()) -> str:
    """A trip of ``owner``, an alert and its outbox entry, enqueued as the relay would;
    the deliveries come due after ``due_in``. Returns the alert id."""
    async with app.state.sessions() as session:
        trip = await file_trip(session, owner.id)
        alert = Alert(trip_id=trip.id, kind="sos", severity=4, status="open")
        session.add(alert)
        await session.flush()
        entry = AlertOutbox(alert_id=alert.id, event="raised")
        session.add(entry)
        await session.flush()
        await service.enqueue_deliveries(
            session,
            outbox_id=entry.id,
            alert_id=alert.id,
            trip_id=trip.id,
            event="raised",
            payload={"id": alert.id, "kind": "sos"},
            now=utcnow() + due_in,
        )
        await session.commit()
        return alert.id


# -- registering ------------------------------------------------------------------------


async def test_an_admin_registers_a_webhook_and_sees_its_secret_once(
    client: httpx.AsyncClient, root: Account, add_account: AddAccount
) -> None:
    await add_account("beto", Role.MONITOR)
    response = await client.post(
        "/v1/webhooks",
        json={"url": "https://c5.example.mx/hooks?k=1", "user": "beto", "label": "C5 Morelos"},
        headers=root.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["Location"] == f"/v1/webhooks/{body['id']}"
    assert body["secret"].startswith("sgw_")
    assert len(body["secret"]) >= 40
    assert {k: body[k] for k in ("url", "user", "label", "created_by", "active")} == {
        "url": "https://c5.example.mx/hooks?k=1",
        "user": "beto",
        "label": "C5 Morelos",
        "created_by": "root",
        "active": True,
    }
    assert body["deliveries"] == f"/v1/webhooks/{body['id']}/deliveries"

    one = await client.get(f"/v1/webhooks/{body['id']}", headers=root.headers)
    listed = await client.get("/v1/webhooks", headers=root.headers)
    assert one.status_code == listed.status_code == 200
    assert "secret" not in one.json()
    assert body["secret"] not in one.text
    assert body["secret"] not in listed.text
    assert [w["id"] for w in listed.json()["webhooks"]] == [body["id"]]
    assert one.json() == {k: v for k, v in body.items() if k != "secret"}


async def test_a_chosen_secret_is_kept(
    app: FastAPI, client: httpx.AsyncClient, root: Account
) -> None:
    body = await register(client, root, url="http://127.0.0.1:9/x", secret="my-own-secret-1234567")
    assert body["secret"] == "my-own-secret-1234567"
    assert body["user"] is None
    async with app.state.sessions() as session:
        stored = await session.get(Webhook, body["id"])
        assert stored is not None
        assert stored.secret == "my-own-secret-1234567"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://example.org/x"}, ["body", "url"]),
        ({"url": "file:///etc/passwd"}, ["body", "url"]),
        ({"url": "example.org/hooks"}, ["body", "url"]),
        ({"url": "https://example.org/" + "a" * 2000}, ["body", "url"]),
        ({"url": "https://exa mple.org/"}, ["body", "url"]),
        ({"url": ""}, ["body", "url"]),
        ({}, ["body", "url"]),
        ({"url": "https://example.org/", "secret": "short"}, ["body", "secret"]),
        ({"url": "https://example.org/", "secret": "has spaces in it, long"}, ["body", "secret"]),
        ({"url": "https://example.org/", "user": "nobody"}, ["body", "user"]),
        ({"url": "https://example.org/", "label": "x" * 201}, ["body", "label"]),
        ({"url": "https://example.org/", "events": ["raised"]}, ["body", "events"]),
    ],
)
async def test_bad_registrations_name_the_field(
    client: httpx.AsyncClient, root: Account, body: dict[str, Any], loc: list[str]
) -> None:
    response = await client.post("/v1/webhooks", json=body, headers=root.headers)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == loc
    assert isinstance(detail[0]["msg"], str)
    assert (await client.get("/v1/webhooks", headers=root.headers)).json()["webhooks"] == []


async def test_a_disabled_user_cannot_be_followed(
    app: FastAPI, client: httpx.AsyncClient, root: Account, add_account: AddAccount
) -> None:
    await add_account("beto", Role.MONITOR)
    disabled = await client.post("/v1/users/beto/disable", headers=root.headers)
    assert disabled.status_code == 200, disabled.text
    response = await client.post(
        "/v1/webhooks", json={"url": "https://example.org/", "user": "beto"}, headers=root.headers
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "user"]


# -- who may ----------------------------------------------------------------------------

ROUTES = [
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("GET", "/v1/webhooks/1"),
    ("DELETE", "/v1/webhooks/1"),
    ("GET", "/v1/webhooks/1/deliveries"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_only_admins_manage_webhooks(
    client: httpx.AsyncClient, root: Account, add_account: AddAccount, method: str, path: str
) -> None:
    await register(client, root, url="https://example.org/hook")
    body = {"url": "https://evil.example/"} if method == "POST" else None

    no_token = await client.request(method, path, json=body)
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"] == "Bearer"
    for name, role in [
        ("ana", Role.TRAVELLER),
        ("beto", Role.MONITOR),
        ("dora", Role.DISPATCHER),
    ]:
        account = await add_account(name, role)
        refused = await client.request(method, path, json=body, headers=account.headers)
        assert refused.status_code == 403, (name, refused.text)
        assert "admin" in refused.json()["detail"]

    listed = (await client.get("/v1/webhooks", headers=root.headers)).json()["webhooks"]
    assert [(w["url"], w["active"]) for w in listed] == [("https://example.org/hook", True)]


@pytest.mark.parametrize(("method", "path"), ROUTES[2:])
async def test_an_unknown_webhook_is_not_found(
    client: httpx.AsyncClient, root: Account, method: str, path: str
) -> None:
    response = await client.request(method, path.replace("/1", "/999"), headers=root.headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "no such webhook"}
    bad = await client.request(method, path.replace("/1", "/0"), headers=root.headers)
    assert bad.status_code == 422


# -- disabling and the delivery log -----------------------------------------------------


async def test_disabling_stops_deliveries_and_cancels_pending_ones(
    app: FastAPI, client: httpx.AsyncClient, root: Account, add_account: AddAccount
) -> None:
    ana = await add_account("ana", Role.TRAVELLER)
    hook = await register(client, root, url="https://example.org/hook")
    await alert_event(app, ana, due_in=timedelta(days=1))

    response = await client.delete(f"/v1/webhooks/{hook['id']}", headers=root.headers)
    again = await client.delete(f"/v1/webhooks/{hook['id']}", headers=root.headers)

    assert response.status_code == again.status_code == 200
    assert response.json()["active"] is False
    assert response.json()["disabled_at"] is not None
    assert again.json() == response.json()
    log = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=root.headers)).json()
    assert [(d["status"], d["next_attempt_at"]) for d in log["deliveries"]] == [("cancelled", None)]
    # Told of nothing more.
    await alert_event(app, ana)
    log = (await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=root.headers)).json()
    assert len(log["deliveries"]) == 1


async def test_the_delivery_log_shows_every_attempt(
    app: FastAPI,
    client: httpx.AsyncClient,
    root: Account,
    add_account: AddAccount,
    receiver: Receiver,
) -> None:
    ana = await add_account("ana", Role.TRAVELLER)
    hook = await register(client, root, url=receiver.url())
    # Due a day from now: the app's own background loop leaves them alone.
    later = timedelta(days=1)
    first = await alert_event(app, ana, due_in=later)
    second = await alert_event(app, ana, due_in=later)
    receiver.answers.extend([500, 502])  # the first attempts of both fail
    now = utcnow() + later
    async with httpx.AsyncClient() as http:
        assert await service.deliver_due(app.state.sessions, http, now=now) == 2
        retry = now + timedelta(minutes=1)
        assert await service.deliver_due(app.state.sessions, http, now=retry) == 2

    response = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=root.headers)

    assert response.status_code == 200
    deliveries = response.json()["deliveries"]
    assert [d["alert_id"] for d in deliveries] == [second, first]  # newest first
    for d in deliveries:
        assert (d["status"], d["attempt_count"], d["event"]) == ("delivered", 2, "raised")
        assert d["delivered_at"] is not None
        assert d["next_attempt_at"] is None
        codes = [a["status_code"] for a in d["attempts"]]
        assert codes[1] == 200
        assert codes[0] in (500, 502)
        assert all(a["error"] is None and a["duration_ms"] >= 0 for a in d["attempts"])
        assert d["attempts"][0]["at"] < d["attempts"][1]["at"]
    assert sorted(d["attempts"][0]["status_code"] for d in deliveries) == [500, 502]
    limited = await client.get(
        f"/v1/webhooks/{hook['id']}/deliveries?limit=1", headers=root.headers
    )
    assert [d["alert_id"] for d in limited.json()["deliveries"]] == [second]
    too_many = await client.get(
        f"/v1/webhooks/{hook['id']}/deliveries?limit=100000", headers=root.headers
    )
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["query", "limit"]


# -- the app's background task ----------------------------------------------------------


async def test_the_app_delivers_signed_alerts_in_the_background(
    app: FastAPI,
    client: httpx.AsyncClient,
    root: Account,
    add_account: AddAccount,
    receiver: Receiver,
) -> None:
    ana = await add_account("ana", Role.TRAVELLER)
    hook = await register(client, root, url=receiver.url())
    assert isinstance(app.state.webhook_wake, asyncio.Event)

    alert_id = await alert_event(app, ana)
    app.state.webhook_wake.set()
    await asyncio.wait_for(receiver.arrived.wait(), 10)

    ((headers, body),) = receiver.requests
    timestamp = headers["x-sigueme-timestamp"]
    mac = hmac.new(hook["secret"].encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert headers["x-sigueme-signature"] == "sha256=" + mac.hexdigest()
    assert headers["x-sigueme-event"] == "raised"
    sent = json.loads(body)
    assert (sent["alert_id"], sent["event"], sent["alert"]) == (
        alert_id,
        "raised",
        {"id": alert_id, "kind": "sos"},
    )
    assert headers["x-sigueme-delivery"] == str(sent["delivery_id"])
    for _ in range(100):
        log = (
            await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=root.headers)
        ).json()["deliveries"]
        if log and log[0]["status"] == "delivered":
            break
        await asyncio.sleep(0.05)
    assert log[0]["status"] == "delivered"
    assert [a["status_code"] for a in log[0]["attempts"]] == [200]
