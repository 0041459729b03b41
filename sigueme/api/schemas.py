"""Wire formats of the trip and share API (pydantic v2, GeoJSON via geojson-pydantic).

Every number is finite (``allow_inf_nan=False``: Python's JSON parser reads ``NaN``
and ``Infinity``), every size is bounded, and unknown fields are refused, so a typo
is an error rather than a silent default. Coordinates are WGS 84 ``[lon, lat]``
(RFC 7946); times are ISO 8601 with a UTC offset.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from geojson_pydantic import Feature, FeatureCollection, LineString, Point, Polygon
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StrictFloat,
    StrictInt,
    Tag,
    field_validator,
)

from sigueme.access import Scope
from sigueme.geo.plan import MAX_CORRIDOR_M, MAX_STOPS, MIN_CORRIDOR_M
from sigueme.geo.route import MAX_POLYLINE_CHARS, MAX_VERTICES
from sigueme.store.trips import MAX_SHARE_DAYS

MAX_LABEL = 200
MAX_TRIP_MINUTES = 7 * 24 * 60
MAX_THRESHOLDS = 50


class _In(BaseModel):
    """A request body: finite numbers, no unknown fields."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)


# -- filing a trip ---------------------------------------------------------------------


Coordinate = Annotated[float, Strict()]
"""A number (an integer too), never text or a boolean: ``"18.9"`` or ``true`` as a latitude
is a client's bug, not a position."""


class RouteLineString(LineString):
    """A route as a GeoJSON LineString: ``[lon, lat]`` positions, at most 20,000."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")
    # One position type rather than geojson-pydantic's 2D | 3D union: an error then
    # names the bad number once ("coordinates.3.1: finite number") instead of once per
    # branch of the union.
    coordinates: Annotated[  # type: ignore[assignment]
        list[Annotated[list[Coordinate], Field(min_length=2, max_length=3)]],
        Field(min_length=2, max_length=MAX_VERTICES),
    ]

    @field_validator("bbox")
    @classmethod
    def validate_bbox(cls, bbox: Any) -> Any:
        """Replaces geojson-pydantic's check, which warns (``UserWarning``) on every
        request whose bbox has west > east: any client could flood the server's log with
        warnings. Such a bbox is legal GeoJSON (it crosses the antimeridian); the route's
        bbox is ignored either way. South above north is still refused."""
        if bbox is not None:
            half = len(bbox) // 2
            if any(bbox[i] > bbox[i + half] for i in range(1, half)):
                raise ValueError("bbox: each minimum after the longitude must be <= its maximum")
        return bbox


class EncodedPolyline(_In):
    """A route as a Google encoded polyline (latitude first, as Google encodes it)."""

    polyline: str = Field(min_length=1, max_length=MAX_POLYLINE_CHARS)
    precision: Literal[5, 6] = Field(
        5, description="5 (Google) or 6 (OSRM, Valhalla) decimal digits."
    )


def _route_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "polyline" if "polyline" in value else "LineString"
    return "polyline" if isinstance(value, EncodedPolyline) else "LineString"


RouteIn = Annotated[
    Annotated[RouteLineString, Tag("LineString")] | Annotated[EncodedPolyline, Tag("polyline")],
    Discriminator(_route_kind),
]


class StopIn(_In):
    """A place on the way where the traveller means to stop (no ``stopped`` alert there)."""

    lon: Coordinate = Field(ge=-180, le=180)
    lat: Coordinate = Field(ge=-90, le=90)
    radius_m: float = Field(150.0, ge=10, le=5_000)
    dwell_min: float = Field(0.0, ge=0, le=MAX_TRIP_MINUTES, description="Planned stay.")
    label: str = Field("", max_length=MAX_LABEL)


class TripCreate(_In):
    """A trip to file: the route, the corridor around it, and the schedule.

    Give ``arrival`` or ``duration_min``, not both."""

    route: RouteIn = Field(
        description='A GeoJSON LineString, or {"polyline": "...", "precision": 5|6}.'
    )
    corridor_m: float = Field(
        150.0, ge=MIN_CORRIDOR_M, le=MAX_CORRIDOR_M, description="Width either side, m."
    )
    departure: AwareDatetime = Field(description="ISO 8601 with a UTC offset.")
    arrival: AwareDatetime | None = Field(None, description="Expected arrival.")
    duration_min: float | None = Field(
        None, gt=0, le=MAX_TRIP_MINUTES, description="Expected duration, instead of arrival."
    )
    destination_radius_m: float = Field(100.0, ge=10, le=5_000)
    stops: list[StopIn] = Field(default_factory=list, max_length=MAX_STOPS)
    thresholds: dict[str, StrictInt | StrictFloat] = Field(
        default_factory=dict,
        max_length=MAX_THRESHOLDS,
        description="Overrides of the monitoring thresholds, by name.",
    )
    label: str | None = Field(None, max_length=MAX_LABEL)
    silence_timeout_s: float = Field(
        300.0,
        ge=60,
        le=3600,
        description="Not heard from for this long while in progress: signal_lost alert.",
    )
    overdue_grace_s: float = Field(
        900.0,
        ge=0,
        le=6 * 3600,
        description="Not arrived this long after the planned arrival: overdue alert.",
    )


# -- trips out -------------------------------------------------------------------------


class StopOut(_Out):
    lon: float
    lat: float
    radius_m: float
    dwell_min: float
    label: str


class PlanOut(_Out):
    """The plan as filed."""

    departure: datetime
    arrival: datetime
    duration_min: float
    corridor_m: float
    destination_radius_m: float
    route_length_m: float
    stops: list[StopOut]
    thresholds: dict[str, float] = Field(description="Overrides only; the rest are defaults.")
    silence_timeout_s: float
    overdue_grace_s: float


class LastFix(_Out):
    """The trip's latest position."""

    t: datetime = Field(description="Device time of the fix.")
    position: Point
    accuracy_m: float | None
    battery: float | None = Field(description="Percent.")
    off_route_m: float | None = Field(description="Distance from the route.")


class Progress(_Out):
    m: float = Field(description="Metres along the route.")
    percent: float
    remaining_m: float


class TripLinks(_Out):
    self: str
    track: str
    shares: str
    links: str
    finish: str
    cancel: str


class TripOut(_Out):
    """One trip with its plan, geometry, and where it is now (reading it is audited)."""

    id: str
    label: str | None
    owner: str = Field(description="The traveller's user name.")
    status: Literal["active", "finished", "cancelled"]
    route_status: str = Field(
        description="The monitor's verdict: pending, on_route, drifting, off_route, stopped, "
        "late, arrived."
    )
    plan: PlanOut
    route: LineString
    corridor: Polygon
    last_fix: LastFix | None
    progress: Progress | None
    predicted_arrival: datetime | None
    delay_s: float | None = Field(description="Predicted arrival minus planned; + is late.")
    created_at: datetime
    ended_at: datetime | None
    links: TripLinks


class TripSummary(_Out):
    """A trip in a listing: no positions (listings are not audited, so they show none)."""

    id: str
    label: str | None
    owner: str
    status: Literal["active", "finished", "cancelled"]
    route_status: str
    departure: datetime
    arrival: datetime
    bbox: tuple[float, float, float, float] = Field(
        description="The corridor's [min_lon, min_lat, max_lon, max_lat]."
    )
    last_fix_at: datetime | None = Field(description="When the trip was last heard from.")
    created_at: datetime
    ended_at: datetime | None
    links: TripLinks


class TripList(_Out):
    scope: Scope
    trips: list[TripSummary]


# -- the track -------------------------------------------------------------------------


class FixProperties(_Out):
    kind: Literal["fix"] = "fix"
    t: datetime
    accuracy: float | None
    speed: float | None
    battery: float | None
    verdict: str | None


class RouteProperties(_Out):
    kind: Literal["route"] = "route"
    trip_id: str


TrackFeature = Feature[Point, FixProperties] | Feature[LineString, RouteProperties]


class Track(FeatureCollection[TrackFeature]):
    """The planned route (first feature) and the trip's fixes in device-time order."""


# -- shares ----------------------------------------------------------------------------


class _Expiry(_In):
    expires_at: AwareDatetime | None = Field(None, description="Until when; or give hours.")
    hours: float | None = Field(
        None, gt=0, le=MAX_SHARE_DAYS * 24, description="How long from now; or expires_at."
    )


class UserShareCreate(_Expiry):
    """Share a trip with a user, until ``expires_at`` or for ``hours``."""

    user: str = Field(min_length=1, max_length=100, description="The user's name.")


class LinkCreate(_Expiry):
    """A share link: whoever holds it watches the trip, read-only, until it expires."""

    label: str | None = Field(None, max_length=MAX_LABEL, description="Who it is for.")


class ShareOut(_Out):
    id: int
    trip_id: str
    kind: Literal["user", "link"]
    user: str | None = Field(description="The grantee's name; null for a link.")
    label: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    live: bool = Field(description="Not expired and not revoked.")
    url: str = Field(description="This share: DELETE it to revoke.")


class LinkCreated(ShareOut):
    """A new share link. The token is shown this once; the service keeps only its hash."""

    token: str
    link: str = Field(description="The URL to hand out: {public_url}/s/{token}.")


class ShareList(_Out):
    shares: list[ShareOut]


class ErrorOut(BaseModel):
    """A refusal, with the reason."""

    detail: str


class ValidationErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """Input refused: which field (``loc``) and why (``msg``)."""

    detail: list[ValidationErrorItem]


class RefusalOut(BaseModel):
    """A refusal: the reason, or, when it names the field at fault (an evidence file
    too big or of a type not accepted), the list form of a 422."""

    detail: str | list[ValidationErrorItem]
