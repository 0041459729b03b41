"""Alerts over HTTP: the dispatchers' queue (``/v1/alerts``), the traveller's SOS and
PINs, and a trip's alerts for those who watch it.

Dispatchers (and admins) list, read and work alerts: acknowledge, record the unit
dispatched, resolve with an outcome; each step is recorded in the alert's history with
who, when and the note, and goes out on the police queue, the watchers' feed and the
webhooks (through the outbox). ``GET /v1/alerts/{id}.cap`` exports one as CAP 1.2 XML.

The traveller presses SOS (``POST /v1/trips/{id}/sos``), sets a PIN and a duress PIN
(``PUT /v1/me/pins``) and cancels their trip's live alerts with the PIN
(``POST /v1/trips/{id}/cancel-alerts``); the duress PIN answers exactly the same and
tells the police instead.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from sigueme.access import Principal
from sigueme.alerts.cap import to_cap
from sigueme.alerts.kinds import AlertKind
from sigueme.alerts.lifecycle import LIVE_STATUSES, Action, AlertStatus, Outcome
from sigueme.alerts.snapshot import alert_dict
from sigueme.api.deps import PrincipalDep, SessionDep, SettingsDep, UserDep, require_role
from sigueme.api.fixes_in import wake_relay
from sigueme.api.ratelimit import RateLimiter
from sigueme.api.trips import INVALID, UNAUTHORIZED, Responses, _err
from sigueme.errors import Invalid, NotFound, TooMany
from sigueme.services.alerts import Position, act, snapshot
from sigueme.services.traveller import cancel_with_pin, raise_sos
from sigueme.store import reports as report_store
from sigueme.store import trips as trip_store
from sigueme.store.audit import ReadAction, record_read
from sigueme.store.models import Alert, Role, Trip, User, utcnow
from sigueme.store.pins import set_pins

router = APIRouter(prefix="/v1", tags=["alerts"])

DispatcherDep = Annotated[Principal, Depends(require_role(Role.DISPATCHER, Role.ADMIN))]
AlertId = Annotated[str, Path(min_length=1, max_length=36, description="The alert's id.")]
TripId = Annotated[str, Path(min_length=1, max_length=36, description="The trip's id.")]

MAX_LIST: Final = 500
NOT_FOUND_ALERT: Responses = {404: _err("No such alert.")}
DISPATCHERS: Responses = {403: _err("Only dispatchers and admins work the alert queue.")}
CONFLICT: Responses = {409: _err("The step does not apply to the alert's status.")}

PIN_ATTEMPTS = RateLimiter(rate=5 / 900, burst=5)
"""Five PIN attempts per trip per 15 minutes (per worker)."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoteIn(_In):
    note: str | None = Field(None, max_length=2000, description="What was done, for the record.")


class DispatchIn(NoteIn):
    unit: str = Field(min_length=1, max_length=100, description="The unit sent (e.g. 'MOR-114').")


class ResolveIn(NoteIn):
    outcome: Outcome


class SosIn(_In):
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    accuracy: float | None = Field(None, ge=0, le=100_000)
    battery: float | None = Field(None, ge=0, le=100)
    note: str | None = Field(None, max_length=500)


class PinsIn(_In):
    pin: str = Field(description="4 to 8 digits: cancels the traveller's alerts.")
    duress_pin: str = Field(
        description="4 to 8 digits, not the PIN: looks like a cancel, alerts the police."
    )


class CancelIn(_In):
    pin: str = Field(max_length=8)


class CancelOut(BaseModel):
    cancelled: int


class SosOut(BaseModel):
    alert_id: str
    status: str


class Step(BaseModel):
    id: str
    status: str
    event: str


def _now() -> datetime:
    return datetime.now(UTC)


async def _alert(session: AsyncSession, alert_id: str) -> Alert:
    alert = await session.get(Alert, alert_id)
    if alert is None:
        raise NotFound("no such alert")
    return alert


async def _visible_alert(session: AsyncSession, principal: Principal, alert_id: str) -> Alert:
    """The alert, or :class:`NotFound` also when it carries a report that is not routed
    to ``principal`` (reports go to the dispatchers of their channel, or of the general
    queue when they have none: :mod:`sigueme.store.reports`)."""
    alert = await _alert(session, alert_id)
    who = await report_store.viewer(session, principal)
    if not await report_store.may_see_alert(session, who, alert):
        raise NotFound("no such alert")
    return alert


@router.get(
    "/alerts",
    summary="The alert queue, most urgent first",
    responses={**UNAUTHORIZED, **DISPATCHERS, **INVALID},
)
async def list_alerts(
    principal: DispatcherDep,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[
        list[AlertStatus] | None,
        Query(description="Statuses to show (repeat the parameter); default: live ones."),
    ] = None,
    kind: Annotated[list[AlertKind] | None, Query()] = None,
    min_severity: Annotated[int, Query(ge=1, le=4)] = 1,
    bbox: Annotated[
        str | None, Query(description="min_lon,min_lat,max_lon,max_lat: alerts placed inside.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
) -> dict[str, Any]:
    """Live alerts (open, acknowledged, dispatched) by default, most urgent first: open
    before acknowledged before dispatched, then severity, then oldest. Filters by status,
    kind, minimum severity and area. ``counts`` gives the live alerts by severity."""
    statuses = [s.value for s in (status or sorted(LIVE_STATUSES))]
    # Reports' alerts only for the dispatchers of their channel (or of the general queue).
    routed = report_store.report_alerts_clause(await report_store.viewer(session, principal))
    query = select(Alert).where(Alert.status.in_(statuses), Alert.severity >= min_severity, routed)
    if kind:
        query = query.where(Alert.kind.in_([k.value for k in kind]))
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = _bbox(bbox)
        query = query.where(
            Alert.lon >= min_lon, Alert.lon <= max_lon, Alert.lat >= min_lat, Alert.lat <= max_lat
        )
    rows = (await session.scalars(query.limit(5_000))).all()
    order = {AlertStatus.OPEN.value: 0, AlertStatus.ACKNOWLEDGED.value: 1}
    rows = sorted(rows, key=lambda a: (order.get(a.status, 2), -a.severity, a.opened_at))
    now = _now()
    counts: dict[str, int] = {}
    for (severity,) in (
        await session.execute(
            select(Alert.severity).where(Alert.status.in_([s.value for s in LIVE_STATUSES]), routed)
        )
    ).all():
        counts[str(severity)] = counts.get(str(severity), 0) + 1
    trips: dict[str, Trip] = {}
    out = []
    for alert in rows[:limit]:
        trip = trips.get(alert.trip_id) if alert.trip_id is not None else None
        if trip is None and alert.trip_id is not None:
            trip = await session.get(Trip, alert.trip_id)
            assert trip is not None
            trips[trip.id] = trip
        snap = await snapshot(
            session, alert, public_url=settings.public_url, trip=trip, track=False
        )
        out.append(alert_dict(snap, now, track=False))
    for trip_id in trips:
        await record_read(session, principal, trip_id, ReadAction.ALERTS)
    await session.commit()
    return {"alerts": out, "total": len(rows), "counts_live_by_severity": counts}


def _bbox(text: str) -> tuple[float, float, float, float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise Invalid("bbox", "four numbers: min_lon,min_lat,max_lon,max_lat") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise Invalid("bbox", "four numbers: min_lon,min_lat,max_lon,max_lat")
    min_lon, min_lat, max_lon, max_lat = values
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise Invalid(
            "bbox", "longitudes within [-180, 180], latitudes within [-90, 90], min <= max"
        )
    return min_lon, min_lat, max_lon, max_lat


@router.get(
    "/alerts/{alert_id}.cap",
    summary="One alert as OASIS CAP 1.2 XML",
    response_class=Response,
    responses={
        200: {"content": {"application/cap+xml": {}}},
        **UNAUTHORIZED,
        **DISPATCHERS,
        **NOT_FOUND_ALERT,
    },
)
async def alert_cap(
    alert_id: AlertId, principal: DispatcherDep, session: SessionDep, settings: SettingsDep
) -> Response:
    alert = await _visible_alert(session, principal, alert_id)
    snap = await snapshot(session, alert, public_url=settings.public_url)
    body = to_cap(snap, sender=settings.cap_sender, now=_now())
    if alert.trip_id is not None:
        await record_read(session, principal, alert.trip_id, ReadAction.ALERT)
        await session.commit()
    return Response(
        body,
        media_type="application/cap+xml",
        headers={"Content-Disposition": f'inline; filename="alerta-{alert.id}.xml"'},
    )


@router.get(
    "/alerts/{alert_id}",
    summary="One alert with its trip, traveller, track and history",
    responses={**UNAUTHORIZED, **DISPATCHERS, **NOT_FOUND_ALERT},
)
async def get_alert(
    alert_id: AlertId, principal: DispatcherDep, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Everything a dispatcher needs: the alert, the traveller's contact, the planned
    route, the track before the alert, its history. The read is audited."""
    alert = await _visible_alert(session, principal, alert_id)
    trip = await session.get(Trip, alert.trip_id) if alert.trip_id is not None else None
    snap = await snapshot(session, alert, public_url=settings.public_url, trip=trip)
    body = alert_dict(snap, _now())
    body["route"] = None
    if trip is not None:
        coords = [list(c) for c in trip.route.coords]
        body["route"] = {"type": "LineString", "coordinates": coords}
        await record_read(session, principal, trip.id, ReadAction.ALERT)
        await session.commit()
    return body


async def _step(
    conn: HTTPConnection,
    alert_id: str,
    action: Action,
    principal: Principal,
    body: NoteIn,
    **kw: Any,
) -> Step:
    assert principal.user_id is not None
    async with conn.app.state.sessions() as session:
        await _visible_alert(session, principal, alert_id)
    change = await act(
        conn.app.state.sessions,
        alert_id,
        action,
        actor_id=principal.user_id,
        now=utcnow(),
        note=(body.note or "").strip() or None,
        **kw,
    )
    wake_relay(conn.app.state, [change])
    async with conn.app.state.sessions() as session:
        alert = await _alert(session, alert_id)
        return Step(id=alert.id, status=alert.status, event=change.action)


@router.post(
    "/alerts/{alert_id}/acknowledge",
    summary="Acknowledge an alert (a dispatcher is on it)",
    responses={**UNAUTHORIZED, **DISPATCHERS, **NOT_FOUND_ALERT, **CONFLICT, **INVALID},
)
async def acknowledge(
    alert_id: AlertId, body: NoteIn, principal: DispatcherDep, conn: HTTPConnection
) -> Step:
    return await _step(conn, alert_id, Action.ACKNOWLEDGED, principal, body)


@router.post(
    "/alerts/{alert_id}/dispatch",
    summary="Record the unit dispatched",
    responses={**UNAUTHORIZED, **DISPATCHERS, **NOT_FOUND_ALERT, **CONFLICT, **INVALID},
)
async def dispatch(
    alert_id: AlertId, body: DispatchIn, principal: DispatcherDep, conn: HTTPConnection
) -> Step:
    return await _step(conn, alert_id, Action.DISPATCHED, principal, body, unit=body.unit.strip())


@router.post(
    "/alerts/{alert_id}/resolve",
    summary="Resolve an alert with its outcome",
    responses={**UNAUTHORIZED, **DISPATCHERS, **NOT_FOUND_ALERT, **CONFLICT, **INVALID},
)
async def resolve(
    alert_id: AlertId, body: ResolveIn, principal: DispatcherDep, conn: HTTPConnection
) -> Step:
    return await _step(conn, alert_id, Action.RESOLVED, principal, body, outcome=body.outcome)


# -- a trip's alerts, for those who may see it ----------------------------------------------


@router.get(
    "/trips/{trip_id}/alerts",
    summary="The alerts of a trip you may see",
    responses={**UNAUTHORIZED, 404: _err("No such trip, or not one you were given.")},
)
async def trip_alerts(
    trip_id: TripId, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """Newest first, without the police-only record. The traveller sees an alert they
    cancelled with their duress PIN as cancelled (whoever holds their phone must not
    learn otherwise)."""
    trip, _facts = await trip_store.visible_trip(session, principal, trip_id, _now())
    rows = (
        await session.scalars(
            select(Alert).where(Alert.trip_id == trip.id).order_by(Alert.opened_at.desc())
        )
    ).all()
    now = _now()
    out = []
    for alert in rows[:MAX_LIST]:
        snap = await snapshot(
            session, alert, public_url=settings.public_url, police=False, trip=trip, track=False
        )
        body = alert_dict(snap, now, track=False)
        if principal.user_id == trip.owner_id and (alert.details or {}).get("duress"):
            body["status"] = AlertStatus.CANCELLED.value
            body["status_label"] = AlertStatus.CANCELLED.label_es
        out.append(body)
    await record_read(session, principal, trip.id, ReadAction.ALERTS)
    await session.commit()
    return {"alerts": out}


# -- the traveller ---------------------------------------------------------------------------


@router.post(
    "/trips/{trip_id}/sos",
    status_code=201,
    summary="SOS: alert the police now",
    responses={**UNAUTHORIZED, 404: _err("No such trip, or not yours."), **INVALID},
)
async def sos(
    trip_id: TripId,
    principal: UserDep,
    conn: HTTPConnection,
    body: SosIn | None = None,
) -> SosOut:
    """The highest severity at once, no hysteresis. Give the position if the phone has
    one (``lat`` and ``lon``); otherwise the trip's last known position is used. Pressing
    again repeats the same live alert (counted). Committed before the answer."""
    body = body or SosIn.model_validate({})
    if (body.lat is None) != (body.lon is None):
        raise Invalid("lat" if body.lat is None else "lon", "give both lat and lon, or neither")
    async with conn.app.state.sessions() as session:
        trip = await session.get(Trip, trip_id)
        if trip is None or trip.owner_id != principal.user_id:
            raise NotFound("no such trip")
    position = None
    if body.lat is not None and body.lon is not None:
        position = Position(
            lon=body.lon, lat=body.lat, t=utcnow(), accuracy=body.accuracy, battery=body.battery
        )
    result = await raise_sos(
        conn.app.state.sessions,
        trip_id,
        source="api",
        now=utcnow(),
        position=position,
        note=(body.note or "").strip() or None,
    )
    wake_relay(conn.app.state, [result.change])
    return SosOut(alert_id=result.alert_id, status=AlertStatus.OPEN.value)


@router.put(
    "/me/pins",
    status_code=204,
    summary="Set your PIN and duress PIN",
    responses={**UNAUTHORIZED, **INVALID},
)
async def put_pins(body: PinsIn, principal: UserDep, session: SessionDep) -> Response:
    """The PIN cancels your alerts; the duress PIN, entered instead when someone forces
    you to cancel, answers exactly the same and tells the police you are in danger.
    4 to 8 digits each, and different."""
    user = await session.get(User, principal.user_id)
    if user is None:
        raise NotFound("no such user")
    set_pins(user, body.pin, body.duress_pin)
    await session.commit()
    return Response(status_code=204)


@router.post(
    "/trips/{trip_id}/cancel-alerts",
    summary="Cancel your trip's live alerts with your PIN",
    responses={
        **UNAUTHORIZED,
        403: _err("Wrong PIN, or no PIN set."),
        404: _err("No such trip, or not yours."),
        429: _err("Too many PIN attempts: wait (Retry-After)."),
        **INVALID,
    },
)
async def cancel_alerts(
    trip_id: TripId, body: CancelIn, principal: UserDep, conn: HTTPConnection
) -> CancelOut:
    """Cancel every live alert of your trip with your PIN: ``{"cancelled": n}``. Your
    duress PIN answers exactly the same and tells the police you are in danger. A wrong
    PIN is 403; five attempts per trip per 15 minutes, then 429."""
    wait = PIN_ATTEMPTS.take(("pin", principal.user_id, trip_id))
    if wait > 0:
        raise TooMany(f"too many PIN attempts: try again in {math.ceil(wait)} s", math.ceil(wait))
    assert principal.user_id is not None
    result = await cancel_with_pin(
        conn.app.state.sessions, trip_id, user_id=principal.user_id, pin=body.pin
    )
    wake_relay(conn.app.state, result.changes)
    return CancelOut(cancelled=result.cancelled)
