"""The traveller's phone streams its fixes: ``/v1/trips/{trip_id}/phone`` (websocket).

Authentication never puts the token in the URL (URLs end up in logs): native apps send
``Authorization: Bearer sgm_...`` with the upgrade request; browsers, which cannot set
headers on a websocket, send ``{"type": "auth", "token": "sgm_..."}`` as the first
frame, within :attr:`PhoneLimits.auth_timeout_s`. Only the trip's traveller may
stream, and only while the trip is active. Then the server sends ``{"type":
"ready", ...}`` with the trip's status, and answers each frame in order (frame formats
in :mod:`sigueme.api.phone_protocol`):

- a ``fix`` or ``fixes`` frame: ``{"type": "ack", "seqs": [...], "duplicates": [...],
  "status": {...}, "events": [{"seq": 12, "kind": "off_route"}]}`` once the fixes are
  stored (ARCHITECTURE.md, promise 1). ``seqs`` lists every fix of the frame that is
  now stored (the phone may forget them), ``duplicates`` those among them that were
  stored already (a resend). A database failure answers ``{"type": "error", "reason":
  "not stored, resend", "retry": true}`` instead: resend, it is harmless.
- ``sos``: its fix (if any) is stored as a fix frame's would be, then the trip's SOS
  alert is raised at that position (else at the trip's last known one), at the highest
  severity and at once: ``{"type": "sos_ack", "alert_id": ..., "seq": ...}`` once it is
  committed. It works on an ended trip too. A database failure answers an error frame
  with ``"retry": true``: send it again.
- ``cancel`` with the traveller's PIN: ``{"type": "cancelled", "count": n}`` (the
  trip's live alerts cancelled). The duress PIN answers exactly the same, and tells
  the police instead. A wrong PIN: an error frame (``"field": "pin"``); at most five
  attempts per 15 minutes.
- ``report`` (a voice note or photo for the trip, within the frame; see
  :mod:`sigueme.api.phone_reports`): ``{"type": "report_ack", "report_id", "folio",
  "alert_id"}`` once committed; a refused one gets an error frame naming the field.
- ``ping``: ``{"type": "pong"}``.
- anything malformed: ``{"type": "error", "reason": ..., "field": ..., "seq": ...}``;
  nothing in that frame was stored and the connection stays open.

Close codes: 4401 not authenticated (no, bad or late credentials), 4404 no such trip
or not the caller's (one answer for both), 4409 the trip has ended, 4429 rate limit
exceeded again and again, 1009 a frame over 128 KiB, 1008 too many malformed frames in
a row, 1013 the database could not be reached to authenticate (reconnect after a
pause), 1012 the worker is shutting down (reconnect, to another worker; the frame being
handled was answered first, frames not answered were not stored or will be resends).
While the database is away an open connection stays open: every frame gets its retry
error frame, and the token's re-check waits for the database to be back. Dead
connections are found by the server's websocket pings (``sigueme serve`` runs uvicorn
with ``ws_ping_interval=20``, ``ws_ping_timeout=20``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import asyncpg
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.api.alerts import PIN_ATTEMPTS
from sigueme.api.fixes_in import take_fixes, take_sos, wake_relay
from sigueme.api.phone_protocol import (
    MAX_FIXES_PER_FRAME,
    MAX_FRAME_BYTES,
    Auth,
    Cancel,
    Fixes,
    FrameError,
    Ping,
    ReportRaw,
    Sos,
    error_frame,
    field_name,
    parse_frame,
    status_frame,
)
from sigueme.api.phone_reports import parse_report, phone_report
from sigueme.api.ratelimit import TokenBucket
from sigueme.api.sockets import Closed, JsonSocket
from sigueme.errors import Conflict, Forbidden, Invalid, NotFound
from sigueme.reports.storage import EvidenceStoreError
from sigueme.services.ingest import IngestResult, InvalidFix, trip_status
from sigueme.services.live_feed import publish_ingest
from sigueme.services.traveller import cancel_with_pin
from sigueme.store.models import TripStatus, utcnow
from sigueme.store.trips import get_trip
from sigueme.store.users import authenticate

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["live"])


class CloseCode(IntEnum):
    POLICY = 1008
    TOO_BIG = 1009
    SHUTTING_DOWN = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHENTICATED = 4401
    NOT_FOUND = 4404
    ENDED = 4409
    RATE_LIMITED = 4429


@dataclass(frozen=True, slots=True)
class PhoneLimits:
    """Bounds of one phone connection. An app may set ``app.state.phone_limits``."""

    auth_timeout_s: float = 10.0
    """The first frame must authenticate within this when no header did."""
    frames_per_s: float = 10.0
    frame_burst: float = 50.0
    fixes_per_s: float = 100.0
    fix_burst: float = 1_000.0
    """A phone back online may send this many buffered fixes at once."""
    strikes: float = 10.0
    """Frames refused for rate ...,"""
    strikes_per_s: float = 0.2
    """... refilling at this rate: past them, the connection is closed (4429)."""
    bad_frames_in_a_row: int = 20
    """Malformed frames without a good one between them before closing (1008)."""
    recheck_s: float = 10.0
    """Before storing, the token is checked again if this long has passed since the last
    check: a revoked token or a disabled user stops streaming within that time."""


DATABASE_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


SHUTDOWN_REASON: Final = "server shutting down: reconnect"


class PhoneSockets:
    """This worker's open phone sockets, and whether it is shutting down
    (``app.state.phone_sockets``, made on first use)."""

    def __init__(self) -> None:
        self.open: set[_Phone] = set()
        self.closing = asyncio.Event()
        self.none_open = asyncio.Event()
        self.none_open.set()

    def add(self, phone: _Phone) -> None:
        self.open.add(phone)
        self.none_open.clear()

    def discard(self, phone: _Phone) -> None:
        self.open.discard(phone)
        if not self.open:
            self.none_open.set()


def phone_sockets(state: Any) -> PhoneSockets:
    sockets = getattr(state, "phone_sockets", None)
    if not isinstance(sockets, PhoneSockets):
        sockets = PhoneSockets()
        state.phone_sockets = sockets
    return sockets


async def drain_phones(state: Any, *, timeout_s: float) -> int:
    """Shut this worker's phone sockets down (``sigueme serve`` calls it when told to
    stop, before uvicorn closes the other connections): each finishes the frame it is
    handling (its fixes stored and acknowledged, or refused), then is closed with 1012
    and :data:`SHUTDOWN_REASON`; frames it received but had not started are not handled
    (not acknowledged: the phone resends them to another worker), and new connections
    are closed the same way at once. Returns how many were still open after
    ``timeout_s``."""
    sockets = phone_sockets(state)
    sockets.closing.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sockets.none_open.wait(), timeout_s)
    return len(sockets.open)


@router.websocket("/trips/{trip_id}/phone")
async def phone_socket(websocket: WebSocket, trip_id: str) -> None:
    """The traveller's phone streams fixes of the trip (see the module's doc)."""
    limits: PhoneLimits = getattr(websocket.app.state, "phone_limits", PhoneLimits())
    sockets = phone_sockets(websocket.app.state)
    # Accept first: a websocket refused before it is accepted gets an HTTP 403 and no
    # close code, and the phone could not tell why.
    await websocket.accept()
    phone = _Phone(websocket, trip_id[:64], limits, sockets)
    sockets.add(phone)
    try:
        with contextlib.suppress(Closed, WebSocketDisconnect):
            await phone.run()
    finally:
        sockets.discard(phone)


class _Phone(JsonSocket):
    max_frame_bytes = MAX_FRAME_BYTES

    def __init__(
        self, websocket: WebSocket, trip_id: str, limits: PhoneLimits, sockets: PhoneSockets
    ) -> None:
        super().__init__(
            websocket,
            auth_timeout_s=limits.auth_timeout_s,
            bad_frames_in_a_row=limits.bad_frames_in_a_row,
        )
        self.sockets = sockets
        self.busy = asyncio.Lock()
        """Held while a frame is handled: a shutdown waits for it."""
        self.draining = False
        self.trip_id = trip_id
        self.limits = limits
        self.sessions: async_sessionmaker[AsyncSession] = websocket.app.state.sessions
        self.frames = TokenBucket(limits.frames_per_s, limits.frame_burst)
        self.fixes = TokenBucket(limits.fixes_per_s, limits.fix_burst)
        self.strikes = TokenBucket(limits.strikes_per_s, limits.strikes)
        self.token = ""
        self.user_id = 0
        self.checked_at = 0.0

    # -- authentication --------------------------------------------------------------

    async def authenticate(self) -> None:
        token = await self.auth_token(parse_frame, FrameError, Auth)
        self.token = token or ""
        self.checked_at = time.monotonic()
        try:
            async with self.sessions() as session:
                principal = await authenticate(session, token) if token else None
                if principal is None:
                    await self.close(CloseCode.UNAUTHENTICATED, "invalid, revoked or expired token")
                trip = await get_trip(session, self.trip_id)
                # A trip that is not the caller's answers as one that does not exist.
                if trip is None or principal.user_id is None or trip.owner_id != principal.user_id:
                    await self.close(CloseCode.NOT_FOUND, "no such trip")
                if trip.status != TripStatus.ACTIVE.value:
                    await self.close(CloseCode.ENDED, f"the trip is {trip.status}")
                self.user_id = principal.user_id
                status = trip_status(trip)
        except DATABASE_ERRORS as exc:
            # The database is away (restarting, failing over): nothing is known about the
            # token or the trip yet. Say so with a code the phone retries on, rather than
            # crash the handler (which drops the connection with no reason at all).
            _database_down("a phone could not be authenticated", exc)
            await self.close(CloseCode.TRY_AGAIN_LATER, "database unavailable: reconnect")
        await self.send(
            {
                "type": "ready",
                "trip_id": trip.id,
                "status": status_frame(status),
                "limits": {
                    "max_frame_bytes": MAX_FRAME_BYTES,
                    "max_fixes_per_frame": MAX_FIXES_PER_FRAME,
                },
            }
        )

    # -- the stream --------------------------------------------------------------------

    async def run(self) -> None:
        if self.sockets.closing.is_set():
            await self.close(CloseCode.SHUTTING_DOWN, SHUTDOWN_REASON)
        await self.authenticate()
        closer = asyncio.create_task(self.close_at_shutdown(), name="phone-shutdown")
        try:
            while True:
                text = await self.receive_text()
                async with self.busy:
                    if self.draining:
                        return  # not handled nor acknowledged: the phone resends it
                    await self.handle(text)
        finally:
            closer.cancel()

    async def close_at_shutdown(self) -> None:
        """When the worker shuts down: close, once the frame in hand is answered."""
        await self.sockets.closing.wait()
        self.draining = True
        async with self.busy:
            # The socket may be gone already (the phone left, or the handler closed it).
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self.ws.close(code=CloseCode.SHUTTING_DOWN, reason=SHUTDOWN_REASON)

    async def handle(self, text: str | None) -> None:
        if not await self.within_rate(self.frames, 1, "too many frames"):
            return
        if text is None:
            await self.refuse(FrameError("frames are JSON text, not binary"))
            return
        try:
            frame = parse_frame(text)
        except FrameError as exc:
            await self.refuse(exc)
            return
        self.bad_in_a_row = 0
        if isinstance(frame, Ping):
            await self.send({"type": "pong"})
        elif isinstance(frame, Auth):
            await self.send(error_frame("already authenticated", field="type"))
        elif isinstance(frame, Sos):
            await self.sos(frame)
        elif isinstance(frame, Cancel):
            await self.cancel(frame)
        elif isinstance(frame, ReportRaw):
            await self.report(frame)
        elif isinstance(frame, Fixes) and await self.within_rate(
            self.fixes, len(frame.fixes), "too many fixes"
        ):
            await self.store(frame)

    async def within_rate(self, bucket: TokenBucket, n: int, what: str) -> bool:
        wait = bucket.take(n)
        if not wait:
            return True
        if self.strikes.take():
            await self.close(CloseCode.RATE_LIMITED, "rate limit exceeded")
        await self.send(
            error_frame(f"rate limited: {what}, not stored", retry=True, retry_after_s=wait)
        )
        return False

    async def refuse(self, exc: FrameError) -> None:
        await self.bad_frame()
        await self.send(error_frame(exc.reason, field=exc.field, seq=exc.seq))

    async def still_authorised(self) -> None:
        """Close (4401) when the token was revoked or its user disabled meanwhile."""
        if time.monotonic() - self.checked_at < self.limits.recheck_s:
            return
        async with self.sessions() as session:
            principal = await authenticate(session, self.token)
        if principal is None:
            await self.close(CloseCode.UNAUTHENTICATED, "token revoked or user disabled")
        self.checked_at = time.monotonic()

    async def sos(self, frame: Sos) -> None:
        seq = frame.fix.seq if frame.fix is not None else None
        try:
            await self.still_authorised()
        except DATABASE_ERRORS:
            # An SOS refused is always worth a line of its own (never rate-limited).
            log.error("SOS of trip %s not stored", self.trip_id, exc_info=True)
            await self.send(error_frame("SOS not stored, send it again", retry=True, seq=seq))
            return
        if frame.fix is not None:
            # Stored first, so the alert's track ends where the SOS was sent; a trip that
            # ended or a refused fix still lets the SOS through.
            with contextlib.suppress(Invalid, Conflict, *DATABASE_ERRORS):
                result = await take_fixes(
                    self.ws.app.state, self.trip_id, (frame.fix,), received_at=utcnow()
                )
                await publish_ingest(self.ws.app.state.live_bus, self.trip_id, (frame.fix,), result)
        try:
            raised = await take_sos(
                self.ws.app.state,
                self.trip_id,
                source="phone",
                now=utcnow(),
                fix=frame.fix,
                note=frame.note,
            )
        except NotFound:
            await self.close(CloseCode.NOT_FOUND, "no such trip")
        except DATABASE_ERRORS:
            log.error("SOS of trip %s not stored", self.trip_id, exc_info=True)
            await self.send(error_frame("SOS not stored, send it again", retry=True, seq=seq))
            return
        await self.send({"type": "sos_ack", "alert_id": raised.alert_id, "seq": seq})

    async def cancel(self, frame: Cancel) -> None:
        try:
            await self.still_authorised()
        except DATABASE_ERRORS as exc:
            _database_down("alerts were not cancelled", exc)
            await self.send(error_frame("not stored, send it again", retry=True))
            return
        wait = PIN_ATTEMPTS.take(("pin", self.user_id, self.trip_id))
        if wait > 0:
            await self.send(
                error_frame("too many PIN attempts", field="pin", retry=True, retry_after_s=wait)
            )
            return
        try:
            result = await cancel_with_pin(
                self.sessions, self.trip_id, user_id=self.user_id, pin=frame.pin
            )
        except NotFound:
            await self.close(CloseCode.NOT_FOUND, "no such trip")
        except Forbidden as exc:
            await self.send(error_frame(str(exc), field="pin"))
            return
        except DATABASE_ERRORS as exc:
            _database_down("alerts were not cancelled", exc)
            await self.send(error_frame("not stored, send it again", retry=True))
            return
        wake_relay(self.ws.app.state, result.changes)
        await self.send({"type": "cancelled", "count": result.cancelled})

    async def report(self, frame: ReportRaw) -> None:
        try:
            parsed = parse_report(frame.raw)
        except FrameError as exc:
            await self.refuse(exc)
            return
        try:
            await self.still_authorised()
            async with self.sessions() as session:
                principal = await authenticate(session, self.token)
            if principal is None:
                await self.close(CloseCode.UNAUTHENTICATED, "token revoked or user disabled")
            answer = await phone_report(self.ws.app.state, principal, self.trip_id, parsed)
        except FrameError as exc:
            await self.send(error_frame(exc.reason, field=exc.field))
            return
        except (Invalid, NotFound, Conflict) as exc:
            field = exc.field if isinstance(exc, Invalid) else None
            reason = exc.reason if isinstance(exc, Invalid) else str(exc)
            await self.send(error_frame(reason, field=field))
            return
        except (*DATABASE_ERRORS, EvidenceStoreError) as exc:
            _database_down("the report was not stored", exc)
            await self.send(error_frame("report not stored, send it again", retry=True))
            return
        await self.send(answer)

    async def store(self, frame: Fixes) -> None:
        try:
            # Inside the try: a database that fails the token's re-check would fail the
            # fixes too, and the phone must hear "resend", not lose its connection.
            await self.still_authorised()
            result = await take_fixes(
                self.ws.app.state, self.trip_id, frame.fixes, received_at=utcnow()
            )
        except InvalidFix as exc:
            name = f"fixes[{exc.index}].{exc.field}" if frame.batch else exc.field
            await self.send(error_frame(exc.reason, field=name, seq=exc.seq))
            return
        except Invalid as exc:
            await self.send(error_frame(exc.reason, field=field_name((exc.field,))))
            return
        except NotFound:
            await self.close(CloseCode.NOT_FOUND, "no such trip")
        except Conflict as exc:
            await self.close(CloseCode.ENDED, str(exc)[:120])
        except DATABASE_ERRORS as exc:
            _database_down("fixes were not stored", exc)
            await self.send(error_frame("not stored, resend", retry=True))
            return
        await publish_ingest(self.ws.app.state.live_bus, self.trip_id, frame.fixes, result)
        await self.send(ack_frame(result))


_LOG_EVERY_S = 10.0
"""While the database is failing, how often its failure is logged again (each with one
traceback): a worker refusing thousands of frames a second must not flood its log."""
_logged_at = -math.inf
_unlogged = 0


def _database_down(what: str, exc: BaseException) -> None:
    """Log a database failure of the phone socket, at most once every ``_LOG_EVERY_S``
    (with how many went unlogged meanwhile). Never the trip, the token or a position."""
    global _logged_at, _unlogged
    now = time.monotonic()
    if now - _logged_at < _LOG_EVERY_S:
        _unlogged += 1
        return
    more = f" ({_unlogged} more database failures since the last report)" if _unlogged else ""
    _logged_at, _unlogged = now, 0
    log.warning(
        "phone socket: %s, the database failed (%s); the phone was told to retry%s",
        what,
        type(exc).__name__,
        more,
        exc_info=True,
    )


def ack_frame(result: IngestResult) -> dict[str, Any]:
    seqs = [o.seq for o in result.outcomes if o.seq is not None]
    return {
        "type": "ack",
        "seqs": seqs,
        "duplicates": [o.seq for o in result.outcomes if o.duplicate and o.seq is not None],
        "status": status_frame(result.status),
        "events": [{"seq": o.seq, "kind": kind} for o in result.outcomes for kind in o.events],
    }
