"""Trips over HTTP: file one, read it, list them, read the track, finish or cancel.

Access follows :mod:`sigueme.access`: a trip the caller may not see answers 404, as
if it did not exist; one they see but may not change answers 403. Reads that return
positions (a trip, its track) are written to the audit log and committed before the
answer leaves. Listings carry no positions (no last fix, no progress), so they are
not audited.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import shapely
from fastapi import APIRouter, Path, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from geojson_pydantic import Point
from geojson_pydantic.types import Position2D
from pydantic import AwareDatetime
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.access import (
    Principal,
    Scope,
    default_scope,
    require_change,
    require_file_trips,
    require_scope,
)
from sigueme.api.deps import PrincipalDep, SessionDep
from sigueme.api.schemas import (
    EncodedPolyline,
    ErrorOut,
    LastFix,
    PlanOut,
    Progress,
    StopOut,
    Track,
    TripCreate,
    TripLinks,
    TripList,
    TripOut,
    TripSummary,
    ValidationErrorOut,
)
from sigueme.geo import GeoError, PlannedStop, Route, Thresholds, TripPlan
from sigueme.store import trips as store
from sigueme.store.audit import ReadAction, record_read
from sigueme.store.fixes import TRACK_LIMIT_MAX, FixRow, track
from sigueme.store.models import Trip, TripStatus, User, utcnow

router = APIRouter(prefix="/v1", tags=["trips"])

GEOJSON = "application/geo+json"


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


Responses = dict[int | str, dict[str, Any]]
"""Documented error answers of a route, for FastAPI's ``responses=``."""


def _err(description: str, model: type[Any] = ErrorOut) -> dict[str, Any]:
    return {"model": model, "description": description}


UNAUTHORIZED: Responses = {401: _err("No valid bearer token.")}
NOT_FOUND: Responses = {404: _err("No such trip, or not one you were given (the same answer).")}
FORBIDDEN_CHANGE: Responses = {
    403: _err("You see the trip but may not change it (not its traveller).")
}
CONFLICT_ENDED: Responses = {409: _err("The trip has already ended.")}
INVALID: Responses = {
    422: _err("Input refused: `loc` names the field, `msg` the reason.", ValidationErrorOut)
}


def json_errors(*groups: Responses) -> Responses:
    """Error answers of a route whose response class is GeoJSON. FastAPI documents a
    ``model`` under the route's media type (``application/geo+json``), but errors are
    ``application/json``: this names the same schema under that type instead (the
    schemas are in the document, as the JSON routes use them)."""
    out: Responses = {}
    for group in groups:
        for status, answer in group.items():
            entry = {k: v for k, v in answer.items() if k != "model"}
            if "model" in answer:
                ref = {"$ref": f"#/components/schemas/{answer['model'].__name__}"}
                entry["content"] = {"application/json": {"schema": ref}}
            out[status] = entry
    return out


TripId = Annotated[str, Path(min_length=1, max_length=36, description="The trip's id.")]


def refuse(loc: Sequence[str | int], reason: str) -> RequestValidationError:
    """A 422 naming the request field at ``loc`` (FastAPI's own shape), for input the
    schema lets through but the rules refuse."""
    return RequestValidationError([{"type": "value_error", "loc": tuple(loc), "msg": reason}])


# -- from the request to a plan --------------------------------------------------------

_PART = re.compile(r"[^.\[\]]+")


def _geo_loc(field: str, *, by_duration: bool) -> tuple[str | int, ...]:
    """The request field a :class:`GeoError` names: ``"stops[2].dwell_s"`` →
    ``("body", "stops", 2, "dwell_min")``."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in _PART.findall(field)]
    if parts and parts[0] in ("polyline", "precision"):
        parts.insert(0, "route")
    if parts == ["arrival"] and by_duration:
        parts = ["duration_min"]
    parts = ["dwell_min" if p == "dwell_s" else p for p in parts]
    return ("body", *parts)


def plan_from_request(body: TripCreate) -> tuple[TripPlan, dict[str, float]]:
    """The geo core's plan of a filed trip and the threshold overrides, or a 422 that
    names the field and the reason."""
    by_duration = body.duration_min is not None
    if body.arrival is not None and by_duration:
        raise refuse(("body", "duration_min"), "give arrival or duration_min, not both")
    departure = body.departure.timestamp()
    if body.arrival is not None:
        arrival = body.arrival.timestamp()
    elif body.duration_min is not None:
        arrival = departure + body.duration_min * 60.0
    else:
        raise refuse(("body", "arrival"), "give the expected arrival or duration_min")
    overrides: dict[str, float] = dict(body.thresholds)
    try:
        thresholds = Thresholds(**overrides)
    except GeoError as exc:
        raise refuse(("body", "thresholds", exc.field), exc.reason) from None
    try:
        if isinstance(body.route, EncodedPolyline):
            route = Route.from_polyline(body.route.polyline, body.route.precision)
        else:
            route = Route(body.route.coordinates, field="route.coordinates")
        plan = TripPlan(
            route=route,
            departure=departure,
            arrival=arrival,
            corridor_m=body.corridor_m,
            destination_radius_m=body.destination_radius_m,
            stops=tuple(
                PlannedStop(
                    lon=s.lon,
                    lat=s.lat,
                    radius_m=s.radius_m,
                    label=s.label,
                    dwell_s=s.dwell_min * 60.0,
                )
                for s in body.stops
            ),
            thresholds=thresholds,
        )
    except GeoError as exc:
        raise refuse(_geo_loc(exc.field, by_duration=by_duration), exc.reason) from None
    return plan, overrides


# -- from a stored trip to the wire ----------------------------------------------------


def trip_links(trip_id: str) -> TripLinks:
    base = f"/v1/trips/{trip_id}"
    return TripLinks(
        self=base,
        track=f"{base}/track",
        shares=f"{base}/shares",
        links=f"{base}/links",
        finish=f"{base}/finish",
        cancel=f"{base}/cancel",
    )


def _geometry(geom: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = shapely.geometry.mapping(geom)
    return mapping


def trip_out(trip: Trip, owner: str) -> TripOut:
    """The full view of a trip, positions included (the caller audits the read)."""
    last_fix = None
    if trip.last_fix_at is not None and trip.last_lon is not None and trip.last_lat is not None:
        last_fix = LastFix(
            t=trip.last_fix_at,
            position=Point(type="Point", coordinates=Position2D(trip.last_lon, trip.last_lat)),
            accuracy_m=trip.last_accuracy,
            battery=trip.last_battery,
            off_route_m=trip.distance_m,
        )
    progress = None
    if trip.progress_m is not None:
        done = min(max(trip.progress_m, 0.0), trip.route_length_m)
        progress = Progress(
            m=trip.progress_m,
            percent=round(100.0 * done / trip.route_length_m, 2),
            remaining_m=trip.route_length_m - done,
        )
    delay = None
    if trip.predicted_arrival is not None:
        delay = (trip.predicted_arrival - trip.arrival).total_seconds()
    return TripOut.model_validate(
        {
            "id": trip.id,
            "label": trip.label,
            "owner": owner,
            "status": trip.status,
            "route_status": trip.route_status,
            "plan": PlanOut(
                departure=trip.departure,
                arrival=trip.arrival,
                duration_min=(trip.arrival - trip.departure) / timedelta(minutes=1),
                corridor_m=trip.corridor_m,
                destination_radius_m=trip.destination_radius_m,
                route_length_m=trip.route_length_m,
                stops=[
                    StopOut(
                        lon=s["lon"],
                        lat=s["lat"],
                        radius_m=s["radius_m"],
                        dwell_min=s.get("dwell_s", 0.0) / 60.0,
                        label=s.get("label", ""),
                    )
                    for s in trip.stops
                ],
                thresholds=trip.thresholds,
                silence_timeout_s=trip.silence_timeout_s,
                overdue_grace_s=trip.overdue_grace_s,
            ),
            "route": _geometry(trip.route),
            "corridor": _geometry(trip.corridor),
            "last_fix": last_fix,
            "progress": progress,
            "predicted_arrival": trip.predicted_arrival,
            "delay_s": delay,
            "created_at": trip.created_at,
            "ended_at": trip.ended_at,
            "links": trip_links(trip.id),
        }
    )


def trip_summary(trip: Trip, owner: str) -> TripSummary:
    """A trip without positions."""
    return TripSummary.model_validate(
        {
            "id": trip.id,
            "label": trip.label,
            "owner": owner,
            "status": trip.status,
            "route_status": trip.route_status,
            "departure": trip.departure,
            "arrival": trip.arrival,
            "bbox": (trip.min_lon, trip.min_lat, trip.max_lon, trip.max_lat),
            "last_fix_at": trip.last_fix_at,
            "created_at": trip.created_at,
            "ended_at": trip.ended_at,
            "links": trip_links(trip.id),
        }
    )


async def owner_names(session: AsyncSession, owner_ids: set[int]) -> dict[int, str]:
    if not owner_ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(owner_ids)))
    return {row.id: row.name for row in rows}


def parse_bbox(value: str) -> store.BBox:
    """``min_lon,min_lat,max_lon,max_lat`` in degrees, or a 422 naming ``bbox``."""
    parts = value.split(",")
    loc = ("query", "bbox")
    if len(parts) != 4:
        raise refuse(loc, "four numbers: min_lon,min_lat,max_lon,max_lat")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
    except ValueError:
        raise refuse(loc, "four numbers: min_lon,min_lat,max_lon,max_lat") from None
    if not (-180 <= min_lon <= max_lon <= 180):  # also NaN
        raise refuse(loc, "longitudes within [-180, 180], min_lon <= max_lon")
    if not (-90 <= min_lat <= max_lat <= 90):
        raise refuse(loc, "latitudes within [-90, 90], min_lat <= max_lat")
    return store.BBox(min_lon, min_lat, max_lon, max_lat)


# -- routes ----------------------------------------------------------------------------


def _prepare(body: TripCreate) -> tuple[TripPlan, dict[str, float]]:
    """The plan of a request, with its corridor built (and cached on the route)."""
    plan, overrides = plan_from_request(body)
    plan.route.corridor(plan.corridor_m)
    return plan, overrides


@router.post(
    "/trips",
    status_code=201,
    response_model=TripOut,
    summary="File a trip",
    responses={
        **UNAUTHORIZED,
        403: _err("Only travellers (and admins, on their own behalf) file trips."),
        **INVALID,
    },
)
async def create_trip(
    body: TripCreate, principal: PrincipalDep, session: SessionDep, response: Response
) -> TripOut:
    """File a trip for the caller: the route (GeoJSON LineString or encoded polyline),
    the corridor, the schedule, planned stops, threshold overrides and a label. Refused
    input answers 422 naming the field (``loc``) and the reason (``msg``)."""
    require_file_trips(principal)
    assert principal.user_id is not None  # only users file trips
    # Seconds of geometry for a long, winding route: off the event loop, which serves
    # every phone and watcher of this worker meanwhile.
    plan, overrides = await asyncio.to_thread(_prepare, body)
    label = body.label.strip() if body.label is not None else None
    trip = await store.create_trip(
        session,
        owner_id=principal.user_id,
        plan=plan,
        overrides=overrides,
        label=label or None,
        silence_timeout_s=body.silence_timeout_s,
        overdue_grace_s=body.overdue_grace_s,
    )
    await session.commit()
    response.headers["Location"] = f"/v1/trips/{trip.id}"
    return trip_out(trip, principal.name)


@router.get(
    "/trips",
    response_model=TripList,
    summary="List trips (without positions)",
    responses={
        **UNAUTHORIZED,
        403: _err("The scope is not yours to list (active: dispatchers and admins)."),
        **INVALID,
    },
)
async def list_trips(
    principal: PrincipalDep,
    session: SessionDep,
    scope: Annotated[
        Scope | None,
        Query(
            description="mine: filed by you; shared: shared with you while the share lasts; "
            "active: active trips (admins: all, dispatchers: those with an open alert). "
            "Default: what your role is for."
        ),
    ] = None,
    bbox: Annotated[
        str | None,
        Query(
            description="min_lon,min_lat,max_lon,max_lat: trips whose corridor overlaps it.",
            examples=["-99.3,18.8,-99.1,19.0"],
            max_length=200,
        ),
    ] = None,
    status: Annotated[TripStatus | None, Query(description="Only trips in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=store.MAX_LIST)] = 100,
) -> TripList:
    """Trips the caller may see, newest first. Listings carry no positions (no last fix,
    no progress) and are not written to the audit log; read a trip for those."""
    chosen = scope if scope is not None else default_scope(principal)
    require_scope(principal, chosen)
    area = parse_bbox(bbox) if bbox is not None else None
    trips = await store.list_trips(
        session, principal, chosen, utcnow(), bbox=area, status=status, limit=limit
    )
    names = await owner_names(session, {t.owner_id for t in trips})
    return TripList(scope=chosen, trips=[trip_summary(t, names.get(t.owner_id, "")) for t in trips])


@router.get(
    "/trips/{trip_id}",
    response_model=TripOut,
    summary="Read a trip (audited)",
    responses={**UNAUTHORIZED, **NOT_FOUND},
)
async def get_trip(trip_id: TripId, principal: PrincipalDep, session: SessionDep) -> TripOut:
    """The plan, status, last position, progress, predicted arrival and delay. The read
    is written to the audit log before the answer leaves."""
    trip, _ = await store.visible_trip(session, principal, trip_id, utcnow())
    names = await owner_names(session, {trip.owner_id})
    await record_read(session, principal, trip.id, ReadAction.TRIP)
    await session.commit()
    return trip_out(trip, names.get(trip.owner_id, ""))


def _track_collection(trip: Trip, fixes: Sequence[FixRow]) -> dict[str, Any]:
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": _geometry(trip.route),
            "properties": {"kind": "route", "trip_id": trip.id},
        }
    ]
    features.extend(
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [f.lon, f.lat]},
            "properties": {
                "kind": "fix",
                "t": f.t.isoformat().replace("+00:00", "Z"),
                "accuracy": f.accuracy,
                "speed": f.speed,
                "battery": f.battery,
                "verdict": f.verdict,
            },
        }
        for f in fixes
    )
    return {"type": "FeatureCollection", "features": features}


@router.get(
    "/trips/{trip_id}/track",
    response_model=Track,
    response_class=GeoJSONResponse,
    summary="The trip's track as GeoJSON (audited)",
    responses=json_errors(UNAUTHORIZED, NOT_FOUND, INVALID),
)
async def get_track(
    trip_id: TripId,
    principal: PrincipalDep,
    session: SessionDep,
    since: Annotated[
        AwareDatetime | None, Query(description="Fixes at or after this device time.")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Fixes before this device time.")
    ] = None,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=TRACK_LIMIT_MAX,
            description="At most this many fixes: the earliest of the window. To go on, ask "
            "again with since= the last fix's t (fixes at that instant come again).",
        ),
    ] = 10_000,
) -> Response:
    """A FeatureCollection (``application/geo+json``): the planned route as a LineString
    feature first, then every stored fix as a Point in device-time order, with its time,
    accuracy, speed, battery and the filter's verdict. Written to the audit log."""
    trip, _ = await store.visible_trip(session, principal, trip_id, utcnow())
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and not EARLIEST <= bound <= LATEST:
            raise refuse(("query", name), "must be between the years 2000 and 2100")
    if since is not None and until is not None and until <= since:
        raise refuse(("query", "until"), "must be after since")
    fixes = await track(session, trip.id, since, until, limit)
    await record_read(session, principal, trip.id, ReadAction.TRACK)
    await session.commit()
    return GeoJSONResponse(_track_collection(trip, fixes))


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


async def _end(
    session: AsyncSession, principal: Principal, trip_id: str, how: store.Ending
) -> TripSummary:
    now = utcnow()
    trip, facts = await store.visible_trip(session, principal, trip_id, now)
    require_change(principal, facts, now)
    await store.end_trip(session, trip, how, now)
    await session.commit()
    return trip_summary(trip, principal.name)


@router.post(
    "/trips/{trip_id}/finish",
    response_model=TripSummary,
    summary="Finish a trip (its traveller)",
    responses={**UNAUTHORIZED, **FORBIDDEN_CHANGE, **NOT_FOUND, **CONFLICT_ENDED},
)
async def finish_trip(trip_id: TripId, principal: PrincipalDep, session: SessionDep) -> TripSummary:
    """End an active trip as arrived: monitoring stops."""
    return await _end(session, principal, trip_id, store.Ending.FINISH)


@router.post(
    "/trips/{trip_id}/cancel",
    response_model=TripSummary,
    summary="Cancel a trip (its traveller)",
    responses={**UNAUTHORIZED, **FORBIDDEN_CHANGE, **NOT_FOUND, **CONFLICT_ENDED},
)
async def cancel_trip(trip_id: TripId, principal: PrincipalDep, session: SessionDep) -> TripSummary:
    """End an active trip that will not be made: monitoring stops."""
    return await _end(session, principal, trip_id, store.Ending.CANCEL)
