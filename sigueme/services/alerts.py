"""Alerts in the database: raised (from a trip's events, SOS, the watchdog), repeated,
worked by dispatchers, cancelled by the traveller, escalated.

Every change happens inside the caller's transaction and writes, in that same
transaction, one row to the outbox (``alert_outbox``) and one to the alert's history.
So an alert that was raised is committed with the fix that raised it, before that fix
is acknowledged, and the relay (:mod:`sigueme.services.relay`) puts it on the police
queue afterwards, at least once (ARCHITECTURE.md, promise 1).

At most one *live* alert (open, acknowledged, dispatched) exists per trip and kind: the
database's partial unique index ``uq_alerts_open_trip_kind`` enforces it; raising a kind
that is live already repeats that alert (``count`` + 1, position updated) instead.
Callers hold the trip's row lock (ingest, SOS and the watchdog all take it), so two
raises of one trip never race; the index is the backstop that keeps the promise if one
ever does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from sigueme.alerts.kinds import AlertKind, Severity
from sigueme.alerts.lifecycle import (
    LIVE_STATUSES,
    Action,
    AlertStatus,
    Outcome,
    TransitionError,
    escalated,
    next_status,
)
from sigueme.alerts.snapshot import (
    AlertSnapshot,
    HistoryEntry,
    ReportFacts,
    TrackPoint,
    Traveller,
    public_view,
)
from sigueme.errors import Conflict, NotFound
from sigueme.reports.categories import ReportCategory
from sigueme.store.models import (
    Alert,
    AlertHistory,
    AlertOutbox,
    Report,
    ReportChannel,
    ReportMedia,
    Trip,
    User,
)
from sigueme.store.models import Fix as FixModel

EVIDENCE_WINDOW: Final = timedelta(minutes=15)
"""The stretch of track before an alert kept as evidence (never purged) and shown with it."""
TRACK_MAX_POINTS: Final = 120
"""Most points of that stretch an alert shows."""
LIVE: Final = tuple(s.value for s in LIVE_STATUSES)


@dataclass(frozen=True, slots=True)
class Position:
    """Where the trip was when an alert was raised or repeated."""

    lon: float
    lat: float
    t: datetime | None = None
    """Device time of the fix."""
    accuracy: float | None = None
    battery: float | None = None
    distance_m: float | None = None


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One change of one alert, as the outbox holds it."""

    alert_id: str
    trip_id: str | None
    """``None`` for a report's alert."""
    kind: str
    action: str


def last_position(trip: Trip) -> Position | None:
    """The trip's last accepted position, if any."""
    if trip.last_lon is None or trip.last_lat is None:
        return None
    return Position(
        lon=trip.last_lon,
        lat=trip.last_lat,
        t=trip.last_fix_at,
        accuracy=trip.last_accuracy,
        battery=trip.last_battery,
        distance_m=trip.distance_m,
    )


def _record(
    session: AsyncSession,
    alert: Alert,
    action: Action,
    *,
    at: datetime,
    actor_id: int | None = None,
    note: str | None = None,
    police_only: bool = False,
    outbox: bool = True,
) -> AlertChange:
    session.add(
        AlertHistory(
            alert_id=alert.id,
            at=at,
            actor_id=actor_id,
            action=action.value,
            note=note,
            police_only=police_only,
        )
    )
    if outbox:
        session.add(AlertOutbox(alert_id=alert.id, event=action.value, created_at=at))
    return AlertChange(alert.id, alert.trip_id, alert.kind, action.value)


async def live_alert(
    session: AsyncSession, trip_id: str, kind: AlertKind, *, lock: bool = True
) -> Alert | None:
    query = select(Alert).where(
        Alert.trip_id == trip_id, Alert.kind == kind.value, Alert.status.in_(LIVE)
    )
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


def _place(alert: Alert, position: Position | None) -> None:
    if position is None:
        return
    alert.lon = position.lon
    alert.lat = position.lat
    alert.position_at = position.t
    alert.accuracy = position.accuracy
    if position.battery is not None:
        alert.battery = position.battery
    if position.distance_m is not None:
        alert.distance_m = position.distance_m


async def raise_alert(
    session: AsyncSession,
    trip: Trip,
    kind: AlertKind,
    *,
    now: datetime,
    position: Position | None,
    details: Mapping[str, Any] | None = None,
    severity: Severity | None = None,
    note: str | None = None,
) -> AlertChange:
    """Raise an alert of ``kind`` for ``trip`` (whose row the caller has locked), or
    repeat the live one of that kind. ``severity`` defaults to the kind's; a repeat
    never lowers a live alert's severity."""
    severity = severity if severity is not None else kind.severity
    alert = await live_alert(session, trip.id, kind)
    if alert is None:
        alert = Alert(
            trip_id=trip.id,
            kind=kind.value,
            severity=int(severity),
            status=AlertStatus.OPEN.value,
            count=1,
            escalations=0,
            details=dict(details or {}),
            opened_at=now,
            updated_at=now,
        )
        _place(alert, position)
        if alert.battery is None:
            alert.battery = trip.last_battery
        try:
            async with session.begin_nested():
                session.add(alert)
                await session.flush()
        except IntegrityError:
            # Someone raised it between our look and our insert: repeat theirs.
            alert = await live_alert(session, trip.id, kind)
            if alert is None:
                raise
        else:
            await _keep_evidence(session, trip.id, position)
            return _record(session, alert, Action.RAISED, at=now, note=note)
    alert.count += 1
    alert.severity = max(alert.severity, int(severity))
    alert.updated_at = now
    if details:
        alert.details = {**alert.details, **details}
    _place(alert, position)
    await _keep_evidence(session, trip.id, position)
    return _record(session, alert, Action.REPEATED, at=now, note=note)


async def end_condition(
    session: AsyncSession, trip: Trip, kind: AlertKind, *, now: datetime, reason: str
) -> AlertChange | None:
    """The condition behind the live ``kind`` alert of ``trip`` ended (back on route,
    moving again, heard from again...). The alert stays live: a dispatcher resolves it,
    since a trip back on route may still need help."""
    alert = await live_alert(session, trip.id, kind)
    if alert is None:
        return None
    alert.details = {**alert.details, "condition_ended_at": _iso(now), "condition": reason}
    alert.updated_at = now
    return _record(session, alert, Action.CONDITION_ENDED, at=now, note=reason)


async def _keep_evidence(session: AsyncSession, trip_id: str, position: Position | None) -> None:
    """Mark the stretch of track before the alert as evidence: retention keeps it."""
    if position is None or position.t is None:
        return
    await session.execute(
        update(FixModel)
        .where(
            FixModel.trip_id == trip_id,
            FixModel.t >= position.t - EVIDENCE_WINDOW,
            FixModel.t <= position.t,
        )
        .values(evidence=True)
        .execution_options(synchronize_session=False)
    )


# -- what dispatchers do ------------------------------------------------------------------


async def act(
    sessions: async_sessionmaker[AsyncSession],
    alert_id: str,
    action: Action,
    *,
    actor_id: int,
    now: datetime,
    note: str | None = None,
    unit: str | None = None,
    outcome: Outcome | None = None,
) -> AlertChange:
    """A dispatcher acknowledges, dispatches (``unit``) or resolves (``outcome``) an
    alert. :class:`~sigueme.errors.NotFound` for an unknown alert,
    :class:`~sigueme.errors.Conflict` when the action does not apply to its status."""
    if action not in (Action.ACKNOWLEDGED, Action.DISPATCHED, Action.RESOLVED):
        raise ValueError(f"not a dispatcher's action: {action}")
    async with sessions() as session, session.begin():
        alert = await session.scalar(select(Alert).where(Alert.id == alert_id).with_for_update())
        if alert is None:
            raise NotFound("no such alert")
        try:
            status = next_status(AlertStatus(alert.status), action)
        except TransitionError as exc:
            raise Conflict(str(exc)) from None
        alert.status = status.value
        alert.updated_at = now
        if action is Action.DISPATCHED:
            alert.unit = unit
        if action is Action.RESOLVED:
            alert.outcome = outcome.value if outcome is not None else None
            alert.closed_at = now
        text = note
        if unit is not None:
            text = f"{unit}: {note}" if note else unit
        return _record(session, alert, action, at=now, actor_id=actor_id, note=text)


async def escalate_due(
    sessions: async_sessionmaker[AsyncSession],
    *,
    after: timedelta,
    now: datetime,
    limit: int = 100,
) -> list[AlertChange]:
    """Escalate alerts still ``open`` (nobody acknowledged them) ``after`` their opening
    or their last escalation: severity one step up (at most extreme) and delivered again.
    Safe to run in every worker at once: each due alert is taken by one of them."""
    cutoff = now - after
    async with sessions() as session, session.begin():
        query = (
            select(Alert)
            .where(Alert.status == AlertStatus.OPEN.value)
            .where(
                ((Alert.escalated_at.is_(None)) & (Alert.opened_at <= cutoff))
                | (Alert.escalated_at <= cutoff)
            )
            .order_by(Alert.severity.desc(), Alert.opened_at)
            .limit(limit)
        )
        if session.get_bind().dialect.name != "sqlite":
            query = query.with_for_update(skip_locked=True)
        changes = []
        for alert in (await session.scalars(query)).all():
            before = Severity(alert.severity)
            alert.severity = int(escalated(before))
            alert.escalations += 1
            alert.escalated_at = now
            alert.updated_at = now
            note = f"sin atender: severidad {before.label_es} → {Severity(alert.severity).label_es}"
            changes.append(_record(session, alert, Action.ESCALATED, at=now, note=note))
        return changes


# -- what the traveller does -----------------------------------------------------------------


async def _live_alerts_of(session: AsyncSession, trip: Trip) -> Sequence[Alert]:
    """Every live alert of ``trip``, locked."""
    query = select(Alert).where(Alert.trip_id == trip.id, Alert.status.in_(LIVE))
    return (await session.scalars(query.with_for_update())).all()


async def cancel_by_traveller(
    session: AsyncSession, trip: Trip, *, actor_id: int, now: datetime
) -> list[AlertChange]:
    """The traveller's PIN: every live alert of the trip is cancelled."""
    alerts = await _live_alerts_of(session, trip)
    changes = []
    for alert in alerts:
        alert.status = next_status(AlertStatus(alert.status), Action.CANCELLED).value
        alert.closed_at = now
        alert.updated_at = now
        changes.append(
            _record(
                session, alert, Action.CANCELLED, at=now, actor_id=actor_id, note="PIN correcto"
            )
        )
    return changes


async def duress(
    session: AsyncSession, trip: Trip, *, actor_id: int, now: datetime
) -> tuple[int, list[AlertChange]]:
    """The duress PIN: to the phone it looks like a cancel (the caller answers exactly
    as for :func:`cancel_by_traveller`, with the count returned here); for the police,
    every live alert of the trip goes to extreme severity, marked duress, and when none
    was live an SOS is raised. Returns (the count a cancel would report, the changes)."""
    alerts = await _live_alerts_of(session, trip)
    changes = []
    note = "PIN de coacción: la persona simuló cancelar"
    for alert in alerts:
        alert.severity = int(Severity.EXTREME)
        alert.details = {**alert.details, "duress": True, "duress_at": _iso(now)}
        alert.updated_at = now
        changes.append(
            _record(
                session,
                alert,
                Action.DURESS,
                at=now,
                actor_id=actor_id,
                note=note,
                police_only=True,
            )
        )
    if not alerts:
        change = await raise_alert(
            session,
            trip,
            AlertKind.SOS,
            now=now,
            position=last_position(trip),
            details={"duress": True, "duress_at": _iso(now), "source": "duress_pin"},
            note=note,
        )
        changes.append(change)
    return len(alerts), changes


# -- reading ----------------------------------------------------------------------------


async def snapshot(
    session: AsyncSession,
    alert: Alert,
    *,
    public_url: str,
    police: bool = True,
    trip: Trip | None = None,
    track: bool = True,
) -> AlertSnapshot:
    """Everything ``alert`` says, with its trip, traveller, track and history (and, for
    a report's alert, the report, never who made it). ``police=False``: the
    :func:`~sigueme.alerts.snapshot.public_view` of it."""
    if trip is None and alert.trip_id is not None:
        # Not the geometries: an alert does not need a 20,000-vertex route to be read.
        trip = await session.get(
            Trip, alert.trip_id, options=[defer(Trip.route), defer(Trip.corridor)]
        )
        if trip is None:
            raise NotFound("no such trip")
    report = await _report_facts(session, alert.report_id) if alert.report_id else None
    if trip is not None:
        owner = await session.get(User, trip.owner_id)
        traveller = Traveller(
            name=(owner.display_name or owner.name) if owner else "?",
            contact=owner.contact if owner else None,
            profile=owner.profile if owner else None,
        )
    else:
        folio = report.folio if report is not None and report.folio else "sin folio"
        traveller = Traveller(name=f"Reporte {folio}")
    points: tuple[TrackPoint, ...] = ()
    if track and trip is not None and alert.position_at is not None:
        rows = (
            await session.execute(
                select(FixModel.t, FixModel.lon, FixModel.lat, FixModel.accuracy)
                .where(
                    FixModel.trip_id == trip.id,
                    FixModel.t >= alert.position_at - EVIDENCE_WINDOW,
                    FixModel.t <= alert.position_at,
                    FixModel.verdict == "accepted",
                )
                .order_by(FixModel.t.desc())
                .limit(TRACK_MAX_POINTS)
            )
        ).all()
        points = tuple(TrackPoint(t, lon, lat, acc) for t, lon, lat, acc in reversed(rows))
    history_query = (
        select(AlertHistory, User.name)
        .outerjoin(User, User.id == AlertHistory.actor_id)
        .where(AlertHistory.alert_id == alert.id)
        .order_by(AlertHistory.at, AlertHistory.id)
    )
    history = tuple(
        HistoryEntry(h.at, h.action, name, h.note, h.police_only)
        for h, name in (await session.execute(history_query)).all()
    )
    details = dict(alert.details or {})
    since = details.get("off_route_since")
    base = public_url.rstrip("/")
    full = AlertSnapshot(
        id=alert.id,
        kind=AlertKind(alert.kind),
        severity=Severity(alert.severity),
        status=AlertStatus(alert.status),
        trip_id=trip.id if trip is not None else None,
        trip_label=trip.label if trip is not None else None,
        traveller=traveller,
        opened_at=alert.opened_at,
        updated_at=alert.updated_at,
        count=alert.count,
        escalations=alert.escalations,
        lon=alert.lon,
        lat=alert.lat,
        position_at=alert.position_at,
        accuracy=alert.accuracy,
        battery=alert.battery,
        distance_m=alert.distance_m,
        off_route_since=datetime.fromisoformat(since) if isinstance(since, str) else None,
        planned_arrival=trip.arrival if trip is not None else None,
        predicted_arrival=trip.predicted_arrival if trip is not None else None,
        map_url=f"{base}/map/trips/{trip.id}"
        if trip is not None
        else f"{base}/console?alert={alert.id}",
        unit=alert.unit,
        outcome=Outcome(alert.outcome) if alert.outcome else None,
        closed_at=alert.closed_at,
        details=details,
        track=points,
        history=history,
        report=report,
    )
    return full if police else public_view(full)


async def _report_facts(session: AsyncSession, report_id: int) -> ReportFacts | None:
    report = await session.get(Report, report_id)
    if report is None:
        return None
    media = await session.scalar(
        select(func.count()).select_from(ReportMedia).where(ReportMedia.report_id == report_id)
    )
    channel = await session.get(ReportChannel, report.channel_id) if report.channel_id else None
    try:
        category = ReportCategory(report.category)
        label, electoral = category.label_es, category.electoral_crime
    except ValueError:
        label, electoral = report.category, False
    return ReportFacts(
        report_id=report.id,
        folio=report.folio,
        category=report.category,
        category_es=label,
        text=report.text,
        place=report.place,
        media=int(media or 0),
        channel=channel.name if channel is not None else None,
        source=report.source,
        anonymous=report.anonymous,
        electoral=electoral,
    )


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()
