"""The audit log: who read whose locations, and when (ARCHITECTURE.md, promise 6).

Every read that returns a trip's positions (a trip with its last fix, its track)
writes one row before the answer leaves: the user or the share link that asked, the
trip, the time, and what was read.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.access import Principal
from sigueme.store.models import AuditLog, utcnow


class ReadAction(enum.StrEnum):
    """What was read."""

    TRIP = "trip.read"
    """The trip with its last position."""
    TRACK = "trip.track"
    """The trip's location history."""
    LIVE = "trip.live"
    """The trip with its last position, on the watchers' live feed, and its positions
    from then on while the subscription lasts."""
    ALERT = "trip.alert"
    """An alert of the trip, with its position and the track before it."""
    ALERTS = "trip.alerts"
    """The alerts of the trip (in the queue, or the trip's list), with their positions."""


async def record_read(
    session: AsyncSession,
    principal: Principal,
    trip_id: str,
    action: ReadAction | str,
    *,
    at: datetime | None = None,
) -> AuditLog:
    """Add the audit row of ``principal`` reading ``trip_id``'s locations.

    The row is flushed, not committed: the caller commits it with the rest of the
    request, before it returns the locations, so no read goes unrecorded."""
    row = AuditLog(
        at=at or utcnow(),
        user_id=principal.user_id,
        share_id=principal.share_id,
        trip_id=trip_id,
        action=str(action),
    )
    session.add(row)
    await session.flush()
    return row


async def reads_of(session: AsyncSession, trip_id: str) -> Sequence[AuditLog]:
    """The audit rows of ``trip_id``, oldest first."""
    return (
        await session.scalars(
            select(AuditLog).where(AuditLog.trip_id == trip_id).order_by(AuditLog.at, AuditLog.id)
        )
    ).all()
