"""Reports (SeguriChat) into the police queue: filed through the API, or built from a
person's WhatsApp messages; worked by dispatchers (category, FEDE referral, reveal).

Every report is its own alert of kind ``report`` (severity from its category). The alert
is raised, with its history row and its outbox row, in the transaction that stores the
report, so it reaches the police queue at least once (ARCHITECTURE.md, promise 1); the
caller rings the relay after the commit.

**WhatsApp.** A report enters the police queue at its *first* message: a threat must
not wait for the grouping window to close. Later messages from the same person within
the window (``SIGUEME_REPORT_WINDOW_S``, counted from their previous message; see
:mod:`sigueme.reports.grouping`) join the same report while its alert is live, and
repeat its alert (history ``repeated``, a new queue entry with the report's new
content). A message after a longer pause, or after the alert was resolved, starts a new
report. Media is fetched from the Graph API on arrival, checked
(:func:`~sigueme.reports.media.accept_evidence`) and stored before the transaction
that records it; a refused file is not stored and the person is told why, in Spanish.
Each message is taken at most once: its wamid is the key of ``report_messages``, and a
person's messages are taken one at a time (a lock per sender, in the process and, on
PostgreSQL, in the database).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.access import Principal
from sigueme.alerts.kinds import AlertKind, Severity
from sigueme.alerts.lifecycle import Action, AlertStatus
from sigueme.errors import Conflict, Forbidden, Invalid, NotFound
from sigueme.reports.categories import ReportCategory
from sigueme.reports.grouping import (
    DraftReport,
    reply_added,
    reply_ask_location,
    reply_media_refused,
    reply_received,
    reply_unsupported,
    starts_new_report,
)
from sigueme.reports.media import Evidence, MediaKind, MediaRejected, accept_evidence
from sigueme.reports.storage import EvidenceStore
from sigueme.reports.whatsapp import (
    MEDIA_TYPES,
    GraphClient,
    GraphError,
    IncomingMessage,
    MessageType,
)
from sigueme.services.alerts import AlertChange
from sigueme.store import reports as store
from sigueme.store.models import (
    Alert,
    AlertHistory,
    AlertOutbox,
    Report,
    ReportMedia,
    ReportMessage,
    Trip,
    TripStatus,
    User,
)

log = logging.getLogger(__name__)

MAX_TEXT = 8000
"""The longest text an API report takes."""
MAX_REPORT_TEXT = 32_000
"""A WhatsApp report's text stops growing past this (later texts still join, unsaid)."""
MAX_PLACE = 300
MAX_MEDIA = 5
"""Files per API report."""

CATEGORY_CHANGED = "category_changed"
"""History action and queue event: a dispatcher set or corrected a report's category."""
CHANNEL_CHANGED = "channel_changed"
"""History action and queue event: a dispatcher routed a report to another channel."""

REPLY_NOT_FETCHED = (
    "No pudimos descargar tu archivo. Tu reporte sigue abierto; puedes enviarlo de nuevo."
)


class PositionSource:
    """Where a report's position came from (``reports.position_source``)."""

    PHONE = "phone"
    MAP = "map"
    WHATSAPP = "whatsapp"
    PHOTO = "photo"
    TEXT = "text"


def record_step(
    session: AsyncSession,
    alert: Alert,
    action: Action | str,
    *,
    at: datetime,
    actor_id: int | None = None,
    note: str | None = None,
    police_only: bool = False,
    outbox: bool = True,
) -> AlertChange:
    """One step of a report's alert: a row of its history and (``outbox``) a row of the
    outbox, in the caller's transaction; as :mod:`sigueme.services.alerts` records its
    own steps."""
    name = str(action)
    session.add(
        AlertHistory(
            alert_id=alert.id,
            at=at,
            actor_id=actor_id,
            action=name,
            note=note,
            police_only=police_only,
        )
    )
    if outbox:
        session.add(AlertOutbox(alert_id=alert.id, event=name, created_at=at))
    return AlertChange(alert.id, alert.trip_id, alert.kind, name)


def category_of(report: Report) -> ReportCategory:
    """The report's category (``other`` for a value this code does not know)."""
    try:
        return ReportCategory(report.category)
    except ValueError:
        return ReportCategory.OTHER


async def raise_report_alert(
    session: AsyncSession, report: Report, *, now: datetime, note: str | None = None
) -> AlertChange:
    """The report's alert, raised (open, severity from its category) in the caller's
    transaction."""
    category = category_of(report)
    alert = Alert(
        kind=AlertKind.REPORT.value,
        report_id=report.id,
        trip_id=report.trip_id,
        severity=int(category.severity),
        status=AlertStatus.OPEN.value,
        count=1,
        escalations=0,
        lon=report.lon,
        lat=report.lat,
        position_at=report.occurred_at,
        details={"folio": report.folio, "category": category.value, "source": report.source},
        opened_at=now,
        updated_at=now,
    )
    session.add(alert)
    await session.flush()
    return record_step(session, alert, Action.RAISED, at=now, note=note)


def _place_alert(alert: Alert, report: Report) -> None:
    alert.lon, alert.lat = report.lon, report.lat


# -- the API -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewReport:
    """A report as the API received it, its fields checked one by one."""

    text: str = ""
    category: ReportCategory = ReportCategory.OTHER
    lon: float | None = None
    lat: float | None = None
    place: str | None = None
    position_source: str = PositionSource.PHONE
    """``phone`` or ``map`` for ``lon``/``lat``."""
    occurred_at: datetime | None = None
    channel: str | None = None
    trip_id: str | None = None
    anonymous: bool = False


@dataclass(frozen=True, slots=True)
class Submitted:
    report_id: int
    folio: str
    alert_id: str
    change: AlertChange
    position_source: str | None


async def submit_report(
    sessions: async_sessionmaker[AsyncSession],
    evidence_store: EvidenceStore,
    principal: Principal,
    new: NewReport,
    files: Sequence[Evidence],
    *,
    now: datetime,
) -> Submitted:
    """File ``new`` with its accepted evidence ``files`` for ``principal``: stored,
    given its folio, its alert raised; committed before this returns.

    Raises :class:`Invalid` (a report with no place at all, an unknown channel, an
    anonymous report linked to a trip), :class:`NotFound` (a trip that is not the
    caller's), :class:`Conflict` (a trip that ended). Nothing is stored then, not even
    the files."""
    if principal.user_id is None:
        raise Forbidden("a share link cannot file reports")
    if new.anonymous and new.trip_id is not None:
        raise Invalid("anonymous", "a report linked to your trip cannot be anonymous")
    async with sessions() as session, session.begin():
        channel_id = None
        if new.channel is not None:
            channel = await store.channel_by_name(session, new.channel)
            if channel is None:
                raise Invalid("channel", "no such channel")
            channel_id = channel.id
        trip = None
        if new.trip_id is not None:
            trip = await session.get(Trip, new.trip_id)
            if trip is None or trip.owner_id != principal.user_id:
                raise NotFound("no such trip")
            if trip.status != TripStatus.ACTIVE.value:
                raise Conflict("the trip has ended: file the report without trip_id")
        lon, lat = new.lon, new.lat
        source: str | None = new.position_source
        if lon is None or lat is None:
            lon = lat = None
            source = None
            photo = next((f.position for f in files if f.position is not None), None)
            if photo is not None:
                lon, lat, source = photo.lon, photo.lat, PositionSource.PHOTO
            elif trip is not None and trip.last_lon is not None and trip.last_lat is not None:
                lon, lat, source = trip.last_lon, trip.last_lat, PositionSource.PHONE
            elif new.place:
                source = PositionSource.TEXT
            else:
                raise Invalid(
                    "location",
                    "a report needs a place: give lat and lon, or place (a photo's own "
                    "position counts too)",
                )
        user = await session.get(User, principal.user_id)
        if user is None:
            raise NotFound("no such user")
        stored = [await _put(evidence_store, f) for f in files]
        report = Report(
            status=store.ReportStatus.SUBMITTED.value,
            category=new.category.value,
            text=new.text,
            lon=lon,
            lat=lat,
            place=new.place,
            position_source=source,
            occurred_at=new.occurred_at or now,
            channel_id=channel_id,
            trip_id=trip.id if trip is not None else None,
            source="api",
            anonymous=new.anonymous,
            reporter_user_id=None if new.anonymous else user.id,
            reporter_name=None if new.anonymous else (user.display_name or user.name)[:200],
            reporter_contact=None if new.anonymous or not user.contact else user.contact[:100],
            first_at=now,
            last_message_at=now,
            created_at=now,
            updated_at=now,
        )
        session.add(report)
        await session.flush()
        folio = await store.assign_folio(session, report)
        for evidence, keys in zip(files, stored, strict=True):
            session.add(_media_row(report.id, evidence, keys, source_id=None, now=now))
        change = await raise_report_alert(session, report, now=now)
        await session.flush()
        return Submitted(report.id, folio, change.alert_id, change, source)


async def _put(evidence_store: EvidenceStore, evidence: Evidence) -> tuple[str, str | None]:
    """Store the original and the monitors' copy; their keys."""
    original = await evidence_store.put(evidence.data, content_type=evidence.media_type.mime)
    redacted_key = None
    if evidence.redacted is not None:
        if evidence.redacted is evidence.data:
            redacted_key = original.key
        else:
            copy = await evidence_store.put(
                evidence.redacted, content_type=evidence.media_type.mime
            )
            redacted_key = copy.key
    return original.key, redacted_key


def _media_row(
    report_id: int,
    evidence: Evidence,
    keys: tuple[str, str | None],
    *,
    source_id: str | None,
    now: datetime,
) -> ReportMedia:
    return ReportMedia(
        report_id=report_id,
        kind=evidence.media_type.kind.value,
        content_type=evidence.media_type.mime,
        size=evidence.size,
        sha256=evidence.sha256,
        storage_key=keys[0],
        redacted_key=keys[1],
        redacted_sha256=evidence.redacted_sha256,
        lon=evidence.position.lon if evidence.position else None,
        lat=evidence.position.lat if evidence.position else None,
        source_id=source_id,
        created_at=now,
    )


# -- what dispatchers do ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who made a report, as a reveal shows it."""

    anonymous: bool
    name: str | None
    contact: str | None
    user: str | None
    """Their login name, for a report filed through the API."""
    source: str


async def reveal(
    session: AsyncSession,
    who: store.ReportViewer,
    report_id: int,
    *,
    reason: str,
    now: datetime,
) -> Reporter:
    """Who made the report, for a dispatcher or admin it is routed to: a history row
    ``revealed`` (police only, not put on the queue) with the reason. The caller adds
    the audit row and commits."""
    report = await _workable(session, who, report_id)
    user = None
    if report.reporter_user_id is not None:
        user = await session.get(User, report.reporter_user_id)
    alert = await store.alert_of(session, report.id)
    if alert is not None:
        record_step(
            session,
            alert,
            Action.REVEALED,
            at=now,
            actor_id=who.principal.user_id,
            note=reason,
            police_only=True,
            outbox=False,
        )
    anonymous = report.anonymous or (
        report.reporter_name is None and report.reporter_contact is None and user is None
    )
    return Reporter(
        anonymous=anonymous,
        name=report.reporter_name,
        contact=report.reporter_contact,
        user=user.name if user is not None else None,
        source=report.source,
    )


async def _workable(
    session: AsyncSession, who: store.ReportViewer, report_id: int, *, lock: bool = False
) -> Report:
    """The report, for a dispatcher or admin it is routed to; :class:`NotFound` for one
    they may not see, :class:`Forbidden` for one they see but may not work (their own
    report, a monitor's channel)."""
    report = await store.visible_report(session, who, report_id, lock=lock)
    if not who.may_work(report):
        raise Forbidden("only the dispatchers the report is routed to, and admins, work it")
    return report


async def refer_fede(
    session: AsyncSession,
    who: store.ReportViewer,
    report_id: int,
    *,
    note: str | None,
    now: datetime,
) -> AlertChange:
    """Refer an electoral-crime report to FEDE Morelos: a step of its alert's history,
    put on the police queue. :class:`Conflict` for another category, or when it was
    referred already."""
    report = await _workable(session, who, report_id, lock=True)
    category = category_of(report)
    if not category.electoral_crime:
        raise Conflict(
            f"only electoral-crime categories are referred to FEDE; this report is {category.value}"
        )
    alert = await store.alert_of(session, report.id, lock=True)
    if alert is None:
        raise Conflict("the report has no alert")
    referred = await session.scalar(
        select(AlertHistory.id).where(
            AlertHistory.alert_id == alert.id, AlertHistory.action == Action.REFERRED_FEDE.value
        )
    )
    if referred is not None:
        raise Conflict("the report was referred to FEDE already")
    basis = category.legal_basis_es
    text = f"Turnado a la FEDE Morelos ({basis})" if basis else "Turnado a la FEDE Morelos"
    if note:
        text = f"{text}: {note}"
    alert.details = {**alert.details, "referred_fede_at": _iso(now)}
    alert.updated_at = now
    return record_step(
        session, alert, Action.REFERRED_FEDE, at=now, actor_id=who.principal.user_id, note=text
    )


_UNSET: Any = object()


async def change_report(
    session: AsyncSession,
    who: store.ReportViewer,
    report_id: int,
    *,
    now: datetime,
    category: ReportCategory | None = None,
    channel: str | None = _UNSET,
) -> list[AlertChange]:
    """Set or correct a report's category (its alert's severity becomes the category's)
    and/or route it to another channel (a name; ``None``: the general queue). Each
    change is a step of the alert's history, put on the queue."""
    report = await _workable(session, who, report_id, lock=True)
    alert = await store.alert_of(session, report.id, lock=True)
    actor = who.principal.user_id
    changes: list[AlertChange] = []
    if category is not None and category.value != report.category:
        before = category_of(report)
        report.category = category.value
        report.updated_at = now
        if alert is not None:
            alert.severity = int(category.severity)
            alert.details = {**alert.details, "category": category.value}
            alert.updated_at = now
            note = (
                f"categoría: {before.label_es} → {category.label_es} "
                f"(severidad {Severity(alert.severity).label_es})"
            )
            changes.append(
                record_step(session, alert, CATEGORY_CHANGED, at=now, actor_id=actor, note=note)
            )
    if channel is not _UNSET:
        target = None
        if channel is not None:
            target = await store.channel_by_name(session, channel)
            if target is None:
                raise Invalid("channel", "no such channel")
        new_id = target.id if target is not None else None
        if new_id != report.channel_id:
            report.channel_id = new_id
            report.updated_at = now
            if alert is not None:
                alert.updated_at = now
                note = f"canal: {target.name if target is not None else 'general'}"
                changes.append(
                    record_step(session, alert, CHANNEL_CHANGED, at=now, actor_id=actor, note=note)
                )
    return changes


# -- WhatsApp --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    phone_number_id: str
    to: str
    body: str


@dataclass
class InboxResult:
    """What one notification did."""

    taken: int = 0
    """Messages taken into reports."""
    duplicates: int = 0
    """Messages already taken (a replayed notification): skipped."""
    refused: int = 0
    """Media files refused (not stored; the person was told)."""
    reports: list[int] = field(default_factory=list)
    """Reports created or added to."""
    changes: list[AlertChange] = field(default_factory=list)
    replies_sent: int = 0


class _Locks:
    """One :class:`asyncio.Lock` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            yield


@dataclass(frozen=True, slots=True)
class _Fetched:
    evidence: Evidence | None = None
    refusal: str | None = None
    """The Spanish reply for a file that is not kept."""


class WhatsAppInbox:
    """Takes the messages of signed WhatsApp notifications into reports."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        evidence_store: EvidenceStore,
        graph: GraphClient,
        *,
        window_s: float,
    ) -> None:
        self.sessions = sessions
        self.evidence_store = evidence_store
        self.graph = graph
        self.window_s = window_s
        self._locks = _Locks()

    async def take(
        self,
        messages: Sequence[IncomingMessage],
        *,
        now: datetime,
        result: InboxResult | None = None,
    ) -> InboxResult:
        """Take ``messages`` (one notification's, in order). Messages already taken are
        skipped before any work. Each new one is committed in its own transaction, then
        answered. Raises :class:`GraphError` when a media file could not be fetched for a
        reason that may pass (the Graph API unreachable, 5xx, 429) and
        :class:`~sigueme.reports.storage.EvidenceStoreError`: the caller answers 5xx so
        that Meta sends the notification again; what was taken before stays taken and
        is skipped then. ``result`` (filled as messages are taken) tells, even then,
        what was committed."""
        result = result if result is not None else InboxResult()
        async with self.sessions() as session:
            seen = await store.seen_messages(session, [m.wamid for m in messages])
        for message in messages:
            if message.wamid in seen:
                result.duplicates += 1
                continue
            seen.add(message.wamid)
            replies = await self._take_one(message, now=now, result=result)
            for reply in replies:
                if await self._send(reply):
                    result.replies_sent += 1
        return result

    async def _fetch(self, message: IncomingMessage) -> _Fetched:
        ref = message.media
        if message.type not in MEDIA_TYPES or ref is None:
            return _Fetched()
        limit = MediaKind(message.type.value).max_bytes
        try:
            downloaded = await self.graph.fetch_media(ref.id, max_bytes=limit)
            if downloaded.sha256_matches is False:
                log.warning("whatsapp: a media download did not match its announced SHA-256")
                return _Fetched(refusal=REPLY_NOT_FETCHED)
            declared = downloaded.info.mime_type or ref.mime_type
            # Hashing and redacting up to 16 MiB: off the event loop.
            evidence = await asyncio.to_thread(
                accept_evidence, downloaded.data, declared, field="media"
            )
        except MediaRejected as exc:
            return _Fetched(refusal=reply_media_refused(exc.problem))
        except GraphError as exc:
            if exc.status is None or exc.status >= 500 or exc.status == 429:
                raise
            log.warning("whatsapp: media not fetched (Graph API %s)", exc.status)
            return _Fetched(refusal=REPLY_NOT_FETCHED)
        if evidence.media_type.kind.value != message.type.value:
            # An "image" message whose file is a video: keep it as what it is.
            log.info("whatsapp: a %s message held a %s", message.type, evidence.media_type.kind)
        return _Fetched(evidence=evidence)

    async def _take_one(
        self, message: IncomingMessage, *, now: datetime, result: InboxResult
    ) -> list[Reply]:
        fetched = await self._fetch(message)
        stored: tuple[str, str | None] | None = None
        if fetched.evidence is not None:
            stored = await _put(self.evidence_store, fetched.evidence)
        to = message.reply_to
        sender = store.sender_key(message.sender)
        change: AlertChange | None
        try:
            async with (
                self._locks.hold(f"{message.phone_number_id}|{sender}"),
                self.sessions() as session,
                session.begin(),
            ):
                await _lock_sender(session, message.phone_number_id, sender)
                if await session.get(ReportMessage, store.wamid_key(message.wamid)):
                    result.duplicates += 1
                    return []
                report = await self._open_report(session, message)
                if fetched.refusal is not None:
                    result.refused += 1
                    return [Reply(message.phone_number_id, to, fetched.refusal)]
                adds = message.type in (MessageType.TEXT, MessageType.LOCATION) or (
                    fetched.evidence is not None
                )
                if report is None and not adds:
                    return [Reply(message.phone_number_id, to, reply_unsupported())]
                if report is None:
                    report, change = await self._new_report(
                        session, message, fetched.evidence, stored, now=now
                    )
                    folio = report.folio or ""
                    replies = [reply_received(folio, window_s=self.window_s)]
                    if report.lon is None and report.place is None:
                        replies.append(reply_ask_location(folio))
                else:
                    change = await self._add(
                        session, report, message, fetched.evidence, stored, now=now
                    )
                    folio = report.folio or ""
                    replies = [reply_added(folio) if adds else reply_unsupported()]
                await session.flush()
        except IntegrityError:
            # The same message taken at the same moment by another worker.
            result.duplicates += 1
            return []
        result.taken += 1
        if report.id not in result.reports:
            result.reports.append(report.id)
        if change is not None:
            result.changes.append(change)
        return [Reply(message.phone_number_id, to, body) for body in replies]

    async def _open_report(self, session: AsyncSession, message: IncomingMessage) -> Report | None:
        """The sender's report this message joins, if any (grouping's rule, with the
        report's messages so far)."""
        report = await store.latest_whatsapp_report(
            session, message.phone_number_id, message.sender
        )
        if report is None:
            return None
        draft = DraftReport(
            phone_number_id=message.phone_number_id,
            sender=message.sender,
            reply_to=report.wa_reply_to or "",
            profile_name=report.reporter_name,
            first_at=int(report.first_at.timestamp()),
            last_at=int(report.last_message_at.timestamp()),
            message_ids=tuple(await store.message_ids(session, report.id)),
        )
        return None if starts_new_report(draft, message, window_s=self.window_s) else report

    async def _new_report(
        self,
        session: AsyncSession,
        message: IncomingMessage,
        evidence: Evidence | None,
        stored: tuple[str, str | None] | None,
        *,
        now: datetime,
    ) -> tuple[Report, AlertChange]:
        sent = message.sent_at
        report = Report(
            status=store.ReportStatus.SUBMITTED.value,
            category=ReportCategory.OTHER.value,
            text="",
            occurred_at=sent,
            source="whatsapp",
            anonymous=False,
            reporter_name=message.profile_name[:200] if message.profile_name else None,
            reporter_contact=(message.wa_id or message.user_id or "")[:100] or None,
            wa_phone_number_id=message.phone_number_id[:50],
            wa_sender=store.sender_key(message.sender),
            wa_reply_to=message.reply_to[:100] or None,
            first_at=sent,
            last_message_at=sent,
            created_at=now,
            updated_at=now,
        )
        _absorb(report, message, evidence)
        session.add(report)
        await session.flush()
        await store.assign_folio(session, report)
        self._record_message(session, report, message, evidence, stored, now=now)
        change = await raise_report_alert(session, report, now=now, note=_what(message))
        return report, change

    async def _add(
        self,
        session: AsyncSession,
        report: Report,
        message: IncomingMessage,
        evidence: Evidence | None,
        stored: tuple[str, str | None] | None,
        *,
        now: datetime,
    ) -> AlertChange | None:
        sent = message.sent_at
        report.first_at = min(report.first_at, sent)
        report.last_message_at = max(report.last_message_at, sent)
        report.updated_at = now
        if not report.reporter_name and message.profile_name:
            report.reporter_name = message.profile_name[:200]
        adds = _absorb(report, message, evidence)
        self._record_message(session, report, message, evidence, stored, now=now)
        if not adds:
            return None
        alert = await store.alert_of(session, report.id, lock=True)
        if alert is None:
            return None
        _place_alert(alert, report)
        alert.updated_at = now
        return record_step(session, alert, Action.REPEATED, at=now, note=_what(message))

    @staticmethod
    def _record_message(
        session: AsyncSession,
        report: Report,
        message: IncomingMessage,
        evidence: Evidence | None,
        stored: tuple[str, str | None] | None,
        *,
        now: datetime,
    ) -> None:
        session.add(
            ReportMessage(
                wamid=store.wamid_key(message.wamid),
                report_id=report.id,
                type=message.raw_type[:20],
                received_at=now,
            )
        )
        if evidence is not None and stored is not None:
            source_id = message.media.id[:200] if message.media is not None else None
            session.add(_media_row(report.id, evidence, stored, source_id=source_id, now=now))

    async def _send(self, reply: Reply) -> bool:
        if not reply.to:
            return False
        try:
            await self.graph.send_text(reply.phone_number_id, reply.to, reply.body)
        except (GraphError, ValueError) as exc:
            # Free-form replies reach a person only within 24 h of their last message;
            # the report is kept either way.
            log.warning("whatsapp: reply not sent: %s", exc)
            return False
        return True


def _absorb(report: Report, message: IncomingMessage, evidence: Evidence | None) -> bool:
    """Put what ``message`` says into ``report``; whether it added anything."""
    if message.type is MessageType.TEXT and message.text is not None:
        _append_text(report, message.text)
        return True
    if message.type is MessageType.LOCATION and message.location is not None:
        place = message.location
        if report.lon is None or report.position_source == PositionSource.PHOTO:
            report.lon, report.lat = place.lon, place.lat
            report.position_source = PositionSource.WHATSAPP
            named = ", ".join(p for p in (place.name, place.address) if p)
            report.place = named[:MAX_PLACE] or report.place
        return True
    if evidence is not None:
        if message.caption:
            _append_text(report, message.caption)
        if report.lon is None and evidence.position is not None:
            report.lon, report.lat = evidence.position.lon, evidence.position.lat
            report.position_source = PositionSource.PHOTO
        return True
    return False


def _append_text(report: Report, text: str) -> None:
    text = text.strip()
    if not text:
        return
    joined = f"{report.text}\n\n{text}" if report.text else text
    if len(joined) <= MAX_REPORT_TEXT:
        report.text = joined


_WHAT_ES = {
    MessageType.TEXT: "mensaje de texto",
    MessageType.LOCATION: "ubicación",
    MessageType.IMAGE: "foto",
    MessageType.AUDIO: "audio",
    MessageType.VIDEO: "video",
}


def _what(message: IncomingMessage) -> str:
    return f"WhatsApp: {_WHAT_ES.get(message.type, message.raw_type)}"


async def _lock_sender(session: AsyncSession, phone_number_id: str, sender: str) -> None:
    """On PostgreSQL, hold a transaction-scoped advisory lock on the sender, so workers
    take one person's messages one at a time (SQLite is one process: the in-process lock
    does it)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    digest = hashlib.sha256(f"whatsapp|{phone_number_id}|{sender}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()
