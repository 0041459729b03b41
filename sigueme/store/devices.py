"""Tracker-app devices: binding a phone's tracker app to a trip or a traveller, its
secret, and which trip a request from it feeds.

A device is what a tracker app calls itself (OsmAnd ``id``; OwnTracks ``user/device``),
unique per protocol, with a secret the app sends along (the scheme is the API's). It is
bound either to one trip, or to a traveller: then it feeds the traveller's active trip,
and is refused while they have none or several. Only the SHA-256 of the secret is
stored; :func:`authenticate` looks the device up by protocol and identifier and compares
hashes in constant time, never plaintext.

Who may: a trip's traveller binds devices to it, a traveller binds devices to
themselves, and admins do either for anyone; the same people (and admins) list, rotate
and revoke them. A device someone may not manage answers as one that does not exist.

Like the other store modules, functions flush and leave the commit to the caller.
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.access import Principal
from sigueme.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from sigueme.store.models import Device, Role, Trip, TripStatus, User
from sigueme.store.tokens import MAX_TOKEN_CHARS, hash_token
from sigueme.store.trips import visible_trip

SECRET_PREFIX = "sgd_"
"""Device secrets start with this; the rest is 160 random bits, URL-safe (it may go in
a URL path)."""
MAX_DEVICE_ID = 100
MAX_LIST = 1_000

BAD_CREDENTIALS = "unknown device or wrong secret"
"""One answer for every authentication failure: the caller learns nothing about which."""


class Protocol(enum.StrEnum):
    OSMAND = "osmand"
    OWNTRACKS = "owntracks"


def new_secret() -> tuple[str, str]:
    """A fresh device secret and its hash: ``(plaintext, secret_hash)``."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(20)
    return secret, hash_token(secret)


def check_device_id(protocol: Protocol, device_id: str) -> str:
    """A device identifier as the app will send it, or :class:`Invalid` (field
    ``device_id``): 1 to 100 printable characters without surrounding spaces; for
    OwnTracks ``user/device`` (or ``user`` alone), the user without ``/``."""
    text = device_id.strip()
    if not text or len(text) > MAX_DEVICE_ID or not text.isprintable() or text != device_id:
        raise Invalid(
            "device_id", f"1 to {MAX_DEVICE_ID} printable characters, no surrounding spaces"
        )
    if protocol is Protocol.OWNTRACKS:
        user, _, device = text.partition("/")
        if not user.strip() or (text.count("/") and not device.strip()):
            raise Invalid(
                "device_id", "OwnTracks devices are user/device, as set in the app (or user)"
            )
    return text


# -- who may -------------------------------------------------------------------------------


def _is_admin(principal: Principal) -> bool:
    return not principal.is_link and principal.role == Role.ADMIN


async def owner_of(session: AsyncSession, device: Device) -> int | None:
    """The traveller a device reports for: its trip's owner, or the user it is bound to."""
    if device.user_id is not None:
        return device.user_id
    return await session.scalar(select(Trip.owner_id).where(Trip.id == device.trip_id))


async def manageable_device(session: AsyncSession, principal: Principal, device_pk: int) -> Device:
    """The device ``device_pk`` if ``principal`` may manage it (the traveller it reports
    for, or an admin); :class:`NotFound` otherwise, as for one that does not exist."""
    device = await session.get(Device, device_pk)
    if device is None or principal.is_link:
        raise NotFound("no such device")
    if not _is_admin(principal) and await owner_of(session, device) != principal.user_id:
        raise NotFound("no such device")
    return device


# -- registering, rotating, revoking ---------------------------------------------------------


async def register(
    session: AsyncSession,
    principal: Principal,
    *,
    protocol: Protocol,
    device_id: str,
    now: datetime,
    trip_id: str | None = None,
    user_name: str | None = None,
) -> tuple[Device, str]:
    """Bind a device to ``trip_id``, or to the traveller ``user_name`` (the caller's own
    name for "for me"): ``(device, plaintext secret)``. The secret is returned here once.

    Trips: the caller must see the trip (:class:`NotFound`) and be its traveller or an
    admin (:class:`Forbidden`); the trip must be active (:class:`Conflict`). Travellers:
    the caller must be that traveller or an admin (:class:`Forbidden`); the user must
    exist, be enabled and file trips (traveller or admin; :class:`Invalid`, field
    ``user``). The identifier must be free for the protocol (:class:`Conflict`); a
    revoked registration of it is replaced.
    """
    if (trip_id is None) == (user_name is None):
        raise ValueError("bind a device to a trip or to a user, not both or neither")
    if principal.user_id is None:
        raise Forbidden("a share link cannot register devices")
    device_id = check_device_id(protocol, device_id)
    bound_trip: str | None = None
    bound_user: int | None = None
    if trip_id is not None:
        trip, facts = await visible_trip(session, principal, trip_id, now)
        if facts.owner_id != principal.user_id and not _is_admin(principal):
            raise Forbidden("only the trip's traveller or an admin binds devices to it")
        if trip.status != TripStatus.ACTIVE.value:
            raise Conflict(f"the trip has ended ({trip.status}); devices feed active trips")
        bound_trip = trip.id
    else:
        if user_name != principal.name and not _is_admin(principal):
            raise Forbidden("only the traveller themselves or an admin binds devices to them")
        user = await session.scalar(select(User).where(User.name == user_name))
        if user is None or user.disabled:
            raise Invalid("user", f"no active user is called {user_name!r}")
        if user.role not in (Role.TRAVELLER.value, Role.ADMIN.value):
            raise Invalid("user", "devices feed trips: only travellers (and admins) file them")
        bound_user = user.id

    existing = await session.scalar(
        select(Device).where(Device.protocol == protocol.value, Device.device_id == device_id)
    )
    if existing is not None:
        if existing.revoked_at is None:
            raise Conflict(
                f"{protocol.value} device {device_id!r} is already registered: revoke it "
                "first, or choose another identifier in the app"
            )
        await session.execute(delete(Device).where(Device.id == existing.id))
    secret, secret_hash = new_secret()
    device = Device(
        protocol=protocol.value,
        device_id=device_id,
        secret_hash=secret_hash,
        trip_id=bound_trip,
        user_id=bound_user,
        created_by=principal.user_id,
        created_at=now,
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError:
        # Someone registered the same identifier between the check and the insert.
        raise Conflict(f"{protocol.value} device {device_id!r} is already registered") from None
    return device, secret


async def rotate(session: AsyncSession, device: Device, now: datetime) -> str:
    """A new secret for ``device`` (returned once); the old one stops working at once.
    :class:`Conflict` for a revoked device (register it again instead)."""
    if device.revoked_at is not None:
        raise Conflict("the device is revoked: register it again for a new secret")
    secret, device.secret_hash = new_secret()
    device.rotated_at = now
    await session.flush()
    return secret


async def revoke(session: AsyncSession, device: Device, now: datetime) -> Device:
    """Revoke ``device`` from ``now`` on: its requests are refused. Revoking a revoked
    device changes nothing (the first revocation time stays)."""
    if device.revoked_at is None:
        device.revoked_at = now
        await session.flush()
    return device


async def list_devices(session: AsyncSession, principal: Principal) -> Sequence[Device]:
    """The devices ``principal`` manages, newest first: all of them for an admin; for
    anyone else, those bound to them or to a trip of theirs."""
    if principal.user_id is None:
        return []
    query = select(Device)
    if not _is_admin(principal):
        query = query.outerjoin(Trip, Trip.id == Device.trip_id).where(
            or_(Device.user_id == principal.user_id, Trip.owner_id == principal.user_id)
        )
    query = query.order_by(Device.created_at.desc(), Device.id.desc()).limit(MAX_LIST)
    return (await session.scalars(query)).all()


async def user_names(session: AsyncSession, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(user_ids)))
    return {row.id: row.name for row in rows}


# -- a request from a device -----------------------------------------------------------------


async def authenticate(
    session: AsyncSession, protocol: Protocol, device_id: str, secret: str
) -> Device:
    """The live device ``device_id`` of ``protocol`` whose secret is ``secret``;
    :class:`Unauthorized` (with the same reason) when it is unknown, revoked, the secret
    is wrong, or the traveller it reports for is disabled."""
    if not secret or len(secret) > MAX_TOKEN_CHARS:
        raise Unauthorized(BAD_CREDENTIALS)
    offered = hash_token(secret)
    device = await session.scalar(
        select(Device).where(Device.protocol == protocol.value, Device.device_id == device_id)
    )
    if device is None:
        hmac.compare_digest(offered, offered)  # the same work as a known device
        raise Unauthorized(BAD_CREDENTIALS)
    if not hmac.compare_digest(offered, device.secret_hash) or device.revoked_at is not None:
        raise Unauthorized(BAD_CREDENTIALS)
    owner = await owner_of(session, device)
    disabled = await session.scalar(select(User.disabled).where(User.id == owner))
    if disabled is not False:
        raise Unauthorized(BAD_CREDENTIALS)
    return device


async def trip_of(session: AsyncSession, device: Device) -> str:
    """The trip an authenticated ``device`` feeds now: its trip while active; for a
    traveller's device, their one active trip. :class:`Conflict` (with what to do) when
    there is no such trip or, for a traveller, several."""
    if device.trip_id is not None:
        status = await session.scalar(select(Trip.status).where(Trip.id == device.trip_id))
        if status != TripStatus.ACTIVE.value:
            raise Conflict(
                f"the device's trip has ended ({status}): register the device for you "
                "(for_me) or for your next trip"
            )
        return device.trip_id
    active = (
        await session.scalars(
            select(Trip.id)
            .where(Trip.owner_id == device.user_id, Trip.status == TripStatus.ACTIVE.value)
            .limit(2)
        )
    ).all()
    if not active:
        raise Conflict("the traveller has no active trip: file one, then start tracking")
    if len(active) > 1:
        raise Conflict(
            "the traveller has several active trips: finish the others, or bind the device "
            "to one trip"
        )
    return active[0]


@dataclass(frozen=True, slots=True)
class Resolved:
    """Who sent a request, and where its fixes go."""

    device_pk: int
    """The device's row id (``Device.id``), e.g. to rate-limit it."""
    trip_id: str


async def resolve(
    session: AsyncSession, protocol: Protocol, device_id: str, secret: str
) -> Resolved:
    """:func:`authenticate`, then :func:`trip_of`: the trip a request of this device
    feeds. :class:`Unauthorized` for bad credentials, :class:`Conflict` when no trip
    can be fed."""
    device = await authenticate(session, protocol, device_id, secret)
    return Resolved(device_pk=device.id, trip_id=await trip_of(session, device))
