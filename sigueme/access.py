"""Who is asking, and what they may see and do.

A :class:`Principal` is either a user (authenticated by an API token) or the holder
of a share link (which opens one trip, read-only, until it expires or is revoked).
The access rules (ARCHITECTURE.md, promise 6) live here as plain functions, so every
route asks the same questions the same way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime

from sigueme.errors import Forbidden, NotFound
from sigueme.store.models import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request."""

    user_id: int | None
    """The user; ``None`` for a share-link holder."""
    role: Role | None
    """The user's role; ``None`` for a share-link holder."""
    name: str
    share_id: int | None = None
    """The share link used, if any."""
    share_trip_id: str | None = None
    """The one trip a share link opens."""

    @property
    def is_link(self) -> bool:
        return self.user_id is None


# -- the rules ---------------------------------------------------------------------------

LIVE_ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged", "dispatched")
"""Alert statuses that still need the police: while a trip has one, dispatchers see it."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One share of a trip: to a user (``grantee_id``) or to whoever holds a link."""

    share_id: int
    grantee_id: int | None
    """The user it is shared with; ``None`` for a link."""
    expires_at: datetime
    revoked_at: datetime | None

    def live(self, now: datetime) -> bool:
        """Whether the share still opens the trip at ``now``."""
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class TripFacts:
    """What the rules need to know about one trip, gathered by the store."""

    trip_id: str
    owner_id: int
    grants: tuple[Grant, ...] = ()
    """The trip's shares that concern the caller (all of them is fine too)."""
    has_live_alert: bool = False
    """Whether an alert of the trip is open, acknowledged or dispatched."""


def can_see(principal: Principal, trip: TripFacts, now: datetime) -> bool:
    """Whether ``principal`` may see ``trip`` at all (its plan, status and locations).

    The owner sees their trip; an admin sees every trip; a dispatcher sees trips with a
    live alert; a user sees a trip shared with them while the share lasts (whatever their
    role: a traveller may share with a teammate); a link holder sees the link's one trip
    while the link lasts. Nobody else.
    """
    if principal.is_link:
        return principal.share_trip_id == trip.trip_id and any(
            g.share_id == principal.share_id and g.grantee_id is None and g.live(now)
            for g in trip.grants
        )
    if principal.user_id == trip.owner_id or principal.role == Role.ADMIN:
        return True
    if principal.role == Role.DISPATCHER and trip.has_live_alert:
        return True
    return any(g.grantee_id == principal.user_id and g.live(now) for g in trip.grants)


FOREVER = datetime.max.replace(tzinfo=UTC)
"""What :func:`visible_until` answers when no share's expiry bounds the access."""


def visible_until(principal: Principal, trip: TripFacts, now: datetime) -> datetime | None:
    """Until when ``principal`` may see ``trip``, as far as ``trip``'s facts tell:
    ``None`` if not at ``now``; the latest expiry of the live shares that open it; or
    :data:`FOREVER` for its owner, an admin, a dispatcher while the trip has a live
    alert (whatever ends that access, a revocation or the alert resolved, is found
    by asking again)."""
    if not can_see(principal, trip, now):
        return None
    if principal.is_link:
        return max(
            g.expires_at
            for g in trip.grants
            if g.share_id == principal.share_id and g.grantee_id is None and g.live(now)
        )
    if principal.user_id == trip.owner_id or principal.role == Role.ADMIN:
        return FOREVER
    if principal.role == Role.DISPATCHER and trip.has_live_alert:
        return FOREVER
    return max(
        g.expires_at for g in trip.grants if g.grantee_id == principal.user_id and g.live(now)
    )


def can_change(principal: Principal, trip: TripFacts) -> bool:
    """Whether ``principal`` may change ``trip`` (finish, cancel, share): its owner only."""
    return not principal.is_link and principal.user_id == trip.owner_id


def can_manage_shares(principal: Principal, trip: TripFacts) -> bool:
    """Whether ``principal`` may list and revoke ``trip``'s shares: its owner, and admins
    (who may have to cut off a watcher on the traveller's behalf)."""
    return can_change(principal, trip) or (not principal.is_link and principal.role == Role.ADMIN)


def require_see(principal: Principal, trip: TripFacts, now: datetime) -> None:
    """Raise :class:`NotFound` unless ``principal`` may see ``trip``: a trip one may not
    see answers exactly as a trip that does not exist."""
    if not can_see(principal, trip, now):
        raise NotFound("no such trip")


def require_change(principal: Principal, trip: TripFacts, now: datetime) -> None:
    """:class:`NotFound` for a trip ``principal`` may not see, :class:`Forbidden` for one
    they see but may not change."""
    require_see(principal, trip, now)
    if not can_change(principal, trip):
        raise Forbidden("only the traveller who filed the trip may change it")


def require_manage_shares(principal: Principal, trip: TripFacts, now: datetime) -> None:
    """:class:`NotFound` for a trip ``principal`` may not see, :class:`Forbidden` for one
    whose shares they may not manage."""
    require_see(principal, trip, now)
    if not can_manage_shares(principal, trip):
        raise Forbidden("only the traveller who filed the trip may manage its shares")


def can_file_trips(principal: Principal) -> bool:
    """Travellers file trips, and admins on their own behalf."""
    return principal.role in (Role.TRAVELLER, Role.ADMIN)


def require_file_trips(principal: Principal) -> None:
    if not can_file_trips(principal):
        raise Forbidden("only travellers file trips")


class Scope(enum.StrEnum):
    """Which trips a listing covers."""

    MINE = "mine"
    """Trips the caller filed."""
    SHARED = "shared"
    """Trips shared with the caller, while the share lasts."""
    ACTIVE = "active"
    """Active trips the caller may see: all for admins, those with a live alert for
    dispatchers."""


def default_scope(principal: Principal) -> Scope:
    """The listing a caller gets when they name none: what their role is for."""
    if principal.role in (Role.DISPATCHER, Role.ADMIN):
        return Scope.ACTIVE
    if principal.role == Role.MONITOR:
        return Scope.SHARED
    return Scope.MINE


def require_scope(principal: Principal, scope: Scope) -> None:
    """:class:`Forbidden` unless ``principal`` may list ``scope``: link holders list
    nothing (a link opens one trip); ``active`` is for dispatchers and admins."""
    if principal.is_link:
        raise Forbidden("a share link opens one trip; it lists none")
    if scope is Scope.ACTIVE and principal.role not in (Role.DISPATCHER, Role.ADMIN):
        raise Forbidden("only dispatchers and admins list active trips")
