"""Reports (SeguriChat) in the database: channels and their members, who may see which
report, the WhatsApp messages already taken, folios, and retention.

Who sees a report (and its alert in the dispatchers' queue):

- admins: every report;
- dispatchers: the reports of the channels they are members of, and the reports with no
  channel (the general queue);
- monitors: the reports of the channels they are members of, read-only, never who made
  them, and only the copies of evidence files without location metadata;
- whoever filed a report through the API (not anonymously) sees it too.

Anyone else gets 404, exactly as for a report that does not exist.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, false, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sigueme.access import LIVE_ALERT_STATUSES, Principal
from sigueme.alerts.kinds import AlertKind
from sigueme.errors import Conflict, Invalid, NotFound
from sigueme.reports.grouping import folio_year, format_folio
from sigueme.reports.storage import EvidenceStore, LocalEvidenceStore, S3EvidenceStore
from sigueme.settings import Settings
from sigueme.store.models import (
    Alert,
    Report,
    ReportChannel,
    ReportChannelMember,
    ReportMedia,
    ReportMessage,
    Role,
    User,
)


class ChannelKind(enum.StrEnum):
    """What a channel gathers (the successors of SeguriChat's WhatsApp groups)."""

    MUNICIPALITY = "municipality"
    PARTY = "party"
    OFFICIALS = "officials"
    """INE, FEDE Morelos and IMPEPAC officials."""
    OTHER = "other"


class ReportStatus(enum.StrEnum):
    SUBMITTED = "submitted"
    """In the police queue (a WhatsApp report from its first message on)."""
    PURGED = "purged"
    """Past retention: its content, place, reporter and evidence were deleted; the folio,
    category and its alert's history remain."""


MEMBER_ROLES = frozenset({Role.DISPATCHER, Role.MONITOR, Role.ADMIN})
"""Who may be a channel member (channels decide what dispatchers and monitors see)."""


# -- channels --------------------------------------------------------------------------------


async def create_channel(
    session: AsyncSession, *, name: str, kind: ChannelKind, description: str | None
) -> ReportChannel:
    """A new channel; :class:`Conflict` when the name is taken."""
    channel = ReportChannel(name=name, kind=kind.value, description=description)
    try:
        async with session.begin_nested():
            session.add(channel)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a channel named {name!r} exists already") from None
    return channel


async def get_channel(session: AsyncSession, channel_id: int) -> ReportChannel:
    channel = await session.get(ReportChannel, channel_id)
    if channel is None:
        raise NotFound("no such channel")
    return channel


async def channel_by_name(session: AsyncSession, name: str) -> ReportChannel | None:
    return await session.scalar(select(ReportChannel).where(ReportChannel.name == name))


async def list_channels(
    session: AsyncSession, *, member_id: int | None = None
) -> Sequence[ReportChannel]:
    """Every channel by name, or those ``member_id`` belongs to."""
    query = select(ReportChannel).order_by(ReportChannel.name)
    if member_id is not None:
        query = query.join(
            ReportChannelMember, ReportChannelMember.channel_id == ReportChannel.id
        ).where(ReportChannelMember.user_id == member_id)
    return (await session.scalars(query)).all()


async def members_of(session: AsyncSession, channel_ids: Iterable[int]) -> dict[int, list[str]]:
    """The login names of each channel's members, sorted."""
    ids = list(channel_ids)
    out: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = await session.execute(
        select(ReportChannelMember.channel_id, User.name)
        .join(User, User.id == ReportChannelMember.user_id)
        .where(ReportChannelMember.channel_id.in_(ids))
        .order_by(User.name)
    )
    for channel_id, name in rows.all():
        out[channel_id].append(name)
    return out


async def add_member(session: AsyncSession, channel: ReportChannel, user: User) -> bool:
    """Make ``user`` a member of ``channel``; whether they were not one already.
    :class:`Invalid` for a traveller (channels route reports to dispatchers and
    monitors)."""
    if user.role not in MEMBER_ROLES:
        raise Invalid("user", "only dispatchers, monitors and admins are channel members")
    existing = await session.get(ReportChannelMember, (channel.id, user.id))
    if existing is not None:
        return False
    try:
        async with session.begin_nested():
            session.add(ReportChannelMember(channel_id=channel.id, user_id=user.id))
            await session.flush()
    except IntegrityError:
        return False  # added at the same moment by someone else
    return True


async def remove_member(session: AsyncSession, channel: ReportChannel, user: User) -> bool:
    """Whether ``user`` was a member of ``channel`` (and no longer is)."""
    result = await session.execute(
        delete(ReportChannelMember).where(
            ReportChannelMember.channel_id == channel.id, ReportChannelMember.user_id == user.id
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def channel_ids_of(session: AsyncSession, user_id: int) -> frozenset[int]:
    rows = await session.scalars(
        select(ReportChannelMember.channel_id).where(ReportChannelMember.user_id == user_id)
    )
    return frozenset(rows.all())


# -- who sees which report -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportViewer:
    """What the rules need to know about a caller: who they are and their channels."""

    principal: Principal
    channel_ids: frozenset[int]

    @property
    def police(self) -> bool:
        """Dispatchers and admins: they work reports (their alerts, evidence originals,
        reveal, FEDE)."""
        return self.principal.role in (Role.DISPATCHER, Role.ADMIN)

    def routed(self, channel_id: int | None) -> bool:
        """Whether a report in ``channel_id`` is routed to this caller's role and channels
        (not counting reports they made themselves)."""
        role = self.principal.role
        if self.principal.is_link:
            return False
        if role == Role.ADMIN:
            return True
        if role == Role.DISPATCHER:
            return channel_id is None or channel_id in self.channel_ids
        if role == Role.MONITOR:
            return channel_id is not None and channel_id in self.channel_ids
        return False

    def may_see(self, report: Report) -> bool:
        if self.principal.is_link:
            return False
        if self.routed(report.channel_id):
            return True
        return (
            report.reporter_user_id is not None
            and report.reporter_user_id == self.principal.user_id
        )

    def may_work(self, report: Report) -> bool:
        """Dispatchers and admins the report is routed to: they act on it."""
        return self.police and self.routed(report.channel_id)

    def routed_clause(self) -> ColumnElement[bool]:
        """:meth:`routed` as a condition on :class:`Report`."""
        role = self.principal.role
        if self.principal.is_link:
            return false()
        if role == Role.ADMIN:
            return true()
        member = Report.channel_id.in_(sorted(self.channel_ids))
        if role == Role.DISPATCHER:
            return (
                or_(Report.channel_id.is_(None), member)
                if self.channel_ids
                else (Report.channel_id.is_(None))
            )
        if role == Role.MONITOR and self.channel_ids:
            return member
        return false()

    def clause(self) -> ColumnElement[bool]:
        """:meth:`may_see` as a condition on :class:`Report`."""
        if self.principal.is_link or self.principal.user_id is None:
            return false()
        return or_(self.routed_clause(), Report.reporter_user_id == self.principal.user_id)


async def viewer(session: AsyncSession, principal: Principal) -> ReportViewer:
    """The caller with their channels."""
    if principal.user_id is None:
        return ReportViewer(principal, frozenset())
    return ReportViewer(principal, await channel_ids_of(session, principal.user_id))


async def visible_report(
    session: AsyncSession, who: ReportViewer, report_id: int, *, lock: bool = False
) -> Report:
    """The report, or :class:`NotFound` when there is none or ``who`` may not see it."""
    query = select(Report).where(Report.id == report_id)
    if lock:
        query = query.with_for_update()
    report = await session.scalar(query)
    if report is None or not who.may_see(report):
        raise NotFound("no such report")
    return report


def report_alerts_clause(who: ReportViewer) -> ColumnElement[bool]:
    """A condition on :class:`Alert`: trip alerts, and the report alerts ``who`` is
    routed to (the dispatchers' queue)."""
    if who.principal.role == Role.ADMIN:
        return true()
    routed = select(Report.id).where(who.routed_clause())
    return or_(Alert.kind != AlertKind.REPORT.value, Alert.report_id.in_(routed.scalar_subquery()))


async def may_see_alert(session: AsyncSession, who: ReportViewer, alert: Alert) -> bool:
    """Whether ``who`` (a dispatcher or admin) may see ``alert`` in the queue: any trip
    alert, a report's alert only when the report is routed to them."""
    if alert.kind != AlertKind.REPORT.value or who.principal.role == Role.ADMIN:
        return True
    if alert.report_id is None:
        return False
    report = await session.get(Report, alert.report_id)
    return report is not None and who.routed(report.channel_id)


async def alert_of(session: AsyncSession, report_id: int, *, lock: bool = False) -> Alert | None:
    """The report's alert (kind ``report``; one per report)."""
    query = (
        select(Alert)
        .where(Alert.report_id == report_id, Alert.kind == AlertKind.REPORT.value)
        .order_by(Alert.opened_at.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update()
    return await session.scalar(query)


# -- WhatsApp --------------------------------------------------------------------------------

WAMID_MAX = 200
SENDER_MAX = 100


def wamid_key(wamid: str) -> str:
    """The key a message is stored under: its wamid, or a digest of a longer one."""
    if len(wamid) <= WAMID_MAX:
        return wamid
    return "sha256:" + hashlib.sha256(wamid.encode()).hexdigest()


def sender_key(sender: str) -> str:
    """A sender key that fits its column (the same for the same sender)."""
    if len(sender) <= SENDER_MAX:
        return sender
    return "sha256:" + hashlib.sha256(sender.encode()).hexdigest()


async def seen_messages(session: AsyncSession, wamids: Iterable[str]) -> set[str]:
    """Which of ``wamids`` are already in a report (a replayed notification)."""
    keys = {wamid_key(w): w for w in wamids}
    if not keys:
        return set()
    rows = await session.scalars(
        select(ReportMessage.wamid).where(ReportMessage.wamid.in_(list(keys)))
    )
    return {keys[k] for k in rows.all()}


async def latest_whatsapp_report(
    session: AsyncSession, phone_number_id: str, sender: str
) -> Report | None:
    """The sender's most recent report to that business number, with a live alert."""
    return await session.scalar(
        select(Report)
        .join(Alert, Alert.report_id == Report.id)
        .where(
            Report.source == "whatsapp",
            Report.wa_phone_number_id == phone_number_id[:50],
            Report.wa_sender == sender_key(sender),
            Report.status == ReportStatus.SUBMITTED.value,
            Alert.kind == AlertKind.REPORT.value,
            Alert.status.in_(LIVE_ALERT_STATUSES),
        )
        .order_by(Report.last_message_at.desc(), Report.id.desc())
        .limit(1)
        .with_for_update(of=Report)
    )


async def message_ids(session: AsyncSession, report_id: int) -> list[str]:
    rows = await session.scalars(
        select(ReportMessage.wamid)
        .where(ReportMessage.report_id == report_id)
        .order_by(ReportMessage.received_at, ReportMessage.wamid)
    )
    return list(rows.all())


async def assign_folio(session: AsyncSession, report: Report) -> str:
    """Give a new report (flushed, so its id is known) its folio: ``SC-<year>-<id>``,
    the year in Morelos when it was first received. The number is the report's id, so it
    is unique without a counter to lock (it does not restart each year)."""
    if report.id is None:
        await session.flush()
    report.folio = format_folio(folio_year(report.first_at.timestamp()), report.id)
    return report.folio


# -- evidence --------------------------------------------------------------------------------


def evidence_store_for(settings: Settings) -> EvidenceStore:
    """The evidence store the settings name: the S3-compatible bucket when
    ``SIGUEME_S3_BUCKET`` is set, else files under ``SIGUEME_EVIDENCE_DIR``."""
    if settings.s3_bucket:
        return S3EvidenceStore(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint or None,
            access_key=settings.s3_access_key.get_secret_value()
            if settings.s3_access_key
            else None,
            secret_key=settings.s3_secret_key.get_secret_value()
            if settings.s3_secret_key
            else None,
            region=settings.s3_region,
        )
    return LocalEvidenceStore(settings.evidence_dir)


async def unreferenced(session: AsyncSession, keys: Iterable[str]) -> list[str]:
    """Those of ``keys`` no evidence row refers to any more (content-addressed: two
    reports may hold the same file)."""
    wanted = sorted(set(keys))
    if not wanted:
        return []
    used: set[str] = set()
    for column in (ReportMedia.storage_key, ReportMedia.redacted_key):
        rows = await session.scalars(select(column).where(column.in_(wanted)))
        used.update(k for k in rows.all() if k is not None)
    return [k for k in wanted if k not in used]


# -- retention -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportPurge:
    """What :func:`purge_reports` did. Counts and storage keys only: no personal data."""

    reports: int
    """Reports whose content was deleted."""
    media: int
    """Evidence rows deleted."""
    orphan_keys: tuple[str, ...]
    """Stored objects no report refers to any more: delete them from the evidence store
    after the transaction commits."""
    kept_live: int
    """Reports older than the cutoff kept because their alert is still live."""


async def purge_reports(
    session: AsyncSession, cutoff: datetime, *, limit: int = 500
) -> ReportPurge:
    """Forget what reports last touched before ``cutoff`` hold, as location history is
    forgotten (ARCHITECTURE.md, promise 6): their text, place, position, reporter, the
    WhatsApp messages' ids and their evidence rows. Reports whose alert is still live
    (open, acknowledged, dispatched) keep everything: evidence is kept while the report
    is open. The report row (folio, category, channel, times) and its alert with its
    history stay, as alerts stay after their trip's fixes are purged.

    At most ``limit`` reports per call, in the caller's transaction; the caller commits,
    then deletes :attr:`ReportPurge.orphan_keys` from the evidence store."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    live = (
        select(Alert.id)
        .where(
            Alert.report_id == Report.id,
            Alert.status.in_(LIVE_ALERT_STATUSES),
        )
        .exists()
    )
    old = (
        (Report.last_message_at < cutoff)
        & (Report.updated_at < cutoff)
        & (Report.status != ReportStatus.PURGED.value)
    )
    ids = list(
        (
            await session.scalars(
                select(Report.id).where(old, ~live).order_by(Report.id).limit(limit)
            )
        ).all()
    )
    kept = len((await session.scalars(select(Report.id).where(old, live))).all())
    if not ids:
        return ReportPurge(0, 0, (), kept)
    media = (
        await session.execute(
            select(ReportMedia.storage_key, ReportMedia.redacted_key).where(
                ReportMedia.report_id.in_(ids)
            )
        )
    ).all()
    keys = {k for row in media for k in row if k is not None}
    await session.execute(delete(ReportMedia).where(ReportMedia.report_id.in_(ids)))
    await session.execute(delete(ReportMessage).where(ReportMessage.report_id.in_(ids)))
    await session.execute(
        update(Report)
        .where(Report.id.in_(ids))
        .values(
            status=ReportStatus.PURGED.value,
            text="",
            lon=None,
            lat=None,
            place=None,
            position_source=None,
            reporter_user_id=None,
            reporter_name=None,
            reporter_contact=None,
            wa_sender=None,
            wa_reply_to=None,
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        update(Alert)
        .where(Alert.report_id.in_(ids))
        .values(lon=None, lat=None, accuracy=None)
        .execution_options(synchronize_session=False)
    )
    orphans = await unreferenced(session, keys)
    return ReportPurge(len(ids), len(media), tuple(orphans), kept)


async def purge_report_evidence(
    engine: AsyncEngine, store: EvidenceStore, cutoff: datetime, *, limit: int = 500
) -> ReportPurge:
    """:func:`purge_reports` in batches of ``limit``, each committed, then the evidence
    files no report refers to any more deleted from ``store``; the totals."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    reports = media = kept = 0
    orphans: list[str] = []
    while True:
        async with sessions() as session, session.begin():
            result = await purge_reports(session, cutoff, limit=limit)
        reports += result.reports
        media += result.media
        kept = result.kept_live
        for key in result.orphan_keys:
            # Checked again: a new report may have brought the same file meanwhile.
            async with sessions() as session:
                if not await unreferenced(session, [key]):
                    continue
            await store.delete(key)
            orphans.append(key)
        if result.reports < limit:
            return ReportPurge(reports, media, tuple(orphans), kept)
