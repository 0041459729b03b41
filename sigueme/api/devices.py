"""Tracker-app devices over HTTP: register one (its secret and the app's settings are
shown once), rotate its secret, revoke it, list them.

A device is bound to a trip (its traveller or an admin registers it) or to a traveller
(``for_me``, or an admin naming ``user``), whose one active trip it then feeds. The
traveller it reports for and admins list, rotate and revoke it; anyone else gets 404.

How each app sends the secret (see :mod:`sigueme.api.trackers`):

- OsmAnd protocol (Traccar Client): the secret is the last part of the server URL,
  ``{public_url}/osmand/{secret}``; the device identifier is the app's own.
- OwnTracks (HTTP mode): HTTP Basic authentication, the secret as the password; the
  device is ``user/device`` as set in the app.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from sigueme.access import Principal
from sigueme.api.deps import PrincipalDep, SessionDep, SettingsDep
from sigueme.api.trips import INVALID, UNAUTHORIZED, Responses, _err, refuse
from sigueme.errors import Invalid, NotFound
from sigueme.settings import Settings
from sigueme.store import devices as store
from sigueme.store.devices import MAX_DEVICE_ID, Protocol
from sigueme.store.models import Device, Role, utcnow

router = APIRouter(prefix="/v1", tags=["devices"])

OSMAND_PATH = "/osmand"
OWNTRACKS_PATH = "/owntracks"

DeviceId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The device's id.")]
NOT_FOUND_DEVICE: Responses = {
    404: _err("No such device, or not one you manage (the same answer).")
}


class DeviceCreate(BaseModel):
    """A tracker app to bind: to a trip (``trip_id``), to yourself (``for_me``: your
    active trip is fed, whichever it is), or, for admins, to a traveller (``user``)."""

    model_config = ConfigDict(extra="forbid")

    protocol: Protocol = Field(description="osmand (Traccar Client) or owntracks.")
    device_id: str = Field(
        min_length=1,
        max_length=MAX_DEVICE_ID,
        description="What the app calls itself: Traccar Client's device identifier; for "
        "OwnTracks user/device (username and device ID as set in the app).",
        examples=["48241179", "ana/pixel"],
    )
    trip_id: str | None = Field(None, min_length=1, max_length=36)
    for_me: bool = Field(False, description="Feed your active trip, whichever it is.")
    user: str | None = Field(
        None, min_length=1, max_length=100, description="Admins: the traveller to bind it to."
    )


class DeviceOut(BaseModel):
    """A registered device (its secret is never shown again)."""

    id: int
    protocol: Protocol
    device_id: str
    trip_id: str | None = Field(description="The trip it feeds, when bound to a trip.")
    user: str | None = Field(
        description="The traveller whose active trip it feeds, when bound to a traveller."
    )
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    active: bool = Field(description="Not revoked.")
    url: str = Field(description="This device: DELETE it to revoke.")


class AppSettings(BaseModel):
    """What to enter in the app, by the names of its own settings."""

    app: str
    settings: dict[str, str]
    notes: list[str]


class DeviceWithSecret(DeviceOut):
    """A device with its secret, shown this once (the service keeps only its hash)."""

    secret: str
    app: AppSettings


class DeviceList(BaseModel):
    devices: list[DeviceOut]


def app_settings(
    settings: Settings, protocol: Protocol, device_id: str, secret: str
) -> AppSettings:
    """The exact settings to enter in the app for this device and secret."""
    base = settings.public_url.rstrip("/")
    if protocol is Protocol.OSMAND:
        return AppSettings(
            app="Traccar Client",
            settings={
                "Device identifier": device_id,
                "Server URL": f"{base}{OSMAND_PATH}/{secret}",
            },
            notes=[
                "Traccar Client (Android or iOS): open Settings, enter the Device identifier "
                "and the Server URL exactly as given, then turn tracking on.",
                "Other OsmAnd-protocol trackers: send id, lat, lon and timestamp (speed in "
                "knots) to the same URL, as a GET query string, a form POST or JSON.",
                "The secret is the last part of the URL: keep it private. If it leaks, rotate "
                "it and enter the new URL.",
            ],
        )
    user, _, device = device_id.partition("/")
    values = {
        "Mode": "HTTP",
        "URL": f"{base}{OWNTRACKS_PATH}",
        "Authentication": "on",
        "Username": user,
        "Password": secret,
    }
    if device:
        values["Device ID"] = device
    return AppSettings(
        app="OwnTracks",
        settings=values,
        notes=[
            "OwnTracks (Android or iOS): in Preferences → Connection choose Mode HTTP, enter "
            "the URL, then under Identification the Username, Password and Device ID as "
            "given. The Tracker ID may be any two characters.",
            "Leave the encryption key empty: Sígueme cannot read encrypted messages.",
        ],
    )


def device_out(device: Device, names: dict[int, str]) -> DeviceOut:
    return DeviceOut(
        id=device.id,
        protocol=Protocol(device.protocol),
        device_id=device.device_id,
        trip_id=device.trip_id,
        user=names.get(device.user_id) if device.user_id is not None else None,
        created_at=device.created_at,
        rotated_at=device.rotated_at,
        revoked_at=device.revoked_at,
        active=device.revoked_at is None,
        url=f"/v1/devices/{device.id}",
    )


def _with_secret(
    device: Device, names: dict[int, str], secret: str, settings: Settings
) -> DeviceWithSecret:
    return DeviceWithSecret(
        **device_out(device, names).model_dump(),
        secret=secret,
        app=app_settings(settings, Protocol(device.protocol), device.device_id, secret),
    )


def _binding(body: DeviceCreate, principal: Principal) -> tuple[str | None, str | None]:
    """``(trip_id, user name)`` of the request: exactly one of them."""
    given = [body.trip_id is not None, body.for_me, body.user is not None]
    if sum(given) != 1:
        raise refuse(("body", "trip_id"), "give one of trip_id, for_me: true, or user")
    if body.user is not None and principal.role != Role.ADMIN:
        raise refuse(("body", "user"), "only admins bind devices to another user; use for_me")
    if body.trip_id is not None:
        return body.trip_id, None
    return None, body.user if body.user is not None else principal.name


@router.post(
    "/devices",
    status_code=201,
    response_model=DeviceWithSecret,
    summary="Register a tracker app (its secret is shown once)",
    responses={
        **UNAUTHORIZED,
        403: _err("The trip or the traveller is not yours to bind devices to."),
        409: _err("The identifier is taken for this protocol, or the trip has ended."),
        **INVALID,
    },
)
async def register_device(
    body: DeviceCreate,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
    response: Response,
) -> DeviceWithSecret:
    """Bind a tracker app to a trip, to yourself (``for_me``: it feeds your active
    trip) or, for admins, to a traveller (``user``). The answer holds the secret and the
    exact settings to enter in the app, this once."""
    trip_id, user_name = _binding(body, principal)
    now = utcnow()
    try:
        device, secret = await store.register(
            session,
            principal,
            protocol=body.protocol,
            device_id=body.device_id,
            now=now,
            trip_id=trip_id,
            user_name=user_name,
        )
    except Invalid as exc:
        raise refuse(("body", exc.field), exc.reason) from None
    except NotFound:
        raise refuse(("body", "trip_id"), "no such trip") from None
    await session.commit()
    names = await store.user_names(session, {device.user_id} if device.user_id else set())
    response.headers["Location"] = f"/v1/devices/{device.id}"
    return _with_secret(device, names, secret, settings)


@router.get(
    "/devices",
    response_model=DeviceList,
    summary="List the devices you manage (admins: all)",
    responses={**UNAUTHORIZED},
)
async def list_devices(principal: PrincipalDep, session: SessionDep) -> DeviceList:
    """Devices bound to you or to your trips, newest first, revoked ones too; admins
    get every device."""
    devices = await store.list_devices(session, principal)
    names = await store.user_names(session, {d.user_id for d in devices if d.user_id})
    return DeviceList(devices=[device_out(d, names) for d in devices])


@router.post(
    "/devices/{id}/rotate",
    response_model=DeviceWithSecret,
    summary="Give a device a new secret (shown once)",
    responses={**UNAUTHORIZED, **NOT_FOUND_DEVICE, 409: _err("The device is revoked.")},
)
async def rotate_device(
    id: DeviceId, principal: PrincipalDep, session: SessionDep, settings: SettingsDep
) -> DeviceWithSecret:
    """A new secret: the old one stops working now. The answer holds the new secret and
    the app's settings (for OsmAnd the server URL changes), this once."""
    device = await store.manageable_device(session, principal, id)
    secret = await store.rotate(session, device, utcnow())
    await session.commit()
    names = await store.user_names(session, {device.user_id} if device.user_id else set())
    return _with_secret(device, names, secret, settings)


@router.delete(
    "/devices/{id}",
    response_model=DeviceOut,
    summary="Revoke a device",
    responses={**UNAUTHORIZED, **NOT_FOUND_DEVICE},
)
async def revoke_device(id: DeviceId, principal: PrincipalDep, session: SessionDep) -> DeviceOut:
    """Refuse the device's requests from now on. Revoking a revoked device changes
    nothing and answers the same; its identifier may then be registered again."""
    device = await store.manageable_device(session, principal, id)
    await store.revoke(session, device, utcnow())
    await session.commit()
    names = await store.user_names(session, {device.user_id} if device.user_id else set())
    return device_out(device, names)
