"""The outbox relay: alert changes, committed to ``alert_outbox`` with the change
itself, put on the police queue at least once, then told to watchers and webhooks.

Every worker runs :func:`relay_forever`. A worker that just committed an alert change
wakes its relay at once (``wake``), so the change is on the police queue within
milliseconds; otherwise the relay looks every ``interval_s`` for what is left (changes
of a worker that died, or raised while Redis was down).

One pass (:func:`relay_once`):

1. *claim* (a short transaction): up to ``limit`` unpublished changes, oldest first,
   not leased by another relay, are leased for :data:`LEASE` (PostgreSQL: ``FOR UPDATE
   SKIP LOCKED``, so concurrent relays take different rows);
2. *publish*: each change goes on the queue with the alert as it is now (the ``alert``
   field; ``event`` says what happened). A queue that is down stops the pass: the
   change keeps its place and is tried again (its ``attempts`` and ``last_error``
   say so);
3. *tell watchers* (best-effort): the alert as a GeoJSON Feature (``"kind": "alert"``)
   on the trip's live channel, as watchers see it. Police-only changes (the duress
   PIN's) and alerts without a trip (reports) are not told;
4. *mark* (a transaction): published changes get ``published_at``; ``on_published``
   runs in that transaction (webhook deliveries are enqueued there), ``after_commit``
   after it (the webhook sender is woken there).

A crash between 2 and 3 puts a change on the queue twice: consumers tell duplicates
apart by ``outbox_id``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.alerts.lifecycle import Action
from sigueme.alerts.snapshot import AlertSnapshot, alert_dict, public_view
from sigueme.bus.live import LiveBus
from sigueme.bus.queue import PoliceQueue, QueueUnavailable
from sigueme.services.alerts import snapshot
from sigueme.store.models import Alert, AlertOutbox

log = logging.getLogger(__name__)

LEASE: Final = timedelta(seconds=30)
"""How long a claimed change is left to its relay before another may take it."""


@dataclass(frozen=True, slots=True)
class Relayed:
    outbox_id: int
    alert_id: str
    trip_id: str | None
    """``None`` for a report's alert (no trip channel to tell)."""
    event: str
    alert: dict[str, Any]
    """The alert as put on the queue (the police's view)."""
    public: dict[str, Any]
    """The alert as watchers see it (no police-only marks)."""
    snapshot: AlertSnapshot


OnPublished = Callable[[AsyncSession, Relayed], Awaitable[None]]
AfterCommit = Callable[[list[Relayed]], None]


def queue_fields(relayed: Relayed) -> dict[str, str]:
    snap = relayed.snapshot
    return {
        "outbox_id": str(relayed.outbox_id),
        "alert_id": relayed.alert_id,
        "event": relayed.event,
        "kind": snap.kind.value,
        "severity": str(int(snap.severity)),
        "status": snap.status.value,
        "trip_id": relayed.trip_id or "",
        "opened_at": relayed.alert["opened_at"],
        "alert": json.dumps(relayed.alert, ensure_ascii=False, separators=(",", ":")),
    }


def alert_feature(relayed: Relayed) -> dict[str, Any]:
    """What watchers get: the alert as a GeoJSON Feature at the position that raised it."""
    public = relayed.public
    return {
        "type": "Feature",
        "geometry": public["position"],
        "properties": {
            "kind": "alert",
            "event": relayed.event,
            "trip_id": relayed.trip_id,
            "t": public["updated_at"],
            "alert": {k: v for k, v in public.items() if k not in ("position", "track")},
        },
    }


async def _claim(
    sessions: async_sessionmaker[AsyncSession], now: datetime, limit: int
) -> list[tuple[int, str, str]]:
    """Lease up to ``limit`` unpublished changes, oldest first, in one statement (so
    concurrent relays, even on SQLite, never take the same change)."""
    free = AlertOutbox.published_at.is_(None) & (
        AlertOutbox.lease_until.is_(None) | (AlertOutbox.lease_until < now)
    )
    async with sessions() as session, session.begin():
        picked = select(AlertOutbox.id).where(free).order_by(AlertOutbox.id).limit(limit)
        if session.get_bind().dialect.name != "sqlite":
            picked = picked.with_for_update(skip_locked=True)
        result = await session.execute(
            update(AlertOutbox)
            .where(AlertOutbox.id.in_(picked.scalar_subquery()), free)
            .values(lease_until=now + LEASE, attempts=AlertOutbox.attempts + 1)
            .returning(AlertOutbox.id, AlertOutbox.alert_id, AlertOutbox.event)
            .execution_options(synchronize_session=False)
        )
        return sorted((r[0], r[1], r[2]) for r in result.all())


async def _build(
    sessions: async_sessionmaker[AsyncSession],
    claimed: list[tuple[int, str, str]],
    public_url: str,
    now: datetime,
) -> list[Relayed]:
    built = []
    async with sessions() as session:
        for outbox_id, alert_id, event in claimed:
            alert = await session.get(Alert, alert_id)
            if alert is None:  # deleted with its trip
                continue
            snap = await snapshot(session, alert, public_url=public_url, police=True)
            public = public_view(snap)
            built.append(
                Relayed(
                    outbox_id=outbox_id,
                    alert_id=alert_id,
                    trip_id=alert.trip_id,
                    event=event,
                    alert=alert_dict(snap, now),
                    public=alert_dict(public, now, track=False),
                    snapshot=snap,
                )
            )
    return built


async def relay_once(
    sessions: async_sessionmaker[AsyncSession],
    queue: PoliceQueue,
    *,
    public_url: str,
    live: LiveBus | None = None,
    on_published: OnPublished | None = None,
    after_commit: AfterCommit | None = None,
    now: datetime | None = None,
    limit: int = 100,
) -> list[Relayed]:
    """One pass; the changes it published. Raises :class:`QueueUnavailable` after
    recording it when the queue is down (what was published before is kept)."""
    now = now or datetime.now(UTC)
    claimed = await _claim(sessions, now, limit)
    if not claimed:
        return []
    built = await _build(sessions, claimed, public_url, now)
    published: list[Relayed] = []
    failure: QueueUnavailable | None = None
    for relayed in built:
        try:
            await queue.publish(queue_fields(relayed))
        except QueueUnavailable as exc:
            failure = exc
            break
        published.append(relayed)
    if live is not None:
        # Watchers next (the alert is committed already; marking it published can wait).
        for relayed in published:
            if relayed.event == Action.DURESS.value or relayed.trip_id is None:
                continue
            try:
                await live.publish(relayed.trip_id, alert_feature(relayed))
            except Exception:
                log.warning("live feed: alert %s not published", relayed.alert_id, exc_info=True)
    async with sessions() as session, session.begin():
        done = {r.outbox_id for r in published}
        missing = {c[0] for c in claimed} - {r.outbox_id for r in built}
        if done or missing:
            await session.execute(
                update(AlertOutbox)
                .where(AlertOutbox.id.in_(done | missing))
                .values(published_at=now, lease_until=None, last_error=None)
                .execution_options(synchronize_session=False)
            )
        unsent = [c[0] for c in claimed if c[0] not in done and c[0] not in missing]
        if unsent:
            # Free them for the next pass (of any relay) at once.
            await session.execute(
                update(AlertOutbox)
                .where(AlertOutbox.id.in_(unsent))
                .values(lease_until=None, last_error=str(failure or "not published")[:500])
                .execution_options(synchronize_session=False)
            )
        if on_published is not None:
            for relayed in published:
                await on_published(session, relayed)
    if after_commit is not None and published:
        after_commit(published)
    if failure is not None:
        raise failure
    return published


async def relay_forever(
    sessions: async_sessionmaker[AsyncSession],
    queue: PoliceQueue,
    stop: asyncio.Event,
    *,
    public_url: str,
    wake: asyncio.Event,
    live: LiveBus | None = None,
    on_published: OnPublished | None = None,
    after_commit: AfterCommit | None = None,
    interval_s: float = 1.0,
    max_backoff_s: float = 10.0,
) -> None:
    """Relay until ``stop`` is set: at once when ``wake`` is set, else every
    ``interval_s``; backing off (up to ``max_backoff_s``) while the queue or the database
    fails. Never raises."""
    backoff = interval_s
    while not stop.is_set():
        wake.clear()
        try:
            while await relay_once(
                sessions,
                queue,
                public_url=public_url,
                live=live,
                on_published=on_published,
                after_commit=after_commit,
            ):
                pass  # more may be waiting
            backoff = interval_s
        except QueueUnavailable as exc:
            log.warning("police queue unavailable, alerts wait in the outbox: %s", exc)
            backoff = min(backoff * 2, max_backoff_s)
        except Exception:
            log.exception("alert relay failed; retrying")
            backoff = min(backoff * 2, max_backoff_s)
        waiters = [asyncio.ensure_future(stop.wait())]
        if backoff == interval_s:
            waiters.append(asyncio.ensure_future(wake.wait()))
        _done, pending = await asyncio.wait(waiters, timeout=backoff, return_when="FIRST_COMPLETED")
        for task in pending:
            task.cancel()
