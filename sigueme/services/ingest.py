"""The path of a fix: from what a phone sent to an evaluated, stored, acknowledged fix.

Every channel a phone uses (the websocket, the OsmAnd and OwnTracks HTTP protocols)
parses what it received into :class:`IncomingFix` values and calls :func:`ingest`,
which keeps the promises of ARCHITECTURE.md for them:

1. *An acknowledged fix is stored*: :func:`ingest` returns only after the one
   transaction holding the batch, its evaluations and the trip's new state has
   committed. Acknowledge what it returns, never before it returns.
2. *Resends are idempotent; late fixes raise nothing stale*: a fix whose ``(trip,
   seq)`` is stored already is reported ``duplicate`` and neither evaluated nor stored
   again. A fix older than the last accepted one is evaluated (verdict
   ``out_of_order``), stored where its device time puts it in the track, raises no
   event, and never moves the trip's last position back.
3. *One trip's fixes are evaluated one at a time, whichever worker gets them*: the
   transaction locks the trip's row before reading its monitor state (``SELECT ... FOR
   UPDATE`` on PostgreSQL; on SQLite an ``UPDATE`` first takes the database's write
   lock), so concurrent calls for one trip, in one process or many, run one after the
   other, each on the state the previous one committed.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from sigueme.alerts.kinds import AlertKind, alert_kind_for, cleared_by
from sigueme.errors import Conflict, Invalid, NotFound
from sigueme.geo import (
    Evaluation,
    EventKind,
    Fix,
    FixError,
    MonitorState,
    TripMonitor,
    TripPlan,
    Verdict,
)
from sigueme.geo.monitor import Event
from sigueme.services.alerts import AlertChange, Position, end_condition, raise_alert
from sigueme.store.models import Fix as FixModel
from sigueme.store.models import Trip, utcnow
from sigueme.store.models import TripStatus as TripLifecycle
from sigueme.store.trips import plan_of

MAX_BATCH: Final = 500
"""Most fixes one call takes: a phone with a longer backlog sends it in several."""

MAX_SEQ: Final = 2**63 - 1
"""Sequence numbers are 0 to this (the column is a signed 64-bit integer)."""

PLAN_CACHE_SIZE: Final = 10_000
"""Trip plans kept in memory per process (building one takes some 10 ms, most of it
the route's projection)."""


@dataclass(frozen=True, slots=True)
class IncomingFix:
    """One fix as a phone sent it, already parsed (units converted, time as a number)."""

    seq: int | None
    """The phone's sequence number (0 to 2**63 - 1); a resend carries the same one.
    ``None`` for clients that number nothing: such a fix is always stored."""
    t: float
    """UTC epoch seconds (device time)."""
    lat: float
    lon: float
    accuracy: float | None = None
    """Metres."""
    speed: float | None = None
    """m/s."""
    heading: float | None = None
    """Degrees from north."""
    battery: float | None = None
    """Percent."""


@dataclass(frozen=True, slots=True)
class FixOutcome:
    """What became of one incoming fix, in the order received."""

    seq: int | None
    stored: bool
    """Written by this call (false for a duplicate, which was stored before)."""
    duplicate: bool
    """Its ``seq`` was stored already (or came earlier in the same call): not
    evaluated again."""
    verdict: str | None
    """The fix filter's verdict (:class:`~sigueme.geo.Verdict` values); ``None`` for a
    duplicate."""
    events: tuple[str, ...]
    """Kinds of the events this fix raised (:class:`~sigueme.geo.EventKind` values)."""


@dataclass(frozen=True, slots=True)
class TripStatus:
    """The trip as the phone should show it after the call."""

    trip_id: str
    route_status: str
    """The monitor's status: pending, on_route, drifting, off_route, stopped, late,
    arrived."""
    distance_m: float | None
    """Off the route at the last accepted fix."""
    progress_m: float | None
    progress_fraction: float | None
    """0 to 1."""
    predicted_arrival: datetime | None
    delay_s: float | None
    """Predicted minus planned arrival (negative: early)."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcomes: tuple[FixOutcome, ...]
    """One per incoming fix, in the order given."""
    status: TripStatus
    alerts: tuple[AlertChange, ...] = ()
    """Alerts raised, repeated or whose condition ended, committed with the fixes (the
    caller wakes the relay that puts them on the police queue)."""


class ZoneHit(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...


class ZoneLookup(Protocol):
    """The operator's risk zones (:class:`sigueme.services.risk_zones.RiskZoneIndex`)."""

    def zones_at(self, lon: float, lat: float) -> Sequence[ZoneHit]: ...


class InvalidFix(Invalid):
    """A fix that is not a position at a time. ``field`` names its field (``lat``,
    ``t``, ...); ``index`` is its place in the call, ``seq`` its sequence number."""

    def __init__(self, field: str, reason: str, *, index: int, seq: int | None) -> None:
        super().__init__(field, reason)
        self.index = index
        self.seq = seq


def trip_status(trip: Trip) -> TripStatus:
    """The status of a stored trip (as :func:`ingest` returns it)."""
    fraction = None
    if trip.progress_m is not None and trip.route_length_m > 0:
        fraction = min(max(trip.progress_m / trip.route_length_m, 0.0), 1.0)
    delay = None
    if trip.predicted_arrival is not None:
        delay = (trip.predicted_arrival - trip.arrival).total_seconds()
    return TripStatus(
        trip_id=trip.id,
        route_status=trip.route_status,
        distance_m=trip.distance_m,
        progress_m=trip.progress_m,
        progress_fraction=fraction,
        predicted_arrival=trip.predicted_arrival,
        delay_s=delay,
    )


async def ingest(
    sessions: async_sessionmaker[AsyncSession],
    trip_id: str,
    fixes: Sequence[IncomingFix],
    *,
    received_at: datetime,
    zones: ZoneLookup | None = None,
) -> IngestResult:
    """Evaluate and store ``fixes`` of trip ``trip_id``, received at ``received_at``.

    All or nothing, in one transaction, committed before this returns: every fix of
    the call is checked first (:class:`InvalidFix`, an :class:`~sigueme.errors.Invalid`,
    refuses the whole call and changes nothing; so do more than :data:`MAX_BATCH`
    fixes). Then, with the trip's row locked, fixes whose ``seq`` is stored already
    are skipped as duplicates, the others are evaluated in the order given by the
    trip's monitor (restored from its checkpoint) and stored with their verdicts, and
    the trip's state, status and last position (from the newest *accepted* fix) are
    updated.

    Raises :class:`~sigueme.errors.NotFound` for an unknown trip and
    :class:`~sigueme.errors.Conflict` for a finished or cancelled one; database errors
    propagate (nothing was stored: the caller must not acknowledge, the phone resends).
    """
    [answer] = await ingest_many(sessions, [IngestCall(trip_id, fixes, received_at)], zones=zones)
    if isinstance(answer, Exception):
        raise answer
    return answer


@dataclass(frozen=True, slots=True)
class IngestCall:
    """One channel's call: fixes of one trip, as :func:`ingest` takes them."""

    trip_id: str
    fixes: Sequence[IncomingFix]
    received_at: datetime


async def ingest_many(
    sessions: async_sessionmaker[AsyncSession],
    calls: Sequence[IngestCall],
    *,
    zones: ZoneLookup | None = None,
) -> list[IngestResult | Invalid | NotFound | Conflict]:
    """:func:`ingest` for several calls (of any trips) in ONE transaction: one answer
    per call, in order, each exactly what :func:`ingest` would have answered had the
    calls come one after the other in this order (a refused call, its error, changes
    nothing). The trips' rows are locked in id order (no deadlock with another worker's
    batch); duplicates are looked up, fixes inserted and trips updated with one
    statement each for the whole batch. Database errors propagate: nothing of the batch
    was stored."""
    answers: list[IngestResult | Invalid | NotFound | Conflict] = []
    checked: list[tuple[int, IngestCall, list[tuple[IncomingFix, Fix]]]] = []
    for k, call in enumerate(calls):
        received_at = call.received_at
        if received_at.tzinfo is None or received_at.utcoffset() is None:
            raise ValueError("received_at: naive datetime; pass a UTC-aware time")
        answers.append(Invalid("fixes", "not evaluated"))  # replaced below
        try:
            if len(call.fixes) > MAX_BATCH:
                raise Invalid(
                    "fixes", f"at most {MAX_BATCH} fixes at a time, got {len(call.fixes)}"
                )
            checked.append((k, call, [_checked(i, f) for i, f in enumerate(call.fixes)]))
        except Invalid as exc:
            answers[k] = exc
    if not checked:
        return answers

    async with sessions() as session, session.begin():
        trips = await locked_trips(session, sorted({call.trip_id for _, call, _ in checked}))
        stored = await _stored_seqs(session, checked)
        monitors: dict[str, TripMonitor] = {}
        new_rows: list[dict[str, Any]] = []
        later: list[
            tuple[
                int,
                Trip,
                list[FixOutcome],
                list[tuple[Event, Fix]],
                Fix | None,
                datetime,
                TripStatus,
            ]
        ] = []
        for k, call, fixes in checked:
            trip = trips.get(call.trip_id)
            if trip is None:
                answers[k] = NotFound("no such trip")
                continue
            if trip.status != TripLifecycle.ACTIVE.value:
                answers[k] = Conflict(f"the trip is {trip.status}: it takes no more fixes")
                continue
            monitor = monitors.get(trip.id)
            if monitor is None:
                monitor = TripMonitor(
                    await _plan(session, trip), MonitorState.from_dict(trip.monitor_state)
                )
                monitors[trip.id] = monitor
            received = call.received_at.astimezone(UTC)
            outcomes, raised, newest, newest_fix = _evaluate(
                monitor, trip.id, fixes, stored[trip.id], received, new_rows
            )
            if outcomes and any(o.stored for o in outcomes):
                trip.route_status = monitor.state.status.value
            if newest is not None and newest_fix is not None:
                trip.last_fix_at = datetime.fromtimestamp(newest_fix.t, UTC)
                trip.last_lon = newest_fix.lon
                trip.last_lat = newest_fix.lat
                trip.last_accuracy = newest_fix.accuracy
                trip.last_battery = newest_fix.battery
                trip.distance_m = _finite(newest.distance_m)
                trip.progress_m = _finite(newest.progress_m)
                trip.predicted_arrival = _time(newest.predicted_arrival)
            later.append((k, trip, outcomes, raised, newest_fix, received, trip_status(trip)))
        for trip_id, monitor in monitors.items():
            trips[trip_id].monitor_state = monitor.state.to_dict()
        if new_rows:
            await session.execute(insert(FixModel), new_rows)
        # Alerts after the fixes are in (their evidence marks the stored stretch).
        for k, trip, outcomes, raised, newest_fix, received, status in later:
            changes = await _alerts(session, trip, raised, newest_fix, zones, received)
            # Heard from: the watchdog's silence deadline moves on.
            trip.last_heard_at = received
            trip.silence_deadline = received + timedelta(seconds=trip.silence_timeout_s)
            answers[k] = IngestResult(tuple(outcomes), status, tuple(changes))
    # The transaction has committed (leaving the block without an exception commits).
    return answers


async def _stored_seqs(
    session: AsyncSession, checked: Sequence[tuple[int, IngestCall, list[tuple[IncomingFix, Fix]]]]
) -> dict[str, set[int]]:
    """The sequence numbers of the batch already stored, per trip (one query)."""
    stored: dict[str, set[int]] = {call.trip_id: set() for _, call, _ in checked}
    wanted = {
        (call.trip_id, f.seq) for _, call, fixes in checked for f, _ in fixes if f.seq is not None
    }
    if not wanted:
        return stored
    rows = await session.execute(
        select(FixModel.trip_id, FixModel.seq).where(
            FixModel.trip_id.in_({t for t, _ in wanted}),
            FixModel.seq.in_({s for _, s in wanted}),
        )
    )
    for trip_id, seq in rows.all():
        if seq is not None and (trip_id, seq) in wanted:
            stored[trip_id].add(seq)
    return stored


def _evaluate(
    monitor: TripMonitor,
    trip_id: str,
    checked: Sequence[tuple[IncomingFix, Fix]],
    seen: set[int],
    received: datetime,
    new_rows: list[dict[str, Any]],
) -> tuple[list[FixOutcome], list[tuple[Event, Fix]], Evaluation | None, Fix | None]:
    """One call's fixes through the trip's monitor; rows to store appended to
    ``new_rows``, sequence numbers to ``seen``."""
    now = received.timestamp()
    outcomes: list[FixOutcome] = []
    raised: list[tuple[Event, Fix]] = []
    newest: Evaluation | None = None
    newest_fix: Fix | None = None
    for incoming, fix in checked:
        if incoming.seq is not None and incoming.seq in seen:
            outcomes.append(FixOutcome(incoming.seq, False, True, None, ()))
            continue
        if incoming.seq is not None:
            seen.add(incoming.seq)
        ev = monitor.update(fix, now=now)
        if ev.verdict is Verdict.ACCEPTED:
            newest, newest_fix = ev, fix
        raised.extend((e, fix) for e in ev.events)
        outcomes.append(
            FixOutcome(
                incoming.seq,
                True,
                False,
                ev.verdict.value,
                tuple(e.kind.value for e in ev.events),
            )
        )
        new_rows.append(
            {
                "trip_id": trip_id,
                "seq": incoming.seq,
                "t": datetime.fromtimestamp(fix.t, UTC),
                "received_at": received,
                "lon": fix.lon,
                "lat": fix.lat,
                "accuracy": fix.accuracy,
                "speed": fix.speed,
                "heading": fix.heading,
                "battery": fix.battery,
                "verdict": ev.verdict.value,
                "distance_m": _finite(ev.distance_m),
                "progress_m": _finite(ev.progress_m),
                "evidence": False,
            }
        )
    return outcomes, raised, newest, newest_fix


_ENDED_BY: Final = {
    EventKind.ARRIVED: ((AlertKind.LATE, "llegó a su destino"), (AlertKind.OVERDUE, "llegó")),
}
_REASON_ES: Final = {
    EventKind.BACK_ON_ROUTE: "regresó a la ruta",
    EventKind.MOVING: "en movimiento de nuevo",
    EventKind.ON_SCHEDULE: "de nuevo a tiempo",
}


async def _alerts(
    session: AsyncSession,
    trip: Trip,
    events: Sequence[tuple[Event, Fix]],
    newest_fix: Fix | None,
    zones: ZoneLookup | None,
    received: datetime,
) -> list[AlertChange]:
    """Alerts from this call's events (in the order they happened), the risk zones the
    newest position entered, and the end of a silence: in the fixes' transaction."""
    changes: list[AlertChange] = []
    for event, fix in events:
        when = datetime.fromtimestamp(event.t, UTC)
        kind = alert_kind_for(event.kind)
        if kind is not None:
            details: dict[str, Any] = {"event": event.kind.value}
            if math.isfinite(event.delay_s):
                details["delay_s"] = round(event.delay_s)
            if kind is AlertKind.OFF_ROUTE:
                details["off_route_since"] = when.isoformat()
            position = Position(
                lon=event.lon,
                lat=event.lat,
                t=when,
                accuracy=fix.accuracy,
                battery=fix.battery,
                distance_m=_finite(event.distance_m),
            )
            changes.append(
                await raise_alert(
                    session, trip, kind, now=received, position=position, details=details
                )
            )
        ended = cleared_by(event.kind)
        pairs = ((ended, _REASON_ES.get(event.kind, event.kind.value)),) if ended else ()
        for ended_kind, reason in pairs or _ENDED_BY.get(event.kind, ()):
            change = await end_condition(session, trip, ended_kind, now=received, reason=reason)
            if change is not None:
                changes.append(change)
    if (
        trip.silence_alerted_at is not None
        and trip.silence_deadline is not None
        and trip.silence_deadline <= trip.silence_alerted_at
    ):
        # The first fix after a signal_lost alert (the deadline has not moved since).
        change = await end_condition(
            session, trip, AlertKind.SIGNAL_LOST, now=received, reason="señal recuperada"
        )
        if change is not None:
            changes.append(change)
    if newest_fix is not None and zones is not None:
        changes.extend(await _risk_zones(session, trip, newest_fix, zones, received))
    return changes


async def _risk_zones(
    session: AsyncSession, trip: Trip, fix: Fix, zones: ZoneLookup, received: datetime
) -> list[AlertChange]:
    hits = zones.zones_at(fix.lon, fix.lat)
    inside = {h.id for h in hits}
    before = set(trip.risk_zones_inside or ())
    if inside == before:
        return []
    trip.risk_zones_inside = sorted(inside)
    changes = []
    for hit in hits:
        if hit.id in before:
            continue
        position = Position(
            lon=fix.lon,
            lat=fix.lat,
            t=datetime.fromtimestamp(fix.t, UTC),
            accuracy=fix.accuracy,
            battery=fix.battery,
            distance_m=trip.distance_m,
        )
        changes.append(
            await raise_alert(
                session,
                trip,
                AlertKind.RISK_ZONE,
                now=received,
                position=position,
                details={"risk_zone_id": hit.id, "risk_zone_name": hit.name},
            )
        )
    return changes


def _checked(index: int, incoming: IncomingFix) -> tuple[IncomingFix, Fix]:
    seq = incoming.seq
    if seq is not None and (
        isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ
    ):
        raise InvalidFix("seq", f"must be an integer from 0 to {MAX_SEQ}", index=index, seq=None)
    try:
        fix = Fix(
            t=incoming.t,
            lat=incoming.lat,
            lon=incoming.lon,
            accuracy=incoming.accuracy,
            speed=incoming.speed,
            heading=incoming.heading,
            battery=incoming.battery,
        )
    except FixError as exc:
        raise InvalidFix(exc.field, exc.reason, index=index, seq=seq) from None
    return incoming, fix


async def locked_trip(session: AsyncSession, trip_id: str) -> Trip:
    """The trip's row, locked against other ingests until the transaction ends;
    :class:`~sigueme.errors.NotFound` when there is none."""
    trip = (await locked_trips(session, [trip_id])).get(trip_id)
    if trip is None:
        raise NotFound("no such trip")
    return trip


async def locked_trips(session: AsyncSession, trip_ids: Sequence[str]) -> dict[str, Trip]:
    """The rows of those of ``trip_ids`` that exist, locked (in id order, so two
    workers' batches never deadlock) until the transaction ends."""
    ids = sorted(set(trip_ids))
    # The geometries are large and only needed to build a plan not cached yet.
    query = (
        select(Trip)
        .where(Trip.id.in_(ids))
        .order_by(Trip.id)
        .options(defer(Trip.route), defer(Trip.corridor))
    )
    if session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks, and a transaction that reads first and writes later
        # may find the database changed under it (and fail) when it comes to write.
        # Writing first takes the one write lock (waiting for it: busy timeout) before
        # the state is read, so concurrent ingests run one after the other.
        await session.execute(
            update(Trip)
            .where(Trip.id.in_(ids))
            .values(updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    else:
        query = query.with_for_update(of=Trip)
    return {trip.id: trip for trip in (await session.scalars(query)).all()}


_plans: OrderedDict[tuple[str, datetime], TripPlan] = OrderedDict()


async def _plan(session: AsyncSession, trip: Trip) -> TripPlan:
    """The trip's plan, from a per-process cache: a trip's plan does not change once it
    is filed (key: id and filing time, so a reused id is never served a stale plan)."""
    key = (trip.id, trip.created_at)
    plan = _plans.get(key)
    if plan is not None:
        _plans.move_to_end(key)
        return plan
    await session.refresh(trip, ["route"])
    plan = plan_of(trip)
    _plans[key] = plan
    while len(_plans) > PLAN_CACHE_SIZE:
        _plans.popitem(last=False)
    return plan


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _time(epoch_s: float) -> datetime | None:
    return datetime.fromtimestamp(epoch_s, UTC) if math.isfinite(epoch_s) else None
