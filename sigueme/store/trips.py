"""Trips and their shares: filing, reading, listing, ending, sharing.

Functions here take an ``AsyncSession`` and leave the transaction to the caller (they
flush, never commit), so a route can write a trip, its shares and its audit rows in
one commit. Who may do what is decided by :mod:`sigueme.access`; this module gathers
the facts those rules need (:func:`trip_facts`) and loads a trip only for a caller who
may see it (:func:`visible_trip`).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import shapely
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from sigueme.access import (
    LIVE_ALERT_STATUSES,
    Grant,
    Principal,
    Scope,
    TripFacts,
    can_see,
    require_see,
)
from sigueme.errors import Conflict, Invalid, NotFound
from sigueme.geo import PlannedStop, Route, Thresholds, TripPlan
from sigueme.store.models import Alert, Role, Share, Trip, TripStatus, User, utcnow
from sigueme.store.tokens import new_link_token

MAX_SHARE_DAYS = 30
"""Longest a share or a link may last: a trip lasts at most 7 days, and a watcher who
still needs it can be given a new one."""
MAX_LIST = 500
"""Most trips one listing returns."""


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


# -- filing a trip ---------------------------------------------------------------------


async def create_trip(
    session: AsyncSession,
    *,
    owner_id: int,
    plan: TripPlan,
    overrides: Mapping[str, float],
    label: str | None,
    silence_timeout_s: float = 300.0,
    overdue_grace_s: float = 900.0,
) -> Trip:
    """Store a trip filed by ``owner_id`` from a validated ``plan``.

    ``overrides`` are the thresholds the traveller chose (only those are stored; the
    rest stay the code's defaults): they are checked with ``Thresholds(**overrides)``
    and raise :class:`~sigueme.geo.ThresholdError` naming the threshold if refused.
    The route is stored as the geo core keeps it (densified along the geodesic), the
    corridor as a WGS 84 polygon, and the corridor's bounding box for area filters.
    """
    Thresholds(**overrides)
    route = plan.route
    corridor = route.to_lonlat(route.corridor(plan.corridor_m))
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in corridor.bounds)
    trip = Trip(
        owner_id=owner_id,
        label=label,
        status=TripStatus.ACTIVE.value,
        route=shapely.LineString(route.lonlat),
        corridor=corridor,
        route_length_m=route.length_m,
        corridor_m=float(plan.corridor_m),
        destination_radius_m=float(plan.destination_radius_m),
        departure=_utc(plan.departure),
        arrival=_utc(plan.arrival),
        stops=[
            {
                "lon": s.lon,
                "lat": s.lat,
                "radius_m": s.radius_m,
                "dwell_s": s.dwell_s,
                "label": s.label,
            }
            for s in plan.stops
        ],
        thresholds=dict(overrides),
        monitor_state={},
        route_status="pending",
        min_lon=min_lon,
        min_lat=min_lat,
        max_lon=max_lon,
        max_lat=max_lat,
        silence_timeout_s=silence_timeout_s,
        overdue_grace_s=overdue_grace_s,
        # The watchdog's deadlines: silent from departure on (from filing, for a trip
        # filed after it left: its phone has had no chance to be heard yet); overdue
        # after arrival.
        silence_deadline=_utc(max(plan.departure, utcnow().timestamp()) + silence_timeout_s),
        overdue_at=_utc(plan.arrival + overdue_grace_s),
    )
    session.add(trip)
    await session.flush()
    return trip


def plan_of(trip: Trip) -> TripPlan:
    """The geo core's plan of a stored trip (the same plan it was filed with)."""
    route = Route([tuple(c) for c in trip.route.coords], max_vertices=None)
    return TripPlan(
        route=route,
        departure=trip.departure.timestamp(),
        arrival=trip.arrival.timestamp(),
        corridor_m=trip.corridor_m,
        destination_radius_m=trip.destination_radius_m,
        stops=tuple(
            PlannedStop(
                lon=s["lon"],
                lat=s["lat"],
                radius_m=s["radius_m"],
                label=s.get("label", ""),
                dwell_s=s.get("dwell_s", 0.0),
            )
            for s in trip.stops
        ),
        thresholds=Thresholds(**trip.thresholds),
    )


# -- reading under the access rules ----------------------------------------------------


async def get_trip(session: AsyncSession, trip_id: str) -> Trip | None:
    """The trip with ``trip_id``, whoever may see it (callers apply the rules)."""
    return await session.get(Trip, trip_id)


async def trip_facts(session: AsyncSession, trip: Trip) -> TripFacts:
    """What :mod:`sigueme.access` needs to judge a request on ``trip``: its owner, its
    shares and whether it has a live alert."""
    shares = (await session.scalars(select(Share).where(Share.trip_id == trip.id))).all()
    alert = await session.scalar(
        select(exists().where(Alert.trip_id == trip.id, Alert.status.in_(LIVE_ALERT_STATUSES)))
    )
    return TripFacts(
        trip_id=trip.id,
        owner_id=trip.owner_id,
        grants=tuple(
            Grant(
                share_id=s.id,
                grantee_id=s.grantee_id,
                expires_at=s.expires_at,
                revoked_at=s.revoked_at,
            )
            for s in shares
        ),
        has_live_alert=bool(alert),
    )


async def visible_trip(
    session: AsyncSession, principal: Principal, trip_id: str, now: datetime
) -> tuple[Trip, TripFacts]:
    """The trip and its facts if ``principal`` may see it; :class:`NotFound` otherwise,
    the same for a trip that does not exist and one they were not given."""
    trip = await get_trip(session, trip_id)
    if trip is None:
        raise NotFound("no such trip")
    facts = await trip_facts(session, trip)
    require_see(principal, facts, now)
    return trip, facts


async def visible_trips(
    session: AsyncSession,
    principal: Principal,
    trip_ids: Collection[str],
    now: datetime,
    *,
    geometry: bool = True,
) -> list[tuple[Trip, TripFacts]]:
    """The trips of ``trip_ids`` that ``principal`` may see at ``now``, with their
    facts, in three queries whatever their number; the others (unknown or not given)
    are left out alike. Without ``geometry`` the route and corridor are not loaded."""
    ids = sorted(set(trip_ids))
    if not ids:
        return []
    query = select(Trip).where(Trip.id.in_(ids))
    if not geometry:
        query = query.options(defer(Trip.route), defer(Trip.corridor))
    trips = (await session.scalars(query)).all()
    if not trips:
        return []
    found = [t.id for t in trips]
    grants: dict[str, list[Grant]] = {}
    for s in (await session.scalars(select(Share).where(Share.trip_id.in_(found)))).all():
        grants.setdefault(s.trip_id, []).append(
            Grant(
                share_id=s.id,
                grantee_id=s.grantee_id,
                expires_at=s.expires_at,
                revoked_at=s.revoked_at,
            )
        )
    alerted = set(
        await session.scalars(
            select(Alert.trip_id)
            .where(Alert.trip_id.in_(found), Alert.status.in_(LIVE_ALERT_STATUSES))
            .distinct()
        )
    )
    out = []
    for trip in sorted(trips, key=lambda t: t.id):
        facts = TripFacts(
            trip_id=trip.id,
            owner_id=trip.owner_id,
            grants=tuple(grants.get(trip.id, ())),
            has_live_alert=trip.id in alerted,
        )
        if can_see(principal, facts, now):
            out.append((trip, facts))
    return out


@dataclass(frozen=True, slots=True)
class BBox:
    """An area filter in WGS 84 degrees; a trip matches when its corridor's bounding box
    overlaps it."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


def _live_share(now: datetime) -> Any:
    return Share.revoked_at.is_(None) & (Share.expires_at > now)


async def list_trips(
    session: AsyncSession,
    principal: Principal,
    scope: Scope,
    now: datetime,
    *,
    bbox: BBox | None = None,
    status: TripStatus | None = None,
    limit: int = 100,
) -> Sequence[Trip]:
    """The trips of ``scope`` that ``principal`` may see, newest first.

    ``mine``: filed by the caller. ``shared``: shared with the caller by a share that
    lasts at ``now``. ``active``: active trips; all of them for an admin, those with a
    live alert for a dispatcher, none for anyone else (the route checks the scope with
    :func:`sigueme.access.require_scope` first; this is the second lock).
    """
    query = select(Trip)
    if principal.user_id is None:
        return []
    if scope is Scope.MINE:
        query = query.where(Trip.owner_id == principal.user_id)
    elif scope is Scope.SHARED:
        query = query.where(
            exists().where(
                Share.trip_id == Trip.id,
                Share.grantee_id == principal.user_id,
                _live_share(now),
            )
        )
    elif principal.role == Role.ADMIN:
        query = query.where(Trip.status == TripStatus.ACTIVE.value)
    elif principal.role == Role.DISPATCHER:
        query = query.where(
            Trip.status == TripStatus.ACTIVE.value,
            exists().where(Alert.trip_id == Trip.id, Alert.status.in_(LIVE_ALERT_STATUSES)),
        )
    else:
        return []
    if status is not None:
        query = query.where(Trip.status == status.value)
    if bbox is not None:
        query = query.where(
            Trip.max_lon >= bbox.min_lon,
            Trip.min_lon <= bbox.max_lon,
            Trip.max_lat >= bbox.min_lat,
            Trip.min_lat <= bbox.max_lat,
        )
    query = query.order_by(Trip.created_at.desc(), Trip.id).limit(min(limit, MAX_LIST))
    return (await session.scalars(query)).all()


# -- ending a trip ---------------------------------------------------------------------


class Ending(enum.StrEnum):
    FINISH = "finish"
    CANCEL = "cancel"


async def end_trip(session: AsyncSession, trip: Trip, how: Ending, now: datetime) -> Trip:
    """Finish or cancel an active ``trip``; :class:`Conflict` if it has already ended.

    The access check (owner only) is the caller's."""
    if trip.status != TripStatus.ACTIVE.value:
        raise Conflict(f"the trip has already ended ({trip.status})")
    trip.status = TripStatus.FINISHED.value if how is Ending.FINISH else TripStatus.CANCELLED.value
    trip.ended_at = now
    await session.flush()
    return trip


# -- shares ----------------------------------------------------------------------------


def _check_expiry(expires_at: datetime, now: datetime, field: str) -> datetime:
    if expires_at.tzinfo is None:
        raise Invalid(field, "needs a UTC offset")
    if expires_at <= now:
        raise Invalid(field, "must be in the future")
    if expires_at - now > timedelta(days=MAX_SHARE_DAYS):
        raise Invalid(field, f"a share lasts at most {MAX_SHARE_DAYS} days")
    return expires_at.astimezone(UTC)


def _check_shareable(trip: Trip) -> None:
    if trip.status != TripStatus.ACTIVE.value:
        raise Conflict(f"the trip has ended ({trip.status}); it can no longer be shared")


async def share_with_user(
    session: AsyncSession,
    trip: Trip,
    *,
    by: int,
    grantee_name: str,
    expires_at: datetime,
    now: datetime,
    expiry_field: str = "expires_at",
) -> tuple[Share, User]:
    """Share an active ``trip`` with the user called ``grantee_name`` until
    ``expires_at`` (at most :data:`MAX_SHARE_DAYS` ahead).

    :class:`Invalid` (field ``user``) for an unknown or disabled user or the owner
    themselves; :class:`Conflict` for an ended trip or when the user already has a
    live share of it (revoke it first to change its expiry)."""
    _check_shareable(trip)
    expires = _check_expiry(expires_at, now, expiry_field)
    grantee = await session.scalar(select(User).where(User.name == grantee_name))
    if grantee is None or grantee.disabled:
        raise Invalid("user", f"no active user is called {grantee_name!r}")
    if grantee.id == trip.owner_id:
        raise Invalid("user", "the trip is yours already")
    live = await session.scalar(
        select(Share.id).where(
            Share.trip_id == trip.id, Share.grantee_id == grantee.id, _live_share(now)
        )
    )
    if live is not None:
        raise Conflict(f"the trip is already shared with {grantee_name!r} (share {live})")
    share = Share(
        trip_id=trip.id,
        grantee_id=grantee.id,
        token_hash=None,
        label=None,
        created_by=by,
        created_at=now,
        expires_at=expires,
    )
    session.add(share)
    await session.flush()
    return share, grantee


async def create_link(
    session: AsyncSession,
    trip: Trip,
    *,
    by: int,
    expires_at: datetime,
    label: str | None,
    now: datetime,
    expiry_field: str = "expires_at",
) -> tuple[Share, str]:
    """A share link for an active ``trip`` until ``expires_at`` (at most
    :data:`MAX_SHARE_DAYS` ahead): the share and its ``sgl_`` token, which is returned
    here once and stored only as its SHA-256."""
    _check_shareable(trip)
    expires = _check_expiry(expires_at, now, expiry_field)
    token, token_hash = new_link_token()
    share = Share(
        trip_id=trip.id,
        grantee_id=None,
        token_hash=token_hash,
        label=label,
        created_by=by,
        created_at=now,
        expires_at=expires,
    )
    session.add(share)
    await session.flush()
    return share, token


async def list_shares(session: AsyncSession, trip_id: str) -> Sequence[tuple[Share, str | None]]:
    """Every share of the trip, oldest first, with the grantee's name (``None`` for
    links)."""
    rows = await session.execute(
        select(Share, User.name)
        .outerjoin(User, User.id == Share.grantee_id)
        .where(Share.trip_id == trip_id)
        .order_by(Share.created_at, Share.id)
    )
    return [(share, name) for share, name in rows]


async def get_share(session: AsyncSession, share_id: int) -> Share | None:
    return await session.get(Share, share_id)


async def revoke_share(session: AsyncSession, share: Share, now: datetime) -> Share:
    """Revoke ``share`` from ``now`` on. Revoking a revoked share changes nothing (the
    first revocation time stays)."""
    if share.revoked_at is None:
        share.revoked_at = now
        await session.flush()
    return share
