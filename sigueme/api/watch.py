"""The watchers' live feed: ``/v1/live`` (websocket), for monitors, dispatchers, admins,
travellers and share-link holders.

Authentication as on the phone's socket, never in the URL: ``Authorization: Bearer
sgm_...`` (or ``sgl_...``) with the upgrade request, or ``{"type": "auth", "token":
...}`` as the first frame within :attr:`WatchLimits.auth_timeout_s`. The server answers
``{"type": "ready", ...}``; a share-link holder is then subscribed to its trip at once.

Frames from the watcher (JSON text, at most :data:`MAX_FRAME_BYTES`):

- ``{"type": "subscribe", "trips": [ids]}``: follow these trips (at most
  :attr:`WatchLimits.max_trips` per connection). Trips the caller may not see, and
  trips that do not exist, are answered alike: ``{"type": "error", "reason": "no such
  trip", "field": "trips", "trips": [...]}``; nothing about them is sent.
- ``{"type": "subscribe", "bbox": [min_lon, min_lat, max_lon, max_lat]}``: dispatchers
  and admins only (others get an error frame): every active trip they may see whose
  corridor's bounding box overlaps it (admins: all; dispatchers: those with a live
  alert), at most :data:`~sigueme.store.trips.MAX_LIST` (the snapshot says
  ``"truncated": true`` past that). One area per connection; a new one replaces it.
- ``{"type": "unsubscribe", "trips": [ids]}``, ``{"type": "unsubscribe", "bbox":
  true}``, or ``{"type": "unsubscribe"}`` for everything: answered ``{"type":
  "unsubscribed", "trips": [...], "reason": "requested"}``.
- ``{"type": "ping"}``: ``{"type": "pong"}``.

Frames to the watcher:

- a snapshot after each subscribe (and when trips enter a subscribed area): a GeoJSON
  FeatureCollection with ``"trips": [ids]``, per trip a ``route`` LineString (label,
  owner, status, plan times), a ``corridor`` Polygon and, once the trip has one, its
  last ``position`` Point. Each trip of a snapshot is written to the audit log
  (``trip.live``) before the snapshot leaves.
- then each update as it happens: a GeoJSON Feature, ``"kind": "position"`` or
  ``"status"`` (:mod:`sigueme.services.live_feed`), or ``"kind": "alert"`` when one of
  the trip's alerts is raised, repeated, escalated or worked (``properties.event``,
  ``properties.alert``: :mod:`sigueme.services.relay`; the geometry is where it was
  raised). A dispatcher's area takes in a trip the moment it gets an alert there.
  Updates of different workers may arrive out of order: keep the newest by
  ``properties.t``.
- ``{"type": "unsubscribed", "trips": [...], "reason": ...}`` when trips stop: asked
  for, ``"access ended"`` (a share expired or was revoked, an alert resolved), ``"left
  the area"``.
- ``{"type": "error", "reason": ..., "field": ...}`` for a frame refused: it changed
  nothing and the connection stays open.

Access is re-checked two ways: a share's expiry is checked on every update (none leaves
after it), and every :attr:`WatchLimits.recheck_s` seconds (10 s) the token is
authenticated again and every followed trip's access (revocations, alerts resolved)
and area membership are asked again.

A watcher never slows ingestion: its updates wait in a queue of at most
:attr:`WatchLimits.queue_size` (1,000); one that falls that far behind is dropped with
close code 4408 and the reason ``too slow: reconnect``.

Close codes: 4401 not authenticated (no, bad or late credentials; a token revoked, a
user disabled or a share link ended while connected), 4408 too slow, 1008 too many
malformed frames in a row, 1009 a frame over :data:`MAX_FRAME_BYTES`, 1013 the live feed
is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Annotated, Any, Final, Literal

import shapely.geometry
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.access import FOREVER, Principal, Scope, visible_until
from sigueme.api.live import DATABASE_ERRORS
from sigueme.api.phone_protocol import dumps, error_frame, field_name
from sigueme.api.ratelimit import TokenBucket
from sigueme.api.sockets import Closed, JsonSocket
from sigueme.api.trips import owner_names
from sigueme.bus.live import QUEUE_SIZE, LiveBus, SubscriberTooSlow, Subscription, Update
from sigueme.services.ingest import trip_status
from sigueme.services.live_feed import position_feature
from sigueme.store import trips as store
from sigueme.store.audit import ReadAction, record_read
from sigueme.store.models import Role, Trip, utcnow
from sigueme.store.users import authenticate

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["live"])

MAX_FRAME_BYTES: Final = 32 * 1024
"""Largest frame a watcher may send (room for 500 trip ids)."""
MAX_TOKEN_CHARS: Final = 200
MAX_TRIP_ID_CHARS: Final = 64


class CloseCode(IntEnum):
    POLICY = 1008
    TOO_BIG = 1009
    UNAVAILABLE = 1013
    UNAUTHENTICATED = 4401
    TOO_SLOW = 4408


@dataclass(frozen=True, slots=True)
class WatchLimits:
    """Bounds of one watcher's connection. An app may set ``app.state.watch_limits``."""

    auth_timeout_s: float = 10.0
    """The first frame must authenticate within this when no header did."""
    queue_size: int = QUEUE_SIZE
    """Updates waiting to be sent; past this the watcher is dropped (4408)."""
    recheck_s: float = 10.0
    """How often the token and every followed trip's access are checked again."""
    max_trips: int = store.MAX_LIST
    """Trips one connection follows by id."""
    frames_per_s: float = 5.0
    frame_burst: float = 20.0
    bad_frames_in_a_row: int = 20
    """Malformed frames without a good one between them before closing (1008)."""


# -- frames in ------------------------------------------------------------------------------


class FrameError(Exception):
    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


_STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid", frozen=True)
TripId = Annotated[str, Field(min_length=1, max_length=MAX_TRIP_ID_CHARS)]


class AuthIn(BaseModel):
    model_config = _STRICT

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS)


class SubscribeIn(BaseModel):
    model_config = _STRICT

    type: Literal["subscribe"]
    trips: list[TripId] | None = Field(default=None, min_length=1, max_length=store.MAX_LIST)
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)
    """``[min_lon, min_lat, max_lon, max_lat]``."""

    @model_validator(mode="after")
    def _one_of(self) -> SubscribeIn:
        if (self.trips is None) == (self.bbox is None):
            raise ValueError("give either trips or bbox")
        if self.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = self.bbox
            if not -180 <= min_lon <= max_lon <= 180:
                raise ValueError("bbox: longitudes within [-180, 180], min_lon <= max_lon")
            if not -90 <= min_lat <= max_lat <= 90:
                raise ValueError("bbox: latitudes within [-90, 90], min_lat <= max_lat")
        return self


class UnsubscribeIn(BaseModel):
    model_config = _STRICT

    type: Literal["unsubscribe"]
    trips: list[TripId] | None = Field(default=None, max_length=store.MAX_LIST)
    bbox: bool | None = None


class PingIn(BaseModel):
    model_config = _STRICT

    type: Literal["ping"]


FrameIn = AuthIn | SubscribeIn | UnsubscribeIn | PingIn
_MODELS: dict[str, type[BaseModel]] = {
    "auth": AuthIn,
    "subscribe": SubscribeIn,
    "unsubscribe": UnsubscribeIn,
    "ping": PingIn,
}


def _no_constants(name: str) -> Any:
    raise FrameError(f"{name} is not a number in JSON")


def parse_frame(text: str) -> FrameIn:
    """The watcher's frame in ``text``, or :class:`FrameError` (never echoing input)."""
    try:
        raw = json.loads(text, parse_constant=_no_constants)
    except FrameError:
        raise
    except (ValueError, RecursionError):
        raise FrameError("not valid JSON") from None
    if not isinstance(raw, dict):
        raise FrameError("a frame is a JSON object")
    kind = raw.get("type")
    model = _MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise FrameError("unknown frame type: one of auth, subscribe, unsubscribe, ping", "type")
    try:
        parsed = model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False, include_context=False)[0]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if first.get("type") == "missing":
            msg = "required"
        raise FrameError(msg, field_name(first.get("loc", ())) or None) from None
    assert isinstance(parsed, AuthIn | SubscribeIn | UnsubscribeIn | PingIn)
    return parsed


# -- frames out -----------------------------------------------------------------------------


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def _mapping(geom: Any) -> dict[str, Any]:
    mapping: dict[str, Any] = shapely.geometry.mapping(geom)
    return mapping


def trip_features(trip: Trip, owner: str) -> list[dict[str, Any]]:
    """A trip as the snapshot shows it: route, corridor and last position."""
    status = trip_status(trip)
    features: list[dict[str, Any]] = [
        {
            "type": "Feature",
            "geometry": _mapping(trip.route),
            "properties": {
                "kind": "route",
                "trip_id": trip.id,
                "label": trip.label,
                "owner": owner,
                "status": trip.status,
                "route_status": trip.route_status,
                "departure": _iso(trip.departure),
                "arrival": _iso(trip.arrival),
                "route_length_m": round(trip.route_length_m, 1),
                "corridor_m": trip.corridor_m,
            },
        },
        {
            "type": "Feature",
            "geometry": _mapping(trip.corridor),
            "properties": {"kind": "corridor", "trip_id": trip.id},
        },
    ]
    if trip.last_fix_at is not None and trip.last_lon is not None and trip.last_lat is not None:
        features.append(
            position_feature(
                status,
                lon=trip.last_lon,
                lat=trip.last_lat,
                t=trip.last_fix_at,
                battery=trip.last_battery,
                accuracy=trip.last_accuracy,
            )
        )
    return features


# -- the connection -------------------------------------------------------------------------


@router.websocket("/live")
async def watch_socket(websocket: WebSocket) -> None:
    """The watchers' live feed (see the module's doc)."""
    limits: WatchLimits = getattr(websocket.app.state, "watch_limits", WatchLimits())
    await websocket.accept()
    with contextlib.suppress(Closed, WebSocketDisconnect):
        await _Watcher(websocket, limits).run()


class _Watcher(JsonSocket):
    max_frame_bytes = MAX_FRAME_BYTES
    quiet_close = True

    def __init__(self, websocket: WebSocket, limits: WatchLimits) -> None:
        super().__init__(
            websocket,
            auth_timeout_s=limits.auth_timeout_s,
            bad_frames_in_a_row=limits.bad_frames_in_a_row,
        )
        self.limits = limits
        self.sessions: async_sessionmaker[AsyncSession] = websocket.app.state.sessions
        self.bus: LiveBus | None = websocket.app.state.live_bus
        self.frames = TokenBucket(limits.frames_per_s, limits.frame_burst)
        self.token = ""
        self.principal = Principal(user_id=None, role=None, name="")
        self.explicit: dict[str, datetime] = {}
        """Trips followed by id, and until when the caller may see each."""
        self.area: store.BBox | None = None
        self.area_trips: set[str] = set()
        self.send_lock = asyncio.Lock()
        self.sub: Subscription | None = None

    # -- plumbing ---------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(dumps(frame))

    def until(self, trip_id: str) -> datetime | None:
        """Until when an update of ``trip_id`` may be sent; ``None``: not followed."""
        if trip_id in self.area_trips:
            return FOREVER
        return self.explicit.get(trip_id)

    # -- authentication -----------------------------------------------------------------------

    async def authenticate(self) -> None:
        token = await self.auth_token(parse_frame, FrameError, AuthIn)
        async with self.sessions() as session:
            principal = await authenticate(session, token) if token else None
        if principal is None:
            await self.close(CloseCode.UNAUTHENTICATED, "invalid, revoked or expired token")
        self.token, self.principal = token, principal
        await self.send(
            {
                "type": "ready",
                "watcher": "link" if principal.is_link else "user",
                "limits": {
                    "max_frame_bytes": MAX_FRAME_BYTES,
                    "max_trips": self.limits.max_trips,
                    "queue_size": self.limits.queue_size,
                    "recheck_s": self.limits.recheck_s,
                },
            }
        )

    # -- the connection's life ----------------------------------------------------------------

    async def run(self) -> None:
        await self.authenticate()
        if self.bus is None:
            await self.close(CloseCode.UNAVAILABLE, "the live feed is not running")
        self.sub = await self.bus.subscribe(maxsize=self.limits.queue_size)
        try:
            if self.principal.share_trip_id is not None:
                await self.subscribe_trips([self.principal.share_trip_id])
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.receive_forever())
                tasks.create_task(self.send_forever(self.sub))
                tasks.create_task(self.drop_when_too_slow(self.sub))
                tasks.create_task(self.recheck_forever())
        except* (Closed, WebSocketDisconnect):
            pass
        finally:
            await self.sub.close()

    async def drop_when_too_slow(self, sub: Subscription) -> None:
        # Not through the sender: it may be the one stuck on a watcher that reads nothing.
        await sub.dropped.wait()
        await self.close(CloseCode.TOO_SLOW, "too slow: reconnect")

    async def send_forever(self, sub: Subscription) -> None:
        while True:
            try:
                update = await sub.get()
            except SubscriberTooSlow:
                await self.close(CloseCode.TOO_SLOW, "too slow: reconnect")
            await self.forward(update)

    async def forward(self, update: Update) -> None:
        until = self.until(update.trip_id)
        if until is None and self.area is not None and _is_alert(update):
            # A dispatcher sees trips with a live alert: one just raised in the area
            # joins it now (snapshot first), not at the next re-check.
            await self.refresh_area()
            until = self.until(update.trip_id)
        if until is None:
            return
        if utcnow() >= until:
            # The share ran out: nothing of the trip leaves after that instant.
            await self.lose([update.trip_id], "access ended")
            return
        async with self.send_lock:
            await self.ws.send_text(update.text)

    async def lose(self, trip_ids: Collection[str], reason: str) -> None:
        """Stop following ``trip_ids``: access ended, or the area no longer has them."""
        gone = [t for t in trip_ids if t in self.explicit or t in self.area_trips]
        if not gone:
            return
        if self.principal.is_link and self.principal.share_trip_id in gone:
            await self.close(CloseCode.UNAUTHENTICATED, "the share link has expired or was revoked")
        for trip_id in gone:
            self.explicit.pop(trip_id, None)
            self.area_trips.discard(trip_id)
        assert self.sub is not None
        await self.sub.remove(gone)
        await self.send({"type": "unsubscribed", "trips": sorted(gone), "reason": reason})

    async def receive_forever(self) -> None:
        while True:
            text = await self.receive_text()
            wait = self.frames.take()
            if wait:
                await self.send(
                    error_frame("rate limited: too many frames", retry=True, retry_after_s=wait)
                )
                continue
            if text is None:
                await self.refuse(FrameError("frames are JSON text, not binary"))
                continue
            try:
                frame = parse_frame(text)
            except FrameError as exc:
                await self.refuse(exc)
                continue
            self.bad_in_a_row = 0
            if isinstance(frame, PingIn):
                await self.send({"type": "pong"})
            elif isinstance(frame, AuthIn):
                await self.send(error_frame("already authenticated", field="type"))
            elif isinstance(frame, SubscribeIn):
                try:
                    if frame.trips is not None:
                        await self.subscribe_trips(frame.trips)
                    elif frame.bbox is not None:
                        await self.subscribe_area(store.BBox(*frame.bbox))
                except DATABASE_ERRORS:
                    log.warning("watcher's subscription failed", exc_info=True)
                    await self.send(error_frame("not subscribed, try again", retry=True))
            else:
                await self.unsubscribe(frame)

    async def refuse(self, exc: FrameError) -> None:
        await self.bad_frame()
        await self.send(error_frame(exc.reason, field=exc.field))

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe_trips(self, trip_ids: Sequence[str]) -> None:
        assert self.sub is not None
        wanted = set(trip_ids)
        if len(wanted | self.explicit.keys()) > self.limits.max_trips:
            await self.send(
                error_frame(f"at most {self.limits.max_trips} trips per connection", field="trips")
            )
            return
        # Hold back updates until the snapshot has gone: the snapshot comes first.
        async with self.send_lock:
            # Follow on the bus first, so no update falls between the snapshot and the feed
            # (updates of trips found not visible are never sent: see forward()).
            await self.sub.add(wanted)
            now = utcnow()
            try:
                async with self.sessions() as session:
                    found = await store.visible_trips(session, self.principal, wanted, now)
                    names = await owner_names(session, {t.owner_id for t, _ in found})
                    for trip, _ in found:
                        await record_read(session, self.principal, trip.id, ReadAction.LIVE)
                    await session.commit()
            except Exception:
                await self.sub.remove(wanted - self.explicit.keys())
                raise
            for trip, facts in found:
                until = visible_until(self.principal, facts, now)
                if until is not None:
                    self.explicit[trip.id] = until
            hidden = sorted(wanted - {t.id for t, _ in found})
            ended = [t for t in hidden if t in self.explicit]
            await self.sub.remove(t for t in hidden if t not in self.explicit)
            await self.ws.send_text(
                dumps(self.snapshot([trip for trip, _ in found], names, truncated=False))
            )
        if ended:
            await self.lose(ended, "access ended")
        if hidden:
            # The same answer for a trip that does not exist and one not given.
            frame = error_frame("no such trip", field="trips")
            frame["trips"] = hidden
            await self.send(frame)

    async def subscribe_area(self, bbox: store.BBox) -> None:
        assert self.sub is not None
        if self.principal.role not in (Role.DISPATCHER, Role.ADMIN):
            await self.send(
                error_frame("only dispatchers and admins subscribe to an area", field="bbox")
            )
            return
        async with self.send_lock:
            await self.sub.follow_all(True)
            try:
                trips, names = await self.area_snapshot(bbox, set())
            except Exception:
                if self.area is None:
                    await self.sub.follow_all(False)
                raise
            left = self.area_trips - {t.id for t in trips} - self.explicit.keys()
            self.area, self.area_trips = bbox, {t.id for t in trips}
            await self.ws.send_text(
                dumps(self.snapshot(trips, names, truncated=len(trips) >= store.MAX_LIST))
            )
            if left:
                await self.ws.send_text(
                    dumps(
                        {"type": "unsubscribed", "trips": sorted(left), "reason": "left the area"}
                    )
                )

    async def area_snapshot(
        self, bbox: store.BBox, known: set[str]
    ) -> tuple[list[Trip], dict[int, str]]:
        """The active trips of ``bbox`` the caller may see; those not in ``known`` are
        written to the audit log (their snapshot is about to be sent)."""
        async with self.sessions() as session:
            trips = list(
                await store.list_trips(
                    session,
                    self.principal,
                    Scope.ACTIVE,
                    utcnow(),
                    bbox=bbox,
                    limit=store.MAX_LIST,
                )
            )
            fresh = [t for t in trips if t.id not in known]
            names = await owner_names(session, {t.owner_id for t in fresh})
            for trip in fresh:
                await record_read(session, self.principal, trip.id, ReadAction.LIVE)
            await session.commit()
        return trips, names

    def snapshot(
        self, trips: Iterable[Trip], names: dict[int, str], *, truncated: bool
    ) -> dict[str, Any]:
        trips = list(trips)
        frame: dict[str, Any] = {
            "type": "FeatureCollection",
            "trips": [t.id for t in trips],
            "features": [
                f for trip in trips for f in trip_features(trip, names.get(trip.owner_id, ""))
            ],
        }
        if truncated:
            frame["truncated"] = True
        return frame

    async def unsubscribe(self, frame: UnsubscribeIn) -> None:
        assert self.sub is not None
        everything = frame.trips is None and frame.bbox is None
        before = set(self.explicit) | self.area_trips
        if frame.trips is not None or everything:
            named = set(self.explicit) if everything else set(frame.trips or ())
            for trip_id in named:
                self.explicit.pop(trip_id, None)
            await self.sub.remove(named)
        if frame.bbox or everything:
            self.area, self.area_trips = None, set()
            await self.sub.follow_all(False)
        gone = before - set(self.explicit) - self.area_trips
        await self.send({"type": "unsubscribed", "trips": sorted(gone), "reason": "requested"})

    # -- access, again --------------------------------------------------------------------------

    async def recheck_forever(self) -> None:
        while True:
            await asyncio.sleep(self.limits.recheck_s)
            try:
                await self.recheck()
            except DATABASE_ERRORS:
                # Expiry is still enforced on every update; revocations wait for the next.
                log.warning("watcher's access re-check failed", exc_info=True)

    async def recheck(self) -> None:
        now = utcnow()
        async with self.sessions() as session:
            principal = await authenticate(session, self.token)
            if principal is None:
                reason = (
                    "the share link has expired or was revoked"
                    if self.principal.is_link
                    else "token revoked or expired"
                )
                await self.close(CloseCode.UNAUTHENTICATED, reason)
            self.principal = principal
            found = await store.visible_trips(
                session, principal, list(self.explicit), now, geometry=False
            )
        untils = {trip.id: visible_until(principal, facts, now) for trip, facts in found}
        lost = [t for t in self.explicit if untils.get(t) is None]
        for trip_id, until in untils.items():
            if until is not None and trip_id in self.explicit:
                self.explicit[trip_id] = until
        if lost:
            await self.lose(lost, "access ended")
        await self.refresh_area()

    async def refresh_area(self) -> None:
        """Ask the area again: snapshots of trips that entered it, word of those that
        left."""
        if self.area is None:
            return
        async with self.send_lock:
            trips, names = await self.area_snapshot(self.area, self.area_trips)
            now_in = {t.id for t in trips}
            entered = [t for t in trips if t.id not in self.area_trips]
            left = self.area_trips - now_in
            self.area_trips = now_in
            if entered:
                await self.ws.send_text(dumps(self.snapshot(entered, names, truncated=False)))
        left -= self.explicit.keys()
        if left:
            await self.send(
                {"type": "unsubscribed", "trips": sorted(left), "reason": "left the area"}
            )


def _is_alert(update: Update) -> bool:
    properties = update.data.get("properties")
    return isinstance(properties, dict) and properties.get("kind") == "alert"
