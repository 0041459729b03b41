"""Webhooks: operators' HTTP endpoints told of alert changes, signed, retried, logged.

An admin registers a webhook (``POST /v1/webhooks``): a URL, a secret, and either a
user whose visible trips it follows or none (every alert). When the outbox relay
publishes an alert change it calls :func:`enqueue_deliveries` in its own transaction,
which adds one :class:`~sigueme.store.models.WebhookDelivery` per webhook that should
hear of it. :func:`webhook_loop` (run by the service for its lifetime) sends what is
due with :func:`deliver_due` and logs every attempt as a
:class:`~sigueme.store.models.WebhookAttempt`.

What a receiver gets, one POST per delivery::

    POST <url>
    Content-Type: application/json
    User-Agent: Sigueme-Webhooks/1
    X-Sigueme-Delivery: 4711            (the delivery's id: the same on every retry)
    X-Sigueme-Event: raised             (the outbox event: raised, acknowledged, ...)
    X-Sigueme-Timestamp: 1780000000     (Unix seconds when this attempt was signed)
    X-Sigueme-Signature: sha256=<hex>

    {"delivery_id": 4711, "event": "raised", "alert_id": "...", "outbox_id": 42,
     "alert": {...the alert as the relay describes it...}}

The signature is HMAC-SHA256, keyed with the webhook's secret (UTF-8), over the
timestamp in decimal, a dot, and the exact bytes of the body (:func:`sign`). A receiver
recomputes it over the raw body it read (before parsing the JSON), compares in constant
time, and refuses timestamps more than a few minutes from its own clock, so a recorded
request cannot be replayed later. Deliveries are at least once: a receiver that must
not act twice keeps the ``X-Sigueme-Delivery`` ids it has handled.

A 2xx answer is a delivery. Anything else (another status, a redirect, which is never
followed, a timeout after :data:`TIMEOUT_S`, a refused connection) is retried after
:data:`BASE_DELAY_S` doubled at each failure, capped at :data:`MAX_DELAY_S`, each delay
jittered by ±:data:`JITTER` so that many deliveries that failed together do not come
back together; after :data:`MAX_ATTEMPTS` attempts the delivery is ``failed``. The
nominal schedule (:func:`backoff_s`): 5 s, 10 s, 20 s, 40 s, 80 s, 160 s, 320 s, 640 s,
1280 s, 2560 s, 3600 s, then give up: about 2 h 24 min from the first try to the last.

Several workers may run :func:`deliver_due` on one PostgreSQL database: each claims its
deliveries with ``FOR UPDATE SKIP LOCKED``, pushing their next attempt a lease
(:data:`LEASE_S`) ahead in one short statement, then sends outside any transaction and
records the result only while it still holds the lease. A worker that dies mid-send
leaves the delivery to be tried again once the lease runs out.

Security (SSRF): the service POSTs to whatever URL is registered, from inside its own
network, so only admins register webhooks (the API enforces it) and only ``http`` and
``https`` URLs are accepted (:func:`check_url`, whose ``schemes`` a deployment may
narrow to ``https``). Redirects are never followed and answers are never read beyond
their status line, so an endpoint learns nothing back from the network. Secrets are
never logged; URLs are logged without their credentials, query string or fragment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import random
import secrets
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.access import Principal, TripFacts, can_see
from sigueme.errors import Invalid, NotFound
from sigueme.store.models import (
    Role,
    Trip,
    User,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    utcnow,
)
from sigueme.store.trips import trip_facts

log = logging.getLogger(__name__)

USER_AGENT: Final = "Sigueme-Webhooks/1"
SIGNATURE_HEADER: Final = "X-Sigueme-Signature"
TIMESTAMP_HEADER: Final = "X-Sigueme-Timestamp"
DELIVERY_HEADER: Final = "X-Sigueme-Delivery"
EVENT_HEADER: Final = "X-Sigueme-Event"

TIMEOUT_S: Final = 5.0
"""Longest one attempt may take, from connecting to the answer's status line."""
BASE_DELAY_S: Final = 5.0
"""Delay after the first failure; doubled after each further one."""
MAX_DELAY_S: Final = 3600.0
"""Longest delay between two attempts."""
JITTER: Final = 0.2
"""Each delay is drawn uniformly within ±20% of its nominal value."""
MAX_ATTEMPTS: Final = 12
"""Attempts before a delivery is given up (``failed``)."""
LEASE_S: Final = 60.0
"""How long a claimed delivery is held by the worker sending it (well over
:data:`TIMEOUT_S`): another worker takes it only after that."""
MAX_CONCURRENT: Final = 10
"""Sends in flight at once per :func:`deliver_due` call."""

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
"""Still pending when its webhook was disabled: never sent."""

SCHEMES: Final = ("http", "https")
MAX_URL: Final = 2000
SECRET_PREFIX: Final = "sgw_"
MIN_SECRET: Final = 16
MAX_SECRET: Final = 200
MAX_ERROR: Final = 500
MAX_DELIVERIES_LISTED: Final = 200


# -- signing ----------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Sigueme-Signature`` of ``body`` sent at ``timestamp`` (Unix seconds):
    ``"sha256="`` and the hex HMAC-SHA256, keyed with ``secret`` (UTF-8), of
    ``f"{timestamp}.".encode() + body``.

    Binding the timestamp into the signature lets a receiver refuse old requests (a
    replay) by checking ``X-Sigueme-Timestamp`` against its clock."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def new_secret() -> str:
    """A fresh signing secret: ``sgw_`` and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def backoff_s(failures: int) -> float:
    """The nominal delay after ``failures`` failed attempts (1 → 5 s, 2 → 10 s, ...,
    at most :data:`MAX_DELAY_S`), before jitter."""
    if failures < 1:
        raise ValueError("failures must be at least 1")
    return min(MAX_DELAY_S, BASE_DELAY_S * 2.0 ** min(failures - 1, 30))


def jittered_backoff_s(failures: int) -> float:
    """:func:`backoff_s` within ±:data:`JITTER`."""
    return backoff_s(failures) * random.uniform(1.0 - JITTER, 1.0 + JITTER)


# -- URLs -------------------------------------------------------------------------------

_FORBIDDEN_CHARS = frozenset(string.whitespace) | {chr(c) for c in range(32)} | {"\x7f"}


def check_url(url: str, *, schemes: Sequence[str] = SCHEMES) -> str:
    """``url`` if it may be registered: an absolute URL with one of ``schemes``
    (``http`` and ``https`` by default; pass ``("https",)`` to require TLS), a host, a
    valid port, at most :data:`MAX_URL` characters, no spaces or control characters.
    :class:`Invalid` (field ``url``) otherwise.

    The host is not resolved or checked against private ranges: only admins register
    webhooks, and a receiver on the operator's own network is a legitimate use."""
    if len(url) > MAX_URL:
        raise Invalid("url", f"at most {MAX_URL} characters")
    if any(c in _FORBIDDEN_CHARS for c in url):
        raise Invalid("url", "no spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Invalid("url", "not a valid URL") from None
    if parts.scheme.lower() not in schemes:
        raise Invalid("url", f"the scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise Invalid("url", "needs a host, e.g. https://example.org/hooks/sigueme")
    if port == 0:
        raise Invalid("url", "not a valid port")
    return url


def redact_url(url: str) -> str:
    """``url`` fit for logs: scheme, host, port and path; no credentials, query string
    or fragment (where tokens tend to hide)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
    except ValueError:
        return "<invalid url>"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _check_secret(secret: str) -> str:
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise Invalid("secret", f"{MIN_SECRET} to {MAX_SECRET} characters")
    if not all("!" <= c <= "~" for c in secret):
        raise Invalid("secret", "printable ASCII characters only, no spaces")
    return secret


# -- registering ------------------------------------------------------------------------


async def create_webhook(
    session: AsyncSession,
    *,
    url: str,
    by: int,
    user_name: str | None = None,
    label: str | None = None,
    secret: str | None = None,
    schemes: Sequence[str] = SCHEMES,
) -> tuple[Webhook, str | None]:
    """Register a webhook (flushed; the caller commits): ``(webhook, user name)``.

    It follows the trips ``user_name`` may see, or every alert when ``None``.
    ``secret`` defaults to :func:`new_secret`. :class:`Invalid` naming ``url``,
    ``user`` (unknown or disabled) or ``secret`` for input the rules refuse. The caller
    checks that the registrant is an admin."""
    check_url(url, schemes=schemes)
    secret = _check_secret(secret) if secret is not None else new_secret()
    if label is not None:
        label = label.strip() or None
    user_id: int | None = None
    if user_name is not None:
        user = await session.scalar(select(User).where(User.name == user_name))
        if user is None or user.disabled:
            raise Invalid("user", f"no active user is called {user_name!r}")
        user_id = user.id
    webhook = Webhook(url=url, secret=secret, user_id=user_id, label=label, created_by=by)
    session.add(webhook)
    await session.flush()
    return webhook, user_name


async def user_names(session: AsyncSession, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
    return dict(rows.all())


async def list_webhooks(session: AsyncSession) -> Sequence[Webhook]:
    """Every webhook, disabled ones too, newest first."""
    query = select(Webhook).order_by(Webhook.created_at.desc(), Webhook.id.desc())
    return (await session.scalars(query)).all()


async def get_webhook(session: AsyncSession, webhook_id: int) -> Webhook:
    """The webhook, or :class:`NotFound`."""
    webhook = await session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound("no such webhook")
    return webhook


async def disable_webhook(session: AsyncSession, webhook: Webhook, now: datetime) -> int:
    """Disable ``webhook`` from ``now`` on (flushed; the caller commits): it is told of
    nothing more, and its pending deliveries are ``cancelled``. Returns how many were.
    Disabling a disabled webhook changes nothing."""
    if webhook.disabled_at is not None:
        return 0
    webhook.disabled_at = now
    result = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == PENDING)
        .values(status=CANCELLED)
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return int(getattr(result, "rowcount", 0) or 0)


async def list_deliveries(
    session: AsyncSession, webhook_id: int, *, limit: int = 50
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The webhook's latest deliveries, newest first, each with its attempts, oldest
    attempt first (at most :data:`MAX_DELIVERIES_LISTED`)."""
    limit = max(1, min(limit, MAX_DELIVERIES_LISTED))
    deliveries = (
        await session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    ).all()
    attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]


# -- who hears of an alert --------------------------------------------------------------


async def enqueue_deliveries(
    session: AsyncSession,
    *,
    outbox_id: int,
    alert_id: str,
    trip_id: str | None,
    event: str,
    payload: dict[str, Any],
    now: datetime | None = None,
) -> int:
    """Add, in the caller's transaction, one pending delivery of this outbox entry to
    each enabled webhook that should hear of it; returns how many were added.

    A webhook without a user hears of every alert. A webhook following a user hears of
    alerts of the trips that user may see at this moment (:func:`sigueme.access.can_see`:
    their own trips, those shared with them while the share lasts, every trip for an
    admin, for a dispatcher the trips with a live alert, the alert told of counting as
    live so that a dispatcher hears that an alert they worked was resolved); a disabled
    user hears nothing. Idempotent: a second call for the same ``outbox_id`` adds
    nothing (the database's unique index on webhook and outbox entry, INSERT ... ON
    CONFLICT DO NOTHING), even from two workers at once.

    ``payload`` is sent as is to every such webhook (it must be JSON): the caller leaves
    out what monitors must not read."""
    now = now if now is not None else utcnow()
    rows = (
        await session.execute(
            select(Webhook.id, Webhook.user_id, User)
            .outerjoin(User, User.id == Webhook.user_id)
            .where(Webhook.disabled_at.is_(None))
            .order_by(Webhook.id)
        )
    ).all()
    targets: list[int] = []
    facts: TripFacts | None = None
    facts_loaded = False
    for webhook_id, user_id, user in rows:
        if user_id is None:
            targets.append(webhook_id)
            continue
        if user is None or user.disabled:
            continue
        if not facts_loaded:
            facts_loaded = True
            # An alert with no trip (a citizen's report) goes to unfiltered webhooks only.
            trip = await session.get(Trip, trip_id) if trip_id is not None else None
            if trip is not None:
                facts = dataclasses.replace(await trip_facts(session, trip), has_live_alert=True)
        if facts is None:
            continue
        try:
            role = Role(user.role)
        except ValueError:
            continue
        principal = Principal(user_id=user.id, role=role, name=user.name)
        if can_see(principal, facts, now):
            targets.append(webhook_id)
    if not targets:
        return 0
    values = [
        {
            "webhook_id": webhook_id,
            "outbox_id": outbox_id,
            "alert_id": alert_id,
            "event": event,
            "payload": payload,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for webhook_id in targets
    ]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(WebhookDelivery)
        .values(values)
        .on_conflict_do_nothing(index_elements=["webhook_id", "outbox_id"])
        .returning(WebhookDelivery.id)
    )
    added = len((await session.execute(stmt)).all())
    return added


# -- sending ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    webhook_id: int
    outbox_id: int
    alert_id: str
    event: str
    payload: dict[str, Any]
    attempts: int
    url: str
    secret: str
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class _Outcome:
    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def _claim(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> list[_Claimed]:
    """Take up to ``limit`` due deliveries of enabled webhooks, in one short transaction,
    by moving their next attempt a lease ahead: no other worker sees them as due until
    the lease runs out. On PostgreSQL rows another worker is claiming are skipped."""
    lease_until = now + timedelta(seconds=LEASE_S)
    async with sessions() as session, session.begin():
        # A read first: the loop polls every second, and on SQLite even an UPDATE that
        # matches nothing takes the database's one write lock.
        anything = await session.scalar(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
            .limit(1)
        )
        if anything is None:
            return []
        due = (
            select(WebhookDelivery.id)
            .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
            .where(
                WebhookDelivery.status == PENDING,
                WebhookDelivery.next_attempt_at <= now,
                Webhook.disabled_at.is_(None),
            )
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            due = due.with_for_update(of=WebhookDelivery, skip_locked=True)
        # One statement: atomic on SQLite too (no SELECT-then-UPDATE race in process).
        claimed = (
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due.scalar_subquery()))
                .values(next_attempt_at=lease_until)
                .returning(
                    WebhookDelivery.id,
                    WebhookDelivery.webhook_id,
                    WebhookDelivery.outbox_id,
                    WebhookDelivery.alert_id,
                    WebhookDelivery.event,
                    WebhookDelivery.payload,
                    WebhookDelivery.attempts,
                )
                .execution_options(synchronize_session=False)
            )
        ).all()
        if not claimed:
            return []
        hooks = {
            h.id: (h.url, h.secret)
            for h in await session.scalars(
                select(Webhook).where(Webhook.id.in_({row.webhook_id for row in claimed}))
            )
        }
    return [
        _Claimed(
            id=row.id,
            webhook_id=row.webhook_id,
            outbox_id=row.outbox_id,
            alert_id=row.alert_id,
            event=row.event,
            payload=row.payload,
            attempts=row.attempts,
            url=hooks[row.webhook_id][0],
            secret=hooks[row.webhook_id][1],
            lease_until=lease_until,
        )
        for row in sorted(claimed, key=lambda r: r.id)
    ]


def body_of(delivery_id: int, event: str, alert_id: str, outbox_id: int, alert: Any) -> bytes:
    """The exact bytes POSTed (and signed): compact UTF-8 JSON."""
    document = {
        "delivery_id": delivery_id,
        "event": event,
        "alert_id": alert_id,
        "outbox_id": outbox_id,
        "alert": alert,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _error_text(exc: BaseException, url: str, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"timeout after {timeout_s:g} s"
    text = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    # Messages that quote the URL would leak its query string or credentials.
    text = text.replace(url, redact_url(url))
    return text[:MAX_ERROR]


async def _send(
    client: httpx.AsyncClient, delivery: _Claimed, timeout_s: float
) -> tuple[_Outcome, float]:
    """POST the delivery once; never raises for anything the endpoint does. Returns the
    outcome and the moment it was made (``time.monotonic()`` at the start)."""
    body = body_of(
        delivery.id, delivery.event, delivery.alert_id, delivery.outbox_id, delivery.payload
    )
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(delivery.secret, timestamp, body),
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: str(delivery.id),
        EVENT_HEADER: delivery.event,
    }
    started = time.monotonic()
    status_code: int | None = None
    error: str | None = None
    try:
        async with (
            asyncio.timeout(timeout_s),
            client.stream(
                "POST",
                delivery.url,
                content=body,
                headers=headers,
                timeout=timeout_s,
                follow_redirects=False,
            ) as response,
        ):
            # Only the status line matters; the answer's body is never read.
            status_code = response.status_code
    except Exception as exc:
        error = _error_text(exc, delivery.url, timeout_s)
    duration_ms = (time.monotonic() - started) * 1000.0
    return _Outcome(status_code, error, round(duration_ms, 1)), started


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    delivery: _Claimed,
    outcome: _Outcome,
    at: datetime,
) -> str:
    """Log the attempt and move the delivery on: delivered, retried later, or failed.
    Returns the delivery's new status."""
    tries = delivery.attempts + 1
    values: dict[str, Any] = {"attempts": tries}
    if outcome.ok:
        values |= {"status": DELIVERED, "delivered_at": at}
    elif tries >= MAX_ATTEMPTS:
        values |= {"status": FAILED, "next_attempt_at": at}
    else:
        values["next_attempt_at"] = at + timedelta(seconds=jittered_backoff_s(tries))
    async with sessions() as session, session.begin():
        session.add(
            WebhookAttempt(
                delivery_id=delivery.id,
                at=at,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
        )
        result = await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == PENDING,
                # Still ours: nobody claimed it again after our lease ran out.
                WebhookDelivery.next_attempt_at == delivery.lease_until,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    if not getattr(result, "rowcount", 0):
        log.warning(
            "webhooks: delivery %d to %s: the lease ran out before the attempt was "
            "recorded; the attempt is logged, the delivery left to whoever holds it",
            delivery.id,
            redact_url(delivery.url),
        )
        return PENDING
    status = str(values.get("status", PENDING))
    what = f"HTTP {outcome.status_code}" if outcome.status_code is not None else str(outcome.error)
    if status == DELIVERED:
        log.info(
            "webhooks: delivery %d (%s) to %s: %s in %.0f ms",
            delivery.id,
            delivery.event,
            redact_url(delivery.url),
            what,
            outcome.duration_ms,
        )
    else:
        log.warning(
            "webhooks: delivery %d (%s) to %s, attempt %d of %d: %s%s",
            delivery.id,
            delivery.event,
            redact_url(delivery.url),
            tries,
            MAX_ATTEMPTS,
            what,
            "; giving up" if status == FAILED else "; will retry",
        )
    return status


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    *,
    now: datetime | None = None,
    limit: int = 50,
    timeout_s: float = TIMEOUT_S,
) -> int:
    """Send the deliveries due at ``now`` (at most ``limit``), once each, and record
    every attempt; returns how many were attempted.

    Sends run concurrently (at most :data:`MAX_CONCURRENT` at once), each bounded by
    ``timeout_s``, so a slow or dead endpoint delays the others by no more than that.
    ``now`` (default: the clock) is the time deliveries are due by, attempts are logged
    at and retries are scheduled from; the signature's timestamp is always the real
    clock, which the receiver compares with its own. A database error is raised after
    the sends in flight are done (what was sent but not recorded is sent again once its
    lease runs out)."""
    if now is None:
        now = utcnow()
    claimed = await _claim(sessions, now, limit)
    if not claimed:
        return 0
    base = time.monotonic()
    gate = asyncio.Semaphore(MAX_CONCURRENT)

    async def attempt(delivery: _Claimed) -> None:
        async with gate:
            outcome, started = await _send(client, delivery, timeout_s)
        at = now + timedelta(seconds=started - base)
        await _record(sessions, delivery, outcome, at)

    results = await asyncio.gather(*(attempt(d) for d in claimed), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return len(claimed)


async def webhook_loop(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    stop: asyncio.Event,
    *,
    interval_s: float = 1.0,
    wake: asyncio.Event | None = None,
    limit: int = 50,
) -> None:
    """Run :func:`deliver_due` every ``interval_s``, at once when ``wake`` is set (the
    relay sets it after enqueueing), back to back while a full batch was due, until
    ``stop`` is set (it returns once the sends in flight are done).

    A failing database is logged and waited out (the interval doubled at each failure
    in a row, at most a minute); the loop never ends on its own."""
    failures = 0
    while not stop.is_set():
        if wake is not None:
            wake.clear()
        sent = 0
        try:
            sent = await deliver_due(sessions, client, limit=limit)
        except Exception:
            failures += 1
            log.exception("webhooks: delivering failed (%d in a row)", failures)
        else:
            failures = 0
        if sent >= limit:
            await asyncio.sleep(0)
            continue
        pause = min(60.0, interval_s * 2.0**failures) if failures else interval_s
        await _wait(stop, wake, pause)


async def _wait(stop: asyncio.Event, wake: asyncio.Event | None, timeout_s: float) -> None:
    """Until ``stop`` or ``wake`` is set, or ``timeout_s`` has passed."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
