"""Webhook deliveries (:mod:`sigueme.services.webhooks`) to a real HTTP receiver on a
loopback port, on both backends: what the receiver sees (signature, headers, body),
retries with growing delays, giving up, every attempt logged, one dead endpoint not
holding up another, who hears of which alert, idempotent enqueueing, and two workers
never sending the same attempt.

Time is driven by passing ``now``; nothing sleeps for a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sigueme.errors import Invalid
from sigueme.geo import Route, TripPlan
from sigueme.services import webhooks
from sigueme.store import trips as store
from sigueme.store.db import make_engine, sessionmaker
from sigueme.store.models import (
    Alert,
    AlertOutbox,
    Role,
    Share,
    User,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from sigueme.store.users import add_user

# About 3.1 km through Cuernavaca, Morelos, [lon, lat].
ROUTE = [[-99.2340, 18.9210], [-99.2280, 18.9150], [-99.2200, 18.9100], [-99.2100, 18.9050]]
SECRET = "s3cret-for-the-test-receiver"

# -- a real HTTP receiver ---------------------------------------------------------------


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A minimal HTTP/1.1 server on 127.0.0.1 that records every request and answers
    with the next of ``answers`` (a status code, or ``"hang"``: never answer), then
    ``default``."""

    default: int | str = 200
    answers: deque[int | str] = field(default_factory=deque)
    requests: list[Received] = field(default_factory=list)
    delay_s: float = 0.0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, path: str = "/hooks/sigueme?token=querysecret") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *answers: int | str) -> None:
        self.answers.extend(answers)

    async def stop(self) -> None:
        self._release.set()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not line:
                return
            method, target, _version = line.split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                raw = (await reader.readline()).decode("latin-1").rstrip("\r\n")
                if not raw:
                    break
                name, _, value = raw.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, target, headers, body))
            self.arrived.set()
            answer = self.answers.popleft() if self.answers else self.default
            if answer == "hang":
                await self._release.wait()
                return
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            writer.write(
                f"HTTP/1.1 {answer} Whatever\r\nContent-Type: text/plain\r\n"
                "Content-Length: 2\r\nConnection: close\r\n\r\nok".encode()
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@pytest_asyncio.fixture(loop_scope="session")
async def receivers() -> AsyncIterator[list[Receiver]]:
    """Receivers made by a test (``await receiver(...)``), all stopped afterwards."""
    made: list[Receiver] = []
    yield made
    for r in made:
        await r.stop()


def dead_url() -> str:
    """A loopback URL where nothing listens: the connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def verify(request: Received, secret: str) -> None:
    """What a receiver does: recompute the HMAC over timestamp + "." + raw body, compare
    in constant time, refuse a stale timestamp."""
    timestamp = request.headers["x-sigueme-timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(request.headers["x-sigueme-signature"], f"sha256={expected}")
    assert abs(int(timestamp) - time.time()) < 60


# -- a small world ----------------------------------------------------------------------


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    engine: AsyncEngine
    users: dict[str, int]
    client: httpx.AsyncClient
    receivers: list[Receiver]
    outbox: int = 0

    async def receiver(self, default: int | str = 200, *answers: int | str) -> Receiver:
        r = Receiver(default=default)
        r.answer(*answers)
        await r.start()
        self.receivers.append(r)
        return r

    async def user(self, name: str, role: Role) -> int:
        async with self.sessions() as session:
            user, _ = await add_user(session, name, role)
            await session.commit()
        self.users[name] = user.id
        return user.id

    async def trip(self, owner: str) -> str:
        start = datetime(2026, 5, 28, 14, tzinfo=UTC).timestamp()
        plan = TripPlan(route=Route(ROUTE), departure=start, arrival=start + 1800)
        async with self.sessions() as session:
            trip = await store.create_trip(
                session, owner_id=self.users[owner], plan=plan, overrides={}, label="t"
            )
            await session.commit()
            return trip.id

    async def share(self, trip_id: str, grantee: str, *, days: float = 1) -> int:
        now = utcnow()
        async with self.sessions() as session:
            share = Share(
                trip_id=trip_id,
                grantee_id=self.users[grantee],
                created_by=self.users["ana"],
                created_at=now,
                expires_at=now + timedelta(days=days),
            )
            session.add(share)
            await session.commit()
            return share.id

    async def revoke(self, share_id: int) -> None:
        async with self.sessions() as session:
            await session.execute(
                update(Share).where(Share.id == share_id).values(revoked_at=utcnow())
            )
            await session.commit()

    async def webhook(self, url: str, *, user: str | None = None, secret: str = SECRET) -> Webhook:
        async with self.sessions() as session:
            hook, _ = await webhooks.create_webhook(
                session, url=url, by=self.users["root"], user_name=user, secret=secret
            )
            await session.commit()
            return hook

    async def alert(self, trip_id: str, kind: str = "off_route") -> str:
        async with self.sessions() as session:
            alert = Alert(trip_id=trip_id, kind=kind, severity=3, status="open")
            session.add(alert)
            await session.commit()
            return alert.id

    async def event(
        self,
        trip_id: str,
        alert_id: str | None = None,
        event: str = "raised",
        *,
        now: datetime | None = None,
    ) -> tuple[int, str, int]:
        """An outbox entry for an alert of ``trip_id`` (a new one unless given), enqueued
        as the relay would: ``(outbox id, alert id, deliveries added)``."""
        if alert_id is None:
            alert_id = await self.alert(trip_id)
        async with self.sessions() as session:
            entry = AlertOutbox(alert_id=alert_id, event=event)
            session.add(entry)
            await session.flush()
            added = await webhooks.enqueue_deliveries(
                session,
                outbox_id=entry.id,
                alert_id=alert_id,
                trip_id=trip_id,
                event=event,
                payload=payload(alert_id, trip_id),
                now=now,
            )
            await session.commit()
            return entry.id, alert_id, added

    async def deliveries(self, webhook_id: int | None = None) -> list[WebhookDelivery]:
        query = select(WebhookDelivery).order_by(WebhookDelivery.id)
        if webhook_id is not None:
            query = query.where(WebhookDelivery.webhook_id == webhook_id)
        async with self.sessions() as session:
            return list((await session.scalars(query)).all())

    async def attempts(self, delivery_id: int) -> list[WebhookAttempt]:
        async with self.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(WebhookAttempt)
                        .where(WebhookAttempt.delivery_id == delivery_id)
                        .order_by(WebhookAttempt.id)
                    )
                ).all()
            )

    async def deliver(self, now: datetime, **kwargs: Any) -> int:
        return await webhooks.deliver_due(self.sessions, self.client, now=now, **kwargs)


def payload(alert_id: str, trip_id: str) -> dict[str, Any]:
    return {
        "id": alert_id,
        "trip_id": trip_id,
        "kind": "off_route",
        "severity": 3,
        "description_es": "Salió de su ruta en Cuernavaca: 350 m fuera del corredor",
        "position": [-99.2345, 18.9211],
    }


@pytest_asyncio.fixture(loop_scope="session")
async def world(engine: AsyncEngine, receivers: list[Receiver]) -> AsyncIterator[World]:
    sessions = sessionmaker(engine)
    async with httpx.AsyncClient() as client:
        w = World(sessions, engine, {}, client, receivers)
        await w.user("root", Role.ADMIN)
        await w.user("ana", Role.TRAVELLER)
        yield w


# -- signing ----------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    # RFC 4231 test case 2's key and message, with our "<timestamp>." prefix moved into
    # the message: the hex is computed here independently of sign().
    body = b'{"a":1}'
    expected = hmac.new(b"Jefe", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.sign("Jefe", 1700000000, body) == "sha256=" + expected
    assert webhooks.sign("Jefe", 1700000001, body) != webhooks.sign("Jefe", 1700000000, body)


def test_backoff_doubles_from_five_seconds_up_to_an_hour() -> None:
    nominal = [webhooks.backoff_s(n) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert nominal == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert webhooks.backoff_s(100) == 3600
    for n in range(1, 20):
        assert 0.8 * webhooks.backoff_s(n) <= webhooks.jittered_backoff_s(n)
        assert webhooks.jittered_backoff_s(n) <= 1.2 * webhooks.backoff_s(n)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "javascript:alert(1)",
        "//example.org/hooks",
        "example.org/hooks",
        "http:///nohost",
        "https://example.org/a b",
        "https://example.org/\r\nX-Injected: 1",
        "https://example.org:99999/",
        "https://example.org:0/",
        "https://example.org/" + "a" * 2000,
    ],
)
def test_only_http_and_https_urls_may_be_registered(url: str) -> None:
    with pytest.raises(Invalid) as refused:
        webhooks.check_url(url)
    assert refused.value.field == "url"


def test_a_deployment_may_require_https() -> None:
    assert webhooks.check_url("http://10.0.0.5:8080/hook") == "http://10.0.0.5:8080/hook"
    with pytest.raises(Invalid):
        webhooks.check_url("http://10.0.0.5:8080/hook", schemes=("https",))


def test_urls_are_logged_without_credentials_or_query() -> None:
    assert (
        webhooks.redact_url("https://user:pw@example.org:8443/hooks/x?token=abc#frag")
        == "https://example.org:8443/hooks/x"
    )


# -- what a receiver sees ---------------------------------------------------------------


async def test_the_receiver_gets_a_signed_post_with_the_alert(world: World) -> None:
    r = await world.receiver()
    hook = await world.webhook(r.url())
    trip_id = await world.trip("ana")
    outbox_id, alert_id, added = await world.event(trip_id)
    assert added == 1

    assert await world.deliver(utcnow()) == 1

    assert len(r.requests) == 1
    request = r.requests[0]
    verify(request, SECRET)
    (delivery,) = await world.deliveries()
    assert request.method == "POST"
    assert request.target == "/hooks/sigueme?token=querysecret"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Sigueme-Webhooks/1"
    assert request.headers["x-sigueme-delivery"] == str(delivery.id)
    assert request.headers["x-sigueme-event"] == "raised"
    assert request.json == {
        "delivery_id": delivery.id,
        "event": "raised",
        "alert_id": alert_id,
        "outbox_id": outbox_id,
        "alert": payload(alert_id, trip_id),
    }
    assert "Salió de su ruta" in request.body.decode("utf-8")
    # A tampered body or another secret does not verify.
    with pytest.raises(AssertionError):
        verify(Received("POST", "/", request.headers, request.body + b" "), SECRET)
    with pytest.raises(AssertionError):
        verify(request, "another-secret-of-16+")

    assert (delivery.webhook_id, delivery.status, delivery.attempts) == (hook.id, "delivered", 1)
    assert delivery.delivered_at is not None
    (attempt,) = await world.attempts(delivery.id)
    assert (attempt.status_code, attempt.error) == (200, None)
    assert attempt.duration_ms >= 0
    # Delivered is delivered: nothing is sent again.
    assert await world.deliver(utcnow() + timedelta(days=1)) == 0
    assert len(r.requests) == 1


async def test_failures_are_retried_with_growing_delays_until_delivered(world: World) -> None:
    r = await world.receiver(200, 500, 500, 503)
    await world.webhook(r.url())
    trip_id = await world.trip("ana")
    t0 = utcnow()
    await world.event(trip_id, now=t0)

    now = t0
    delays = []
    for expected_requests in (1, 2, 3):
        assert await world.deliver(now) == 1
        assert len(r.requests) == expected_requests
        (delivery,) = await world.deliveries()
        assert delivery.status == "pending"
        assert delivery.attempts == expected_requests
        delays.append((delivery.next_attempt_at - now).total_seconds())
        # Not due before its time.
        assert await world.deliver(delivery.next_attempt_at - timedelta(seconds=1)) == 0
        assert len(r.requests) == expected_requests
        now = delivery.next_attempt_at
    assert 4 <= delays[0] <= 6
    assert 8 <= delays[1] <= 12
    assert 16 <= delays[2] <= 24

    assert await world.deliver(now) == 1

    (delivery,) = await world.deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 4)
    attempts = await world.attempts(delivery.id)
    assert [a.status_code for a in attempts] == [500, 500, 503, 200]
    assert all(a.error is None for a in attempts)
    assert [a.at for a in attempts] == sorted(a.at for a in attempts)
    # The same delivery id on every retry, each request signed afresh.
    assert {q.headers["x-sigueme-delivery"] for q in r.requests} == {str(delivery.id)}
    for request in r.requests:
        verify(request, SECRET)


async def test_a_delivery_fails_after_the_last_attempt(world: World) -> None:
    r = await world.receiver(500)
    await world.webhook(r.url())
    trip_id = await world.trip("ana")
    now = utcnow()
    await world.event(trip_id, now=now)

    delays = []
    for _ in range(webhooks.MAX_ATTEMPTS):
        assert await world.deliver(now) == 1
        (delivery,) = await world.deliveries()
        delays.append((delivery.next_attempt_at - now).total_seconds())
        now = delivery.next_attempt_at

    (delivery,) = await world.deliveries()
    assert (delivery.status, delivery.attempts) == ("failed", webhooks.MAX_ATTEMPTS)
    assert len(r.requests) == webhooks.MAX_ATTEMPTS
    attempts = await world.attempts(delivery.id)
    assert [a.status_code for a in attempts] == [500] * webhooks.MAX_ATTEMPTS
    for n, delay in enumerate(delays[:-1], start=1):
        assert 0.8 * webhooks.backoff_s(n) <= delay <= 1.2 * webhooks.backoff_s(n)
    assert max(delays) <= 1.2 * webhooks.MAX_DELAY_S
    # Given up: never sent again.
    assert await world.deliver(now + timedelta(days=30)) == 0
    assert len(r.requests) == webhooks.MAX_ATTEMPTS


async def test_a_dead_endpoint_does_not_hold_up_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    hanging = await world.receiver("hang")
    healthy = await world.receiver(200)
    slow = await world.webhook(hanging.url())
    refused = await world.webhook(dead_url())
    good = await world.webhook(healthy.url())
    trip_id = await world.trip("ana")
    now = utcnow()
    await world.event(trip_id, now=now)

    with caplog.at_level(logging.INFO, logger="sigueme.services.webhooks"):
        assert await world.deliver(now, timeout_s=0.5) == 3

    assert len(healthy.requests) == 1
    assert len(hanging.requests) == 1
    by_hook = {d.webhook_id: d for d in await world.deliveries()}
    assert by_hook[good.id].status == "delivered"
    (ok,) = await world.attempts(by_hook[good.id].id)
    assert ok.status_code == 200

    assert by_hook[slow.id].status == "pending"
    (timed_out,) = await world.attempts(by_hook[slow.id].id)
    assert timed_out.status_code is None
    assert timed_out.error == "timeout after 0.5 s"
    assert timed_out.duration_ms >= 400

    assert by_hook[refused.id].status == "pending"
    (no_answer,) = await world.attempts(by_hook[refused.id].id)
    assert no_answer.status_code is None
    assert no_answer.error is not None
    assert "ConnectError" in no_answer.error
    for d in (by_hook[slow.id], by_hook[refused.id]):
        assert d.attempts == 1
        assert d.next_attempt_at > now

    # The logs name the endpoints without their query string, and never the secret.
    assert f"127.0.0.1:{healthy.port}/hooks/sigueme" in caplog.text
    assert "querysecret" not in caplog.text
    assert SECRET not in caplog.text


async def test_a_claimed_delivery_is_retried_after_its_lease(world: World) -> None:
    r = await world.receiver(200)
    await world.webhook(r.url())
    trip_id = await world.trip("ana")
    now = utcnow()
    await world.event(trip_id, now=now)

    # A worker claims it and dies before sending.
    claimed = await webhooks._claim(world.sessions, now, 10)
    assert len(claimed) == 1

    assert await world.deliver(now + timedelta(seconds=webhooks.LEASE_S - 1)) == 0
    assert await world.deliver(now + timedelta(seconds=webhooks.LEASE_S + 1)) == 1
    assert len(r.requests) == 1
    (delivery,) = await world.deliveries()
    assert delivery.status == "delivered"


async def test_two_workers_send_each_attempt_once(
    world: World, database_url: str, receivers: list[Receiver]
) -> None:
    r = await world.receiver(200)
    await world.webhook(r.url())
    await world.webhook(r.url("/second"))
    trip_id = await world.trip("ana")
    now = utcnow()
    _, alert_id, _ = await world.event(trip_id, now=now)
    for _ in range(29):
        await world.event(trip_id, alert_id, "repeated", now=now)
    expected = {str(d.id) for d in await world.deliveries()}
    assert len(expected) == 60

    # Two workers: each its own engine (its own connections), as two processes would.
    other = make_engine(database_url)
    try:
        other_sessions = sessionmaker(other)

        async def worker(sessions: async_sessionmaker[AsyncSession]) -> int:
            sent = 0
            while n := await webhooks.deliver_due(sessions, world.client, now=now, limit=1):
                sent += n
            return sent

        sent = await asyncio.gather(worker(world.sessions), worker(other_sessions))
    finally:
        await other.dispose()

    assert sum(sent) == 60
    ids = [q.headers["x-sigueme-delivery"] for q in r.requests]
    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids))
    deliveries = await world.deliveries()
    assert {d.status for d in deliveries} == {"delivered"}
    async with world.sessions() as session:
        logged = await session.scalar(select(func.count()).select_from(WebhookAttempt))
    assert logged == 60


# -- who hears of an alert --------------------------------------------------------------


async def test_a_monitors_webhook_hears_only_of_trips_shared_with_them(world: World) -> None:
    await world.user("beto", Role.MONITOR)
    beto_r = await world.receiver()
    all_r = await world.receiver()
    beto_hook = await world.webhook(beto_r.url(), user="beto")
    all_hook = await world.webhook(all_r.url())
    shared = await world.trip("ana")
    private = await world.trip("ana")
    share_id = await world.share(shared, "beto")

    _, shared_alert, added_shared = await world.event(shared)
    _, private_alert, added_private = await world.event(private)
    assert (added_shared, added_private) == (2, 1)

    await world.deliver(utcnow())
    assert [q.json["alert_id"] for q in beto_r.requests] == [shared_alert]
    assert sorted(q.json["alert_id"] for q in all_r.requests) == sorted(
        [shared_alert, private_alert]
    )

    # The share revoked: the monitor hears nothing more of the trip.
    await world.revoke(share_id)
    _, _, added = await world.event(shared, shared_alert, "acknowledged")
    assert added == 1
    assert {d.webhook_id for d in await world.deliveries()} == {beto_hook.id, all_hook.id}
    assert len(await world.deliveries(beto_hook.id)) == 1


async def test_an_expired_share_or_a_disabled_user_hears_nothing(world: World) -> None:
    await world.user("beto", Role.MONITOR)
    await world.user("caro", Role.MONITOR)
    r = await world.receiver()
    beto_hook = await world.webhook(r.url(), user="beto")
    caro_hook = await world.webhook(r.url(), user="caro")
    trip_id = await world.trip("ana")
    await world.share(trip_id, "beto", days=-1)  # expired yesterday
    await world.share(trip_id, "caro")
    async with world.sessions() as session:
        await session.execute(update(User).where(User.name == "caro").values(disabled=True))
        await session.commit()

    _, _, added = await world.event(trip_id)

    assert added == 0
    assert await world.deliveries(beto_hook.id) == []
    assert await world.deliveries(caro_hook.id) == []


async def test_the_traveller_and_a_dispatcher_follow_alerts_to_their_end(world: World) -> None:
    await world.user("dora", Role.DISPATCHER)
    await world.user("eli", Role.TRAVELLER)
    r = await world.receiver()
    ana_hook = await world.webhook(r.url(), user="ana")
    dora_hook = await world.webhook(r.url(), user="dora")
    eli_hook = await world.webhook(r.url(), user="eli")
    trip_id = await world.trip("ana")

    _, alert_id, added = await world.event(trip_id)
    assert added == 2
    # Resolved: no live alert is left on the trip, yet the dispatcher hears of it.
    async with world.sessions() as session:
        await session.execute(update(Alert).where(Alert.id == alert_id).values(status="resolved"))
        await session.commit()
    _, _, added = await world.event(trip_id, alert_id, "resolved")
    assert added == 2

    assert [d.event for d in await world.deliveries(ana_hook.id)] == ["raised", "resolved"]
    assert [d.event for d in await world.deliveries(dora_hook.id)] == ["raised", "resolved"]
    assert await world.deliveries(eli_hook.id) == []


async def test_enqueueing_twice_adds_nothing_and_disabled_webhooks_hear_nothing(
    world: World,
) -> None:
    r = await world.receiver()
    hook = await world.webhook(r.url())
    off = await world.webhook(r.url("/off"))
    async with world.sessions() as session:
        await webhooks.disable_webhook(
            session, await webhooks.get_webhook(session, off.id), utcnow()
        )
        await session.commit()
    trip_id = await world.trip("ana")
    outbox_id, alert_id, added = await world.event(trip_id)
    assert added == 1

    async with world.sessions() as session:
        again = await webhooks.enqueue_deliveries(
            session,
            outbox_id=outbox_id,
            alert_id=alert_id,
            trip_id=trip_id,
            event="raised",
            payload=payload(alert_id, trip_id),
        )
        await session.commit()

    assert again == 0
    deliveries = await world.deliveries()
    assert [(d.webhook_id, d.outbox_id) for d in deliveries] == [(hook.id, outbox_id)]
    await world.deliver(utcnow())
    assert len(r.requests) == 1


async def test_disabling_a_webhook_cancels_what_it_had_pending(world: World) -> None:
    r = await world.receiver(500)
    hook = await world.webhook(r.url())
    trip_id = await world.trip("ana")
    now = utcnow()
    await world.event(trip_id, now=now)
    await world.deliver(now)
    async with world.sessions() as session:
        cancelled = await webhooks.disable_webhook(
            session, await webhooks.get_webhook(session, hook.id), now
        )
        await session.commit()
    assert cancelled == 1
    (delivery,) = await world.deliveries()
    assert delivery.status == "cancelled"
    assert await world.deliver(now + timedelta(days=1)) == 0
    assert len(r.requests) == 1


# -- the background loop ----------------------------------------------------------------


async def test_the_loop_delivers_when_woken(world: World) -> None:
    r = await world.receiver()
    await world.webhook(r.url())
    trip_id = await world.trip("ana")
    stop, wake = asyncio.Event(), asyncio.Event()
    # A long interval: only the wake can make it deliver within the test.
    task = asyncio.create_task(
        webhooks.webhook_loop(world.sessions, world.client, stop, interval_s=600, wake=wake)
    )
    try:
        await asyncio.sleep(0.1)
        await world.event(trip_id)
        wake.set()
        await asyncio.wait_for(r.arrived.wait(), 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert len(r.requests) == 1
    verify(r.requests[0], SECRET)


async def test_the_loop_survives_a_failing_database(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broken = make_engine(f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db")
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient() as client:
            with caplog.at_level(logging.ERROR, logger="sigueme.services.webhooks"):
                task = asyncio.create_task(
                    webhooks.webhook_loop(sessionmaker(broken), client, stop, interval_s=0.01)
                )
                for _ in range(200):
                    if len(_failures(caplog.records)) >= 2:
                        break
                    await asyncio.sleep(0.02)
                assert not task.done()
                stop.set()
                await asyncio.wait_for(task, 10)
    finally:
        await broken.dispose()
    assert len(_failures(caplog.records)) >= 2


def _failures(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if "delivering failed" in r.getMessage()]
