"""The watchdog: trips that fall silent, trips that never arrive, and alerts nobody
acknowledged.

Runs in every worker (:func:`watchdog_forever`), every ``interval_s`` (1 s), and still
raises each alert exactly once: a pass *claims* the trips it alerts for with one
statement that both checks and moves their state (``UPDATE trips SET
silence_alerted_at = now WHERE <silent> RETURNING id``; on PostgreSQL the rows are picked
with ``FOR UPDATE SKIP LOCKED``, so a trip claimed or being ingested by another worker
is left for the next pass), and raises in the same transaction.

- *Silence*: an active trip not arrived whose ``silence_deadline`` (departure, then the
  last fix received, plus its ``silence_timeout_s``) has passed raises ``signal_lost``
  with its last known position, battery and accuracy. Once per silence: a fix moves the
  deadline on (and ends the condition); silence after that raises again.
- *Overdue*: an active trip not arrived at ``overdue_at`` (planned arrival plus its
  ``overdue_grace_s``) raises ``overdue``, once.
- *Escalation*: :func:`sigueme.services.alerts.escalate_due`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer
from sqlalchemy.sql.elements import ColumnElement

from sigueme.alerts.kinds import AlertKind
from sigueme.services.alerts import AlertChange, escalate_due, last_position, raise_alert
from sigueme.store.models import Trip, TripStatus

log = logging.getLogger(__name__)

ARRIVED = "arrived"


def _silent(now: datetime) -> ColumnElement[bool]:
    return (
        (Trip.status == TripStatus.ACTIVE.value)
        & (Trip.route_status != ARRIVED)
        & (Trip.silence_deadline <= now)
        & (Trip.silence_alerted_at.is_(None) | (Trip.silence_alerted_at < Trip.silence_deadline))
    )


def _overdue(now: datetime) -> ColumnElement[bool]:
    return (
        (Trip.status == TripStatus.ACTIVE.value)
        & (Trip.route_status != ARRIVED)
        & (Trip.overdue_at <= now)
        & Trip.overdue_alerted_at.is_(None)
    )


async def _claim(
    session: AsyncSession, condition: ColumnElement[bool], values: dict[str, Any], limit: int
) -> list[str]:
    """Trips meeting ``condition``, updated with ``values`` in the same statement."""
    picked = select(Trip.id).where(condition).order_by(Trip.id).limit(limit)
    if session.get_bind().dialect.name != "sqlite":
        picked = picked.with_for_update(skip_locked=True)
    result = await session.execute(
        update(Trip)
        .where(Trip.id.in_(picked.scalar_subquery()))
        .where(condition)
        .values(**values)
        .returning(Trip.id)
        .execution_options(synchronize_session=False)
    )
    return [row[0] for row in result.all()]


async def _trips(session: AsyncSession, ids: list[str]) -> list[Trip]:
    if not ids:
        return []
    query = (
        select(Trip)
        .where(Trip.id.in_(ids))
        .options(defer(Trip.route), defer(Trip.corridor))
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(query)).all())


async def watch_once(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, limit: int = 200
) -> list[AlertChange]:
    """One pass over silence and overdue trips; the alerts raised."""
    changes: list[AlertChange] = []
    async with sessions() as session, session.begin():
        silent = await _claim(session, _silent(now), {"silence_alerted_at": now}, limit)
        for trip in await _trips(session, silent):
            details: dict[str, Any] = {"silent_since": _iso(trip.last_heard_at)}
            details["silence_timeout_s"] = trip.silence_timeout_s
            changes.append(
                await raise_alert(
                    session,
                    trip,
                    AlertKind.SIGNAL_LOST,
                    now=now,
                    position=last_position(trip),
                    details=details,
                )
            )
        overdue = await _claim(session, _overdue(now), {"overdue_alerted_at": now}, limit)
        for trip in await _trips(session, overdue):
            changes.append(
                await raise_alert(
                    session,
                    trip,
                    AlertKind.OVERDUE,
                    now=now,
                    position=last_position(trip),
                    details={"overdue_at": _iso(trip.overdue_at)},
                )
            )
    return changes


async def watchdog_forever(
    sessions: async_sessionmaker[AsyncSession],
    stop: asyncio.Event,
    *,
    escalate_after: timedelta,
    interval_s: float = 1.0,
    on_changes: Callable[[list[AlertChange]], None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Silence, overdue and escalation passes every ``interval_s`` until ``stop``;
    ``on_changes`` hears of what each pass did (the app wakes its relay). Never raises."""
    failures = 0
    while not stop.is_set():
        try:
            now = clock()
            changes = await watch_once(sessions, now=now)
            changes += await escalate_due(sessions, after=escalate_after, now=now)
            if changes and on_changes is not None:
                on_changes(changes)
            failures = 0
        except Exception:
            failures += 1
            # One traceback, then a line now and then: a database that is down for a
            # minute must not fill the log (every worker runs this every second).
            if failures == 1:
                log.exception("watchdog pass failed; retrying")
            elif failures % 60 == 0:
                log.warning("watchdog: %d passes failed in a row; still retrying", failures)
        with contextlib.suppress(TimeoutError):
            # Backing off while it fails, at most ten times the interval.
            await asyncio.wait_for(stop.wait(), timeout=interval_s * min(1 + failures, 10))


def _iso(when: datetime | None) -> str | None:
    return when.astimezone(UTC).isoformat() if when is not None else None
