"""Tracker apps in: the OsmAnd HTTP protocol (Traccar Client) and OwnTracks HTTP mode.

Each request names a registered device (:mod:`sigueme.api.devices`) and carries its
secret; its fixes go to the trip the device feeds through the path of a fix
(:func:`sigueme.services.ingest.ingest`), and the app is answered once they are stored.

**OsmAnd / Traccar Client** — ``GET`` or ``POST`` ``/osmand/{secret}``: the app's
"Server URL" is ``{public_url}/osmand/{secret}`` (Traccar Client posts to the URL it is
given, path included) and its "Device identifier" is the registered ``device_id``.
Query string, form body or JSON (:mod:`sigueme.trackers.osmand`). Answers:

- 200, empty body: stored (a resend of a stored fix too: it is counted once);
- 400: the request cannot be read (``detail`` names the field);
- 401: unknown device, wrong secret, or revoked. (Traccar answers 400 for an unknown
  device; 401 says what is wrong, and either way the app keeps the fix and retries.)
- 409: the device feeds no trip now (its trip ended; its traveller has no active trip,
  or several);
- 429: the device sends too fast (``Retry-After``).

**OwnTracks** — ``POST /owntracks`` with HTTP Basic authentication: the password is
the device's secret; the device is ``user/device`` from ``X-Limit-U``/``X-Limit-D``
(or ``?u=&d=``, or the Basic username). A location is stored; other message types are
acknowledged and ignored. Answers 200 with ``[]`` (nothing for the phone), and the same
4xx as above (401 with ``WWW-Authenticate: Basic``).

These apps number nothing, so each fix's sequence number is its device time in
milliseconds: an app resending a fix it was not sure got through sends the same time,
and the fix is stored once. ``alarm=sos`` (Traccar Client's SOS button) stores the fix
like any other and then raises the trip's SOS alert at that position, committed before
the answer; other alarms are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from starlette.responses import Response

from sigueme.api.errors import invalid_body
from sigueme.api.fixes_in import take_fixes, take_sos
from sigueme.api.ratelimit import RateLimiter
from sigueme.errors import Conflict, Invalid, NotFound, Unauthorized
from sigueme.services.ingest import IncomingFix
from sigueme.services.live_feed import publish_ingest
from sigueme.store import devices as store
from sigueme.store.devices import Protocol
from sigueme.store.models import Device, utcnow
from sigueme.trackers import osmand, owntracks
from sigueme.trackers.fields import TrackerError, TrackerFix

log = logging.getLogger(__name__)

router = APIRouter(tags=["tracker apps"])

MAX_BODY_BYTES = 512 * 1024
"""A tracker request's body: one fix is well under 1 KiB; a JSON batch of 500 fits."""
DEVICE_RATE_PER_S = 5.0
"""Fixes per second a device may keep sending (a live phone sends one every few s)."""
DEVICE_BURST = 120.0
"""Fixes a device may send at once (what a phone buffered while offline comes in a run)."""
BASIC_REALM = 'Basic realm="Sigueme", charset="UTF-8"'


# -- what a handler needs ----------------------------------------------------------------------


def get_sessions(conn: HTTPConnection) -> async_sessionmaker[AsyncSession]:
    """The app's session factory (the path of a fix opens its own sessions)."""
    sessions: async_sessionmaker[AsyncSession] = conn.app.state.sessions
    return sessions


def get_device_limiter(conn: HTTPConnection) -> RateLimiter:
    """The app's per-device rate limiter (``app.state.tracker_limiter``), made on first
    use with :data:`DEVICE_RATE_PER_S` and :data:`DEVICE_BURST` unless the app (or a
    test) set one."""
    limiter = getattr(conn.app.state, "tracker_limiter", None)
    if not isinstance(limiter, RateLimiter):
        limiter = RateLimiter(DEVICE_RATE_PER_S, DEVICE_BURST)
        conn.app.state.tracker_limiter = limiter
    return limiter


SessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessions)]
LimiterDep = Annotated[RateLimiter, Depends(get_device_limiter)]

_basic = HTTPBasic(
    auto_error=False,
    realm="Sigueme",
    description="OwnTracks: the username as set in the app, the device's secret as password.",
)


# -- answers ---------------------------------------------------------------------------------


def _detail(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"detail": reason}, status_code=status, headers=headers)


def _unreadable(exc: TrackerError | Invalid) -> Response:
    return JSONResponse(invalid_body(exc.field, exc.reason), status_code=400)


class _Refused(Exception):
    """An answer decided before the fixes reach the path of a fix."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise _Refused(_detail(413, f"request body larger than {MAX_BODY_BYTES} bytes"))
    return body


async def _device_and_trip(
    sessions: async_sessionmaker[AsyncSession],
    limiter: RateLimiter,
    protocol: Protocol,
    device_id: str,
    secret: str,
    *,
    fixes: int,
    unauthorized_headers: dict[str, str] | None,
) -> tuple[Device, str | None]:
    """The authenticated device and, when it sent fixes, the trip they go to.

    Refuses with 401 (bad credentials), 429 (too fast; checked after authentication, so
    nobody can spend another device's budget) or 409 (no trip to feed)."""
    async with sessions() as session:
        try:
            device = await store.authenticate(session, protocol, device_id, secret)
        except Unauthorized as exc:
            raise _Refused(_detail(401, str(exc), unauthorized_headers)) from None
        wait = limiter.take(("device", device.id), float(max(fixes, 1)))
        if wait > 0:
            raise _Refused(
                _detail(
                    429,
                    "this device sends too fast; it may resend later",
                    {"Retry-After": RateLimiter.retry_after(wait)},
                )
            )
        if fixes == 0:
            return device, None
        try:
            return device, await store.trip_of(session, device)
        except Conflict as exc:
            raise _Refused(_detail(409, str(exc))) from None


async def _feed(
    state: Any,
    device: Device,
    trip_id: str,
    fixes: Sequence[TrackerFix],
    received_at: datetime,
) -> Response | None:
    """Hand ``fixes`` to the path of a fix; ``None`` once stored, else the refusal."""
    incoming = [
        IncomingFix(
            seq=fix.seq,
            t=fix.t,
            lat=fix.lat,
            lon=fix.lon,
            accuracy=fix.accuracy,
            speed=fix.speed,
            heading=fix.heading,
            battery=fix.battery,
        )
        for fix in fixes
    ]
    sos = [i for fix, i in zip(fixes, incoming, strict=True) if fix.sos]
    for fix in fixes:
        if fix.alarm is not None and not fix.sos:
            log.info("tracker alarm %r from %s device %d", fix.alarm, device.protocol, device.id)
    try:
        result = await take_fixes(state, trip_id, incoming, received_at=received_at)
    except Invalid as exc:
        return _unreadable(exc)
    except Conflict as exc:
        if not sos:
            return _detail(409, str(exc))
        result = None  # the trip ended, but an SOS still reaches the police
    except NotFound as exc:
        return _detail(404, str(exc))
    if sos:
        # After the fixes: the alert carries the position the SOS was sent from.
        await take_sos(
            state, trip_id, source=device.protocol, now=received_at, fix=max(sos, key=_time)
        )
    if result is not None:
        await publish_ingest(state.live_bus, trip_id, incoming, result)
    return None


def _time(fix: IncomingFix) -> float:
    return fix.t


# -- OsmAnd / Traccar Client ---------------------------------------------------------------

_OSMAND_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (an empty body)."},
    400: {"description": "The request cannot be read: `loc` names the field."},
    401: {"description": "Unknown device, wrong secret, or revoked."},
    409: {"description": "The device feeds no trip now (ended; none or several active)."},
    429: {"description": "The device sends too fast: resend after Retry-After seconds."},
}


async def _osmand(
    request: Request,
    secret: str,
    sessions: async_sessionmaker[AsyncSession],
    limiter: RateLimiter,
) -> Response:
    now = utcnow()
    try:
        body = await _body(request)
        report = osmand.parse_request(
            request.url.query, body, request.headers.get("content-type"), now=now.timestamp()
        )
    except TrackerError as exc:
        return _unreadable(exc)
    except _Refused as refused:
        return refused.response
    try:
        device, trip_id = await _device_and_trip(
            sessions,
            limiter,
            Protocol.OSMAND,
            report.device_id,
            secret,
            fixes=len(report.fixes),
            unauthorized_headers=None,
        )
    except _Refused as refused:
        return refused.response
    assert trip_id is not None  # an OsmAnd report always has a fix
    refusal = await _feed(request.app.state, device, trip_id, report.fixes, now)
    return refusal if refusal is not None else Response(status_code=200)


_OSMAND_SUMMARY = "OsmAnd protocol (Traccar Client): one fix or a JSON batch"


@router.get(
    "/osmand/{secret}",
    response_class=Response,
    summary=_OSMAND_SUMMARY,
    responses=_OSMAND_RESPONSES,
)
@router.post(
    "/osmand/{secret}",
    response_class=Response,
    summary=_OSMAND_SUMMARY,
    responses=_OSMAND_RESPONSES,
)
async def osmand_report(
    request: Request, secret: str, sessions: SessionsDep, limiter: LimiterDep
) -> Response:
    """Set Traccar Client's Server URL to ``{public_url}/osmand/{secret}`` and its
    Device identifier to the registered ``device_id``. Parameters in the query string
    (GET) or a form body (POST), or the JSON body Traccar Client 9 sends."""
    return await _osmand(request, secret, sessions, limiter)


@router.api_route(
    "/osmand/{secret}/",
    methods=["GET", "POST"],
    response_class=Response,
    include_in_schema=False,
)
async def osmand_report_slash(
    request: Request, secret: str, sessions: SessionsDep, limiter: LimiterDep
) -> Response:
    """The same with a trailing slash (a redirect would lose a POST's body on some apps)."""
    return await _osmand(request, secret, sessions, limiter)


# -- OwnTracks -------------------------------------------------------------------------------


@router.post(
    "/owntracks",
    summary="OwnTracks HTTP mode",
    responses={
        200: {"description": "Stored, or a message type Sígueme ignores: `[]`."},
        400: {"description": "The message cannot be read: `loc` names the field."},
        401: {"description": "No or bad credentials (WWW-Authenticate: Basic)."},
        409: {"description": "The device feeds no trip now (ended; none or several active)."},
        429: {"description": "The device sends too fast: resend after Retry-After seconds."},
    },
)
async def owntracks_report(
    request: Request,
    sessions: SessionsDep,
    limiter: LimiterDep,
    credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    x_limit_u: Annotated[str | None, Header(max_length=100)] = None,
    x_limit_d: Annotated[str | None, Header(max_length=100)] = None,
    u: Annotated[str | None, Query(max_length=100)] = None,
    d: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    """OwnTracks in HTTP mode: URL ``{public_url}/owntracks``, authentication on, the
    username and device ID the device was registered with (``user/device``), the
    device's secret as password. Answers ``[]``."""
    challenge = {"WWW-Authenticate": BASIC_REALM}
    if credentials is None:
        return _detail(
            401, "HTTP Basic authentication needed: the device's secret as password", challenge
        )
    now = utcnow()
    try:
        body = await _body(request)
        ident = owntracks.device_identifier(x_limit_u or u or credentials.username, x_limit_d or d)
        fix = owntracks.parse_body(body)
    except TrackerError as exc:
        return _unreadable(exc)
    except _Refused as refused:
        return refused.response
    try:
        device, trip_id = await _device_and_trip(
            sessions,
            limiter,
            Protocol.OWNTRACKS,
            ident,
            credentials.password,
            fixes=0 if fix is None else 1,
            unauthorized_headers=challenge,
        )
    except _Refused as refused:
        return refused.response
    if fix is not None:
        assert trip_id is not None
        refusal = await _feed(request.app.state, device, trip_id, [fix], now)
        if refusal is not None:
            return refusal
    return JSONResponse([])
