"""How one person's WhatsApp messages become reports, the folio a report is known by,
and the replies the reporter reads.

People report the way they chat: a few lines of text, then a location, then a photo or a
voice note. Messages from the same person that follow each other within a window
(:data:`DEFAULT_WINDOW_S`, counted from their previous message) form one draft report;
a message after a longer pause starts a new one. Pure functions over plain values: the
caller keeps each sender's open draft and persists what these return.

The replies are in Spanish (es-MX), short and calm, and promise what the service keeps:
the reporter's identity is protected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from sigueme.reports.media import MediaProblem
from sigueme.reports.whatsapp import (
    MEDIA_TYPES,
    IncomingMessage,
    Location,
    MediaRef,
    MessageType,
)

DEFAULT_WINDOW_S = 300
"""Messages less than five minutes after the previous one join the same report."""
MAX_MESSAGES = 50
"""A draft takes no more messages than this; the next one starts a new report."""
MORELOS = ZoneInfo("America/Mexico_City")


@dataclass(frozen=True, slots=True)
class MediaPart:
    """A media file a draft holds, still to be fetched from the Graph API."""

    wamid: str
    type: MessageType
    ref: MediaRef


@dataclass(frozen=True, slots=True)
class DraftReport:
    """A report as one person's messages have built it so far."""

    phone_number_id: str
    """The business number the messages came to (replies go out from it)."""
    sender: str
    """:attr:`IncomingMessage.sender` of every message in it."""
    reply_to: str
    profile_name: str | None
    first_at: int
    """Epoch seconds of the earliest message."""
    last_at: int
    """Epoch seconds of the latest message: the window runs from here."""
    message_ids: tuple[str, ...]
    """The wamids taken, in the order they were added."""
    texts: tuple[str, ...] = ()
    """Text messages and captions, in order."""
    location: Location | None = None
    """The first location shared."""
    media: tuple[MediaPart, ...] = ()
    skipped: tuple[str, ...] = ()
    """Types of the messages that added nothing (stickers, documents, reactions, ...)."""

    @property
    def text(self) -> str:
        """What happened, as the reporter wrote it: the text parts, one paragraph each."""
        return "\n\n".join(self.texts)


def _joins(draft: DraftReport, message: IncomingMessage, window_s: float) -> bool:
    if (draft.phone_number_id, draft.sender) != (message.phone_number_id, message.sender):
        return False
    if message.wamid in draft.message_ids:
        return True
    if len(draft.message_ids) >= MAX_MESSAGES:
        return False
    # A late delivery of an earlier message joins the draft its time falls in.
    return draft.first_at - window_s <= message.timestamp <= draft.last_at + window_s


def starts_new_report(
    draft: DraftReport | None, message: IncomingMessage, *, window_s: float = DEFAULT_WINDOW_S
) -> bool:
    """Whether ``message`` starts a new report rather than joining ``draft`` (the sender's
    latest draft, if any)."""
    return draft is None or not _joins(draft, message, window_s)


def add_message(
    draft: DraftReport | None, message: IncomingMessage, *, window_s: float = DEFAULT_WINDOW_S
) -> tuple[DraftReport, bool]:
    """``message`` added to ``draft``, or a new draft holding only ``message``; and
    whether it is new (the previous draft, if any, is then complete). A message already
    in the draft (a resent notification) changes nothing."""
    if draft is None or not _joins(draft, message, window_s):
        empty = DraftReport(
            phone_number_id=message.phone_number_id,
            sender=message.sender,
            reply_to=message.reply_to,
            profile_name=message.profile_name,
            first_at=message.timestamp,
            last_at=message.timestamp,
            message_ids=(),
        )
        return _with(empty, message), True
    if message.wamid in draft.message_ids:
        return draft, False
    return _with(draft, message), False


def _with(draft: DraftReport, message: IncomingMessage) -> DraftReport:
    texts = draft.texts
    body = message.text if message.type is MessageType.TEXT else message.caption
    if body is not None and body.strip():
        texts = (*texts, body.strip())
    location = draft.location
    if message.type is MessageType.LOCATION and location is None:
        location = message.location
    media = draft.media
    skipped = draft.skipped
    if message.type in MEDIA_TYPES and message.media is not None:
        media = (*media, MediaPart(message.wamid, message.type, message.media))
    elif message.type not in (MessageType.TEXT, MessageType.LOCATION):
        skipped = (*skipped, message.raw_type)
    return replace(
        draft,
        reply_to=draft.reply_to or message.reply_to,
        profile_name=draft.profile_name or message.profile_name,
        first_at=min(draft.first_at, message.timestamp),
        last_at=max(draft.last_at, message.timestamp),
        message_ids=(*draft.message_ids, message.wamid),
        texts=texts,
        location=location,
        media=media,
        skipped=skipped,
    )


def group_messages(
    messages: Iterable[IncomingMessage], *, window_s: float = DEFAULT_WINDOW_S
) -> list[DraftReport]:
    """All ``messages`` grouped into draft reports: per sender, in time order, each message
    joining the previous one's draft when it came within ``window_s`` of it. Repeated
    wamids count once. The result is ordered by first message time, then sender; the
    same messages in any order give the same drafts."""
    unique = {m.wamid: m for m in sorted(messages, key=lambda m: (m.timestamp, m.wamid))}
    ordered = sorted(
        unique.values(), key=lambda m: (m.phone_number_id, m.sender, m.timestamp, m.wamid)
    )
    drafts: list[DraftReport] = []
    current: DraftReport | None = None
    for message in ordered:
        current, started = add_message(current, message, window_s=window_s)
        if started:
            drafts.append(current)
        else:
            drafts[-1] = current
    return sorted(drafts, key=lambda d: (d.first_at, d.phone_number_id, d.sender))


# -- folios -------------------------------------------------------------------------------

FOLIO_PREFIX = "SC"
_FOLIO = re.compile(r"^SC-(\d{4})-(\d{6,})$")


def format_folio(year: int, number: int) -> str:
    """``SC-2026-000123``: the channel (SeguriChat), the year, and the report's number
    within that year, at least six digits."""
    if not 2000 <= year <= 9999 or number < 1:
        raise ValueError("a folio needs a year from 2000 and a number from 1")
    return f"{FOLIO_PREFIX}-{year:04d}-{number:06d}"


def parse_folio(folio: str) -> tuple[int, int]:
    """``(year, number)`` of a folio, or :class:`ValueError`."""
    match = _FOLIO.match(folio.strip().upper())
    if match is None:
        raise ValueError("not a folio (SC-AAAA-NNNNNN)")
    year, number = int(match.group(1)), int(match.group(2))
    if year < 2000 or number < 1:
        raise ValueError("not a folio (SC-AAAA-NNNNNN)")
    return year, number


def folio_year(timestamp: float) -> int:
    """The year a report received at ``timestamp`` (epoch seconds) is numbered in: the
    year in Morelos, not in UTC."""
    return datetime.fromtimestamp(timestamp, tz=MORELOS).year


# -- replies (es-MX) -----------------------------------------------------------------------


def _minutes(window_s: float) -> str:
    minutes = max(1, round(window_s / 60))
    return "1 minuto" if minutes == 1 else f"{minutes} minutos"


def reply_received(folio: str, *, window_s: float = DEFAULT_WINDOW_S) -> str:
    """The answer to the first message of a report."""
    return (
        f"Recibimos tu reporte. Folio: {folio}. Cuidamos siempre tu identidad.\n"
        f"En los próximos {_minutes(window_s)} puedes enviar más detalles, fotos, audios, "
        "videos o tu ubicación y los sumaremos a este reporte.\n"
        "Si tú o alguien más está en peligro ahora, llama al 911."
    )


def reply_added(folio: str) -> str:
    """The answer to a message that joined an open report."""
    return f"Agregamos tu mensaje al reporte {folio}. Gracias."


def reply_ask_location(folio: str) -> str:
    """A request for the place, for a report that has none."""
    return (
        f"Para atender tu reporte {folio} nos ayuda saber dónde ocurrió. Si puedes, comparte "
        "la ubicación (📎 > Ubicación) o escríbenos el lugar: colonia, calle o referencia."
    )


def reply_media_refused(problem: MediaProblem) -> str:
    """The answer to a photo, audio or video that could not be kept."""
    return (
        f"No pudimos recibir tu archivo: {problem.reason_es}. "
        "Tu reporte sigue abierto; puedes enviarlo de nuevo."
    )


def reply_unsupported() -> str:
    """The answer to a sticker, document, contact card or other message we cannot take."""
    return (
        "Por ahora solo recibimos texto, ubicación, fotos, audios y videos. "
        "Cuéntanos qué pasó con esos medios, por favor."
    )
