"""Risk zones over HTTP: the operator draws areas where a traveller entering raises a
``risk_zone`` alert; dispatchers read them.

Admins add zones (``POST``) and deactivate them (``DELETE``: the zone stays stored for
the alerts that name it, and is no longer monitored); admins and dispatchers list and
read them. Every zone goes out as a GeoJSON Feature (``application/geo+json``) with
the outline as a Polygon, ``[lon, lat]`` in WGS 84.

A change takes effect at once on the worker that made it (its
:class:`~sigueme.services.risk_zones.RiskZoneIndex`, ``app.state.risk_zones``, is
invalidated) and within the index's ``ttl_s`` on the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from geojson_pydantic import Feature, FeatureCollection, Polygon
from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator
from pydantic_core import PydanticCustomError
from starlette.requests import HTTPConnection

from sigueme.access import Principal
from sigueme.api.deps import AdminDep, SessionDep, require_role
from sigueme.api.errors import field_loc
from sigueme.api.trips import (
    GEOJSON,
    INVALID,
    UNAUTHORIZED,
    GeoJSONResponse,
    Responses,
    _err,
    json_errors,
    owner_names,
    refuse,
)
from sigueme.errors import Invalid
from sigueme.services.risk_zones import RiskZoneIndex
from sigueme.store import risk_zones as store
from sigueme.store.models import RiskZone, Role

router = APIRouter(prefix="/v1", tags=["risk zones"])

ZoneId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The zone's id.")]
ReaderDep = Annotated[Principal, Depends(require_role(Role.ADMIN, Role.DISPATCHER))]

NOT_FOUND_ZONE: Responses = {404: _err("No such risk zone.")}
ADMINS_ONLY: Responses = {403: _err("Only admins add and deactivate risk zones.")}
READERS_ONLY: Responses = {403: _err("Only admins and dispatchers read risk zones.")}
GEOJSON_CONTENT: dict[str, Any] = {"content": {GEOJSON: {}}}


def zone_index(conn: HTTPConnection) -> RiskZoneIndex | None:
    """This worker's index of active zones, when the app keeps one."""
    index = getattr(conn.app.state, "risk_zones", None)
    return index if isinstance(index, RiskZoneIndex) else None


ZoneIndexDep = Annotated[RiskZoneIndex | None, Depends(zone_index)]


# -- wire formats ------------------------------------------------------------------------

Coordinate = Annotated[float, Strict()]
"""A finite number (the model refuses NaN and infinities), not a string or a boolean."""
Position = Annotated[list[Coordinate], Field(min_length=2, max_length=3)]
Ring = Annotated[list[Position], Field(min_length=4, max_length=store.MAX_VERTICES)]


class ZoneArea(BaseModel):
    """A GeoJSON Polygon: the outer ring, then any holes, each a closed list of ``[lon,
    lat]`` positions (the last repeats the first); at most 5,000 positions in all."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    type: Literal["Polygon"]
    coordinates: Annotated[list[Ring], Field(min_length=1, max_length=store.MAX_RINGS)]
    bbox: list[Coordinate] | None = Field(None, max_length=6, description="Ignored.")


class RiskZoneCreate(BaseModel):
    """A risk zone to add: its name and its outline."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    name: str = Field(min_length=1, max_length=store.MAX_NAME, examples=["Colonia Antonio Barona"])
    area: ZoneArea = Field(
        description="A GeoJSON Polygon, [lon, lat] in WGS 84, holes allowed; it may not "
        "cross itself, and covers 100 m² to 2,000 km²."
    )

    @field_validator("area", mode="before")
    @classmethod
    def _a_polygon(cls, value: Any) -> Any:
        # One clear error for another geometry, rather than one per mismatched level of
        # its coordinates.
        if isinstance(value, dict) and value.get("type") != "Polygon":
            got = repr(value.get("type"))[:40]  # what was sent, cut short: it is echoed
            hint = " (add each polygon as a zone of its own)" if got == "'MultiPolygon'" else ""
            raise PydanticCustomError(
                "geometry_type",
                "a GeoJSON Polygon is expected, got {got}{hint}",
                {"got": got, "hint": hint},
            )
        return value


class ZoneProperties(BaseModel):
    name: str
    active: bool = Field(description="Monitored; false once deactivated.")
    created_by: str = Field(description="The admin who added it.")
    created_at: datetime
    url: str = Field(description="This zone: DELETE it to deactivate.")


class ZoneFeature(Feature[Polygon, ZoneProperties]):
    """A risk zone: its outline, its bounding box and who added it when."""


class ZoneCollection(FeatureCollection[ZoneFeature]):
    """Risk zones, by id."""


def zone_feature(zone: RiskZone, names: dict[int, str]) -> ZoneFeature:
    return ZoneFeature.model_validate(
        {
            "type": "Feature",
            "id": zone.id,
            "bbox": (zone.min_lon, zone.min_lat, zone.max_lon, zone.max_lat),
            "geometry": zone.area.__geo_interface__,
            "properties": {
                "name": zone.name,
                "active": zone.active,
                "created_by": names.get(zone.created_by, ""),
                "created_at": zone.created_at,
                "url": f"/v1/risk-zones/{zone.id}",
            },
        }
    )


# -- routes ------------------------------------------------------------------------------


@router.post(
    "/risk-zones",
    status_code=201,
    response_model=ZoneFeature,
    response_class=GeoJSONResponse,
    summary="Add a risk zone (admins)",
    responses={201: GEOJSON_CONTENT, **json_errors(UNAUTHORIZED, ADMINS_ONLY, INVALID)},
)
async def add_zone(
    body: RiskZoneCreate,
    principal: AdminDep,
    session: SessionDep,
    index: ZoneIndexDep,
    response: Response,
) -> ZoneFeature:
    """Mark an area where a traveller entering raises a ``risk_zone`` alert. The outline
    is refused (422, naming the field and the reason) when it crosses itself, has more
    than 5,000 positions, a ring that is not closed, or covers less than 100 m² or more
    than 2,000 km² on the ground. Monitoring starts within seconds on every worker."""
    assert principal.user_id is not None  # an admin is a user
    try:
        area = store.zone_polygon(body.area.coordinates)
        zone = await store.add_zone(
            session, name=body.name, area=area, created_by=principal.user_id
        )
    except Invalid as exc:
        raise refuse(("body", *field_loc(exc.field)), exc.reason) from None
    await session.commit()
    if index is not None:
        index.invalidate()
    response.headers["Location"] = f"/v1/risk-zones/{zone.id}"
    return zone_feature(zone, {principal.user_id: principal.name})


@router.get(
    "/risk-zones",
    response_model=ZoneCollection,
    response_class=GeoJSONResponse,
    summary="List risk zones (admins and dispatchers)",
    responses={200: GEOJSON_CONTENT, **json_errors(UNAUTHORIZED, READERS_ONLY, INVALID)},
)
async def list_zones(
    principal: ReaderDep,
    session: SessionDep,
    include_inactive: Annotated[bool, Query(description="Deactivated zones too.")] = False,
    limit: Annotated[int, Query(ge=1, le=store.MAX_LIST)] = store.MAX_LIST,
) -> ZoneCollection:
    """The monitored zones as a FeatureCollection, oldest first (with
    ``include_inactive``, the deactivated ones too)."""
    zones = await store.list_zones(session, include_inactive=include_inactive, limit=limit)
    names = await owner_names(session, {z.created_by for z in zones})
    return ZoneCollection(
        type="FeatureCollection", features=[zone_feature(z, names) for z in zones]
    )


@router.get(
    "/risk-zones/{zone_id}",
    response_model=ZoneFeature,
    response_class=GeoJSONResponse,
    summary="Read a risk zone (admins and dispatchers)",
    responses={200: GEOJSON_CONTENT, **json_errors(UNAUTHORIZED, READERS_ONLY, NOT_FOUND_ZONE)},
)
async def get_zone(zone_id: ZoneId, principal: ReaderDep, session: SessionDep) -> ZoneFeature:
    """One zone, monitored or deactivated."""
    zone = await store.get_zone(session, zone_id)
    return zone_feature(zone, await owner_names(session, {zone.created_by}))


@router.delete(
    "/risk-zones/{zone_id}",
    response_model=ZoneFeature,
    response_class=GeoJSONResponse,
    summary="Deactivate a risk zone (admins)",
    responses={200: GEOJSON_CONTENT, **json_errors(UNAUTHORIZED, ADMINS_ONLY, NOT_FOUND_ZONE)},
)
async def deactivate_zone(
    zone_id: ZoneId, principal: AdminDep, session: SessionDep, index: ZoneIndexDep
) -> ZoneFeature:
    """Stop monitoring the zone. It stays stored (alerts raised in it name it) and
    readable, with ``active: false``. Deactivating it again changes nothing."""
    zone = await store.get_zone(session, zone_id)
    await store.deactivate(session, zone)
    await session.commit()
    if index is not None:
        index.invalidate()
    return zone_feature(zone, await owner_names(session, {zone.created_by}))
