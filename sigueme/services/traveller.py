"""What the traveller does about alerts: press SOS, and cancel with their PIN (or seem
to, with the duress PIN).

SOS reaches the police at once, whatever the trip's monitor thinks: no hysteresis, the
highest severity, from any channel (the phone's websocket, OsmAnd's ``alarm=sos``, the
API). It is committed before the caller answers, like a fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.alerts.kinds import AlertKind
from sigueme.errors import Forbidden, NotFound
from sigueme.services.alerts import (
    AlertChange,
    Position,
    cancel_by_traveller,
    duress,
    last_position,
    raise_alert,
)
from sigueme.services.ingest import locked_trip
from sigueme.store.models import User
from sigueme.store.pins import PinMatch, match_pin


@dataclass(frozen=True, slots=True)
class SosResult:
    alert_id: str
    change: AlertChange


async def raise_sos(
    sessions: async_sessionmaker[AsyncSession],
    trip_id: str,
    *,
    source: str,
    now: datetime,
    position: Position | None = None,
    note: str | None = None,
) -> SosResult:
    """Raise (or repeat) the trip's SOS alert at ``position`` (default: the trip's last
    known one). Works on a trip of any status: a person in danger after their trip
    ended still gets help. :class:`~sigueme.errors.NotFound` for an unknown trip."""
    async with sessions() as session, session.begin():
        trip = await locked_trip(session, trip_id)
        where = position if position is not None else last_position(trip)
        if where is not None and where.battery is None and trip.last_battery is not None:
            where = Position(
                where.lon, where.lat, where.t, where.accuracy, trip.last_battery, where.distance_m
            )
        change = await raise_alert(
            session,
            trip,
            AlertKind.SOS,
            now=now,
            position=where,
            details={"source": source, **({"note": note} if note else {})},
            note=note,
        )
    return SosResult(change.alert_id, change)


@dataclass(frozen=True, slots=True)
class CancelResult:
    cancelled: int
    """What the phone is told: how many alerts were cancelled (the duress PIN reports
    the same number a real cancel would have)."""
    changes: tuple[AlertChange, ...]


class WrongPin(Forbidden):
    def __init__(self) -> None:
        super().__init__("wrong PIN")


class NoPin(Forbidden):
    def __init__(self) -> None:
        super().__init__("no PIN set: set one with PUT /v1/me/pins")


async def cancel_with_pin(
    sessions: async_sessionmaker[AsyncSession],
    trip_id: str,
    *,
    user_id: int,
    pin: str,
    now: datetime | None = None,
) -> CancelResult:
    """The trip's owner cancels its live alerts with their PIN. With their duress PIN
    the answer is the same, and the police get the alerts at extreme severity instead.
    :class:`WrongPin` (nothing changes), :class:`NoPin`, :class:`~sigueme.errors.NotFound`
    for a trip that is not theirs."""
    now = now or datetime.now(UTC)
    async with sessions() as session, session.begin():
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound("no such trip")
        trip = await locked_trip(session, trip_id)
        if trip.owner_id != user_id:
            raise NotFound("no such trip")
        if not user.pin_hash:
            raise NoPin()
        match = match_pin(user, pin)
        if match is PinMatch.NONE:
            raise WrongPin()
        if match is PinMatch.DURESS:
            count, changes = await duress(session, trip, actor_id=user_id, now=now)
            return CancelResult(count, tuple(changes))
        cancelled = await cancel_by_traveller(session, trip, actor_id=user_id, now=now)
        return CancelResult(len(cancelled), tuple(cancelled))
