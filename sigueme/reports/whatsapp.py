"""Meta's WhatsApp Business Cloud API: the webhook that brings reporters' messages in,
and the Graph API calls that fetch their media and answer them.

- :func:`verify_challenge`: the ``GET`` handshake Meta makes when the webhook is
  registered.
- :func:`verify_signature`: every notification is signed, ``X-Hub-Signature-256:
  sha256=<hex>``, the HMAC-SHA256 of the raw request body keyed with the app secret.
- :func:`parse_notification`: a notification's messages as :class:`IncomingMessage`
  values (delivery receipts and other fields are skipped; message types this service does
  not take come back as :attr:`MessageType.UNSUPPORTED`).
- :class:`GraphClient`: media look-up and download (streamed, with a size cap), and text
  replies.

Registering the real webhook (Meta's App Dashboard → WhatsApp → Configuration): the
callback URL is the service's public HTTPS webhook URL, the verify token is the one the
service is configured with; subscribe to the ``messages`` field. The app secret (App
settings → Basic) signs the notifications; a system user's access token with the
``whatsapp_business_messaging`` permission authorises the Graph calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from sigueme.errors import Invalid, SiguemeError
from sigueme.reports.media import MediaProblem, MediaRejected

SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_NOTIFICATION_BYTES = 1024 * 1024
"""The largest webhook body read (Meta's notifications are a few kilobytes)."""
MAX_TEXT = 16_384
"""The longest free text read from a message (WhatsApp's own limit is 4,096)."""
MAX_REPLY = 4096
"""The longest text reply the Cloud API sends."""
MIN_TIMESTAMP = int(datetime(2015, 1, 1, tzinfo=UTC).timestamp())
MAX_TIMESTAMP = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
MAX_FUTURE_S = 3600
"""How far ahead of the server's clock a message's time may be (with ``now`` given)."""

_MAX_ID = 256
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")
_GRAPH_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_VERSION = re.compile(r"^v?(\d{1,3}(?:\.\d{1,3})?)$")


# -- the webhook's handshake and signature ------------------------------------------------


def verify_challenge(params: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to echo back (HTTP 200, text) when ``params`` are Meta's
    subscription handshake with ``verify_token``; ``None`` (answer 403) otherwise. An
    empty configured token never verifies."""
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    given = params.get("hub.verify_token")
    challenge = params.get("hub.challenge")
    if not isinstance(given, str) or not isinstance(challenge, str):
        return None
    if not hmac.compare_digest(given.encode("utf-8", "replace"), verify_token.encode("utf-8")):
        return None
    return challenge if _CHALLENGE.match(challenge) else None


def _secret_bytes(app_secret: str | bytes) -> bytes:
    return app_secret.encode("utf-8") if isinstance(app_secret, str) else app_secret


def sign(app_secret: str | bytes, raw_body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``raw_body``."""
    digest = hmac.new(_secret_bytes(app_secret), raw_body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(app_secret: str | bytes, raw_body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of exactly ``raw_body`` under ``app_secret``:
    ``sha256=`` and 64 hex digits, compared in constant time. A missing or malformed
    header, or an empty secret, never verifies."""
    if not app_secret or not isinstance(header, str):
        return False
    match = _SIGNATURE.match(header.strip())
    if match is None:
        return False
    expected = hmac.new(_secret_bytes(app_secret), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, match.group(1).lower())


# -- notifications ------------------------------------------------------------------------


class NotificationError(Invalid):
    """A webhook body that is not a notification this service can read: ``field`` is the
    path of the offending part (``entry[0].changes[0].value.messages[1].timestamp``),
    ``reason`` what is wrong. The message never quotes the value."""


class MessageType(StrEnum):
    TEXT = "text"
    LOCATION = "location"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    UNSUPPORTED = "unsupported"
    """Anything else (stickers, reactions, contacts, polls, ...): see ``raw_type``."""


MEDIA_TYPES = frozenset({MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO})
"""The message types whose media a report keeps as evidence."""


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float
    name: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A media file a message refers to, to be fetched with :meth:`GraphClient.fetch_media`."""

    id: str
    mime_type: str | None = None
    sha256: str | None = None
    voice: bool = False
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One message a person sent to the commission's number."""

    wamid: str
    """WhatsApp's id of the message: resent notifications carry the same one."""
    timestamp: int
    """When WhatsApp received it, UTC epoch seconds."""
    type: MessageType
    raw_type: str
    """The ``type`` as Meta sent it (``sticker`` for an unsupported sticker)."""
    phone_number_id: str
    """The business number it was sent to (replies go out from it)."""
    wa_id: str | None
    """The sender's phone number (``from``); ``None`` when they hide it."""
    user_id: str | None
    """The sender's business-scoped user id (BSUID), when Meta sends one."""
    profile_name: str | None = None
    text: str | None = None
    """A text message's body."""
    caption: str | None = None
    """A media message's caption."""
    location: Location | None = None
    media: MediaRef | None = None

    @property
    def sender(self) -> str:
        """A stable key for the person: their BSUID when Meta sends one (it survives their
        hiding their number), else their number."""
        if self.user_id:
            return f"user:{self.user_id}"
        return f"wa:{self.wa_id}"

    @property
    def reply_to(self) -> str:
        """Who a reply is addressed to: their number, else their BSUID."""
        return self.wa_id or self.user_id or ""

    @property
    def sent_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp, tz=UTC)


def _fail(field: str, reason: str) -> NotificationError:
    return NotificationError(field, reason)


def _obj(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(field, "must be an object")
    return value


def _list(value: object, field: str, *, max_len: int = 1000) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(field, "must be a list")
    if len(value) > max_len:
        raise _fail(field, f"has more than {max_len} items")
    return value


def _ident(value: object, field: str) -> str:
    """An identifier: a short, non-empty string of printable characters."""
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise _fail(field, f"must be a non-empty string of at most {_MAX_ID} characters")
    if not value.isprintable():
        raise _fail(field, "must hold printable characters only")
    return value


def _opt_ident(value: object, field: str) -> str | None:
    return None if value is None else _ident(value, field)


def _text(value: object, field: str, *, max_len: int = MAX_TEXT) -> str:
    """Free text: a string, made safe to store (no NUL, no lone surrogates)."""
    if not isinstance(value, str):
        raise _fail(field, "must be a string")
    if len(value) > max_len:
        raise _fail(field, f"is longer than {max_len} characters")
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _opt_text(value: object, field: str, *, max_len: int = MAX_TEXT) -> str | None:
    return None if value is None else _text(value, field, max_len=max_len)


def _timestamp(value: object, field: str, now: float | None) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        seconds = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    else:
        raise _fail(field, "must be epoch seconds as a string of digits")
    if not MIN_TIMESTAMP <= seconds < MAX_TIMESTAMP:
        raise _fail(field, "is not a plausible time")
    if now is not None and seconds > now + MAX_FUTURE_S:
        raise _fail(field, "is in the future")
    return seconds


def _degrees(value: object, field: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, "must be a number")
    degrees = float(value)
    if not math.isfinite(degrees) or not -limit <= degrees <= limit:
        raise _fail(field, f"must be between -{limit:g} and {limit:g}")
    return degrees


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def parse_notification(raw_body: bytes, *, now: float | None = None) -> list[IncomingMessage]:
    """The messages in one webhook notification, in the order Meta sent them.

    Changes of fields other than ``messages`` and delivery receipts (``statuses``) give
    no messages. With ``now`` (epoch seconds) a message dated more than
    :data:`MAX_FUTURE_S` ahead is refused. Raises :class:`NotificationError` for
    anything that is not a well-formed notification, and nothing else.
    """
    if len(raw_body) > MAX_NOTIFICATION_BYTES:
        raise _fail("body", f"is larger than {MAX_NOTIFICATION_BYTES} bytes")
    try:
        document = json.loads(raw_body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _fail("body", "is not JSON in UTF-8") from None
    root = _obj(document, "body")
    if root.get("object") != "whatsapp_business_account":
        raise _fail("object", "must be whatsapp_business_account")
    messages: list[IncomingMessage] = []
    for e, entry in enumerate(_list(root.get("entry"), "entry")):
        where = f"entry[{e}]"
        changes = _obj(entry, where).get("changes", [])
        for c, change in enumerate(_list(changes, f"{where}.changes")):
            at = f"{where}.changes[{c}]"
            change = _obj(change, at)
            if change.get("field") != "messages":
                continue
            messages.extend(
                _parse_value(_obj(change.get("value"), f"{at}.value"), f"{at}.value", now)
            )
    return messages


def _parse_value(value: dict[str, Any], at: str, now: float | None) -> list[IncomingMessage]:
    raw_messages = value.get("messages")
    if raw_messages is None:
        return []  # statuses (delivery receipts), errors: nothing a reporter sent
    if value.get("messaging_product", "whatsapp") != "whatsapp":
        raise _fail(f"{at}.messaging_product", "must be whatsapp")
    metadata = _obj(value.get("metadata"), f"{at}.metadata")
    phone_number_id = _ident(metadata.get("phone_number_id"), f"{at}.metadata.phone_number_id")
    contacts: list[tuple[str | None, str | None, str | None]] = []
    for k, contact in enumerate(_list(value.get("contacts", []), f"{at}.contacts")):
        where = f"{at}.contacts[{k}]"
        contact = _obj(contact, where)
        profile = _obj(contact.get("profile", {}), f"{where}.profile")
        contacts.append(
            (
                _opt_ident(contact.get("wa_id"), f"{where}.wa_id"),
                _opt_ident(contact.get("user_id"), f"{where}.user_id"),
                _opt_text(profile.get("name"), f"{where}.profile.name", max_len=256),
            )
        )
    parsed = []
    for m, raw in enumerate(_list(raw_messages, f"{at}.messages")):
        where = f"{at}.messages[{m}]"
        parsed.append(_parse_message(_obj(raw, where), where, phone_number_id, contacts, now))
    return parsed


def _parse_message(
    raw: dict[str, Any],
    at: str,
    phone_number_id: str,
    contacts: list[tuple[str | None, str | None, str | None]],
    now: float | None,
) -> IncomingMessage:
    wamid = _ident(raw.get("id"), f"{at}.id")
    timestamp = _timestamp(raw.get("timestamp"), f"{at}.timestamp", now)
    wa_id = _opt_ident(raw.get("from"), f"{at}.from")
    user_id = _opt_ident(raw.get("from_user_id"), f"{at}.from_user_id")
    profile_name = None
    for c_wa, c_user, c_name in contacts:
        same = (wa_id is not None and c_wa == wa_id) or (user_id is not None and c_user == user_id)
        if same or len(contacts) == 1:
            wa_id, user_id = wa_id or c_wa, user_id or c_user
            profile_name = c_name
            break
    if wa_id is None and user_id is None:
        raise _fail(f"{at}.from", "the sender is missing (no from, wa_id or user_id)")
    raw_type = _ident(raw.get("type"), f"{at}.type")
    try:
        kind = MessageType(raw_type)
    except ValueError:
        kind = MessageType.UNSUPPORTED
    common: dict[str, Any] = {
        "wamid": wamid,
        "timestamp": timestamp,
        "raw_type": raw_type,
        "phone_number_id": phone_number_id,
        "wa_id": wa_id,
        "user_id": user_id,
        "profile_name": profile_name,
    }
    if kind is MessageType.TEXT:
        body = _obj(raw.get("text"), f"{at}.text")
        return IncomingMessage(type=kind, text=_text(body.get("body"), f"{at}.text.body"), **common)
    if kind is MessageType.LOCATION:
        where = f"{at}.location"
        place = _obj(raw.get("location"), where)
        location = Location(
            lat=_degrees(place.get("latitude"), f"{where}.latitude", 90.0),
            lon=_degrees(place.get("longitude"), f"{where}.longitude", 180.0),
            name=_opt_text(place.get("name"), f"{where}.name", max_len=1000),
            address=_opt_text(place.get("address"), f"{where}.address", max_len=1000),
        )
        return IncomingMessage(type=kind, location=location, **common)
    if kind in (MessageType.IMAGE, MessageType.AUDIO, MessageType.VIDEO, MessageType.DOCUMENT):
        where = f"{at}.{raw_type}"
        body = _obj(raw.get(raw_type), where)
        voice = body.get("voice", False)
        if not isinstance(voice, bool):
            raise _fail(f"{where}.voice", "must be true or false")
        media = MediaRef(
            id=_ident(body.get("id"), f"{where}.id"),
            mime_type=_opt_ident(body.get("mime_type"), f"{where}.mime_type"),
            sha256=_opt_ident(body.get("sha256"), f"{where}.sha256"),
            voice=voice,
            filename=_opt_text(body.get("filename"), f"{where}.filename", max_len=1000),
        )
        caption = _opt_text(body.get("caption"), f"{where}.caption")
        return IncomingMessage(type=kind, media=media, caption=caption, **common)
    return IncomingMessage(type=MessageType.UNSUPPORTED, **common)


# -- the Graph API -----------------------------------------------------------------------


class GraphError(SiguemeError):
    """A Graph API call that failed: ``status`` is the HTTP status (``None`` when the
    server could not be reached), ``code`` Graph's own error code when it sent one."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ``GET /v{N}/{media_id}`` says of a media file."""

    id: str
    url: str
    """Where to download it (valid for 5 minutes, with the same bearer token)."""
    mime_type: str
    sha256: str | None
    file_size: int | None


@dataclass(frozen=True, slots=True)
class DownloadedMedia:
    info: MediaInfo
    data: bytes

    @property
    def sha256_matches(self) -> bool | None:
        """Whether the bytes match the SHA-256 Graph announced (hex or base64); ``None``
        when it announced none we can read."""
        return digest_matches(self.data, self.info.sha256)


def digest_matches(data: bytes, announced: str | None) -> bool | None:
    """Whether ``data``'s SHA-256 equals ``announced`` (hex or base64 of the digest);
    ``None`` when ``announced`` is neither."""
    if not announced:
        return None
    digest = hashlib.sha256(data).digest()
    text = announced.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return hmac.compare_digest(digest.hex(), text.lower())
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            decoded = base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == 32:
            return hmac.compare_digest(digest, decoded)
    return None


class GraphClient:
    """Calls to Meta's Graph API for the WhatsApp Cloud API.

    ``base_url`` is ``https://graph.facebook.com`` in production (a stand-in server in
    tests); ``api_version`` is ``v23.0`` or ``23.0``. The ``http`` client belongs to the
    caller, who sets its timeouts and closes it.
    """

    def __init__(
        self, base_url: str, access_token: str, api_version: str, http: httpx.AsyncClient
    ) -> None:
        match = _VERSION.match(api_version.strip())
        if match is None:
            raise ValueError("api_version must look like v23.0")
        if not access_token:
            raise ValueError("an access token is required")
        self.base_url = base_url.rstrip("/")
        self.version = f"v{match.group(1)}"
        self._token = access_token
        self._http = http

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _url(self, *parts: str) -> str:
        return "/".join([self.base_url, self.version, *(quote(p, safe="") for p in parts)])

    async def _request(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self._http.request(method, url, headers=self._auth, **kwargs)
        except httpx.HTTPError as exc:
            raise GraphError(f"the Graph API could not be reached: {type(exc).__name__}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400 or not isinstance(body, dict):
            raise _graph_error(response.status_code, body)
        return body

    async def media_info(self, media_id: str) -> MediaInfo:
        """The URL, type, size and hash of a media file."""
        if not _GRAPH_ID.match(media_id):
            raise GraphError("not a media id")
        body = await self._request("GET", self._url(media_id))
        url, mime = body.get("url"), body.get("mime_type")
        size, digest = body.get("file_size"), body.get("sha256")
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise GraphError("the media look-up gave no download URL", status=200)
        if not isinstance(mime, str):
            raise GraphError("the media look-up gave no MIME type", status=200)
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        return MediaInfo(
            id=str(body.get("id", media_id)),
            url=url,
            mime_type=mime,
            sha256=digest if isinstance(digest, str) else None,
            file_size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        )

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """The file at ``url`` (a :class:`MediaInfo` URL), streamed: the download stops as
        soon as it passes ``max_bytes``, with :class:`~sigueme.reports.media.MediaRejected`
        (too big)."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise GraphError("not a download URL")
        if self.base_url.startswith("https:") and not url.startswith("https:"):
            raise GraphError("the download URL is not HTTPS")
        chunks: list[bytes] = []
        received = 0
        try:
            async with self._http.stream("GET", url, headers=self._auth) as response:
                if not 200 <= response.status_code < 300:  # redirects are not followed
                    await response.aread()
                    try:
                        body = response.json()
                    except ValueError:
                        body = None
                    raise _graph_error(response.status_code, body)
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_big(max_bytes)
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > max_bytes:
                        raise _too_big(max_bytes)
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise GraphError(f"the media download failed: {type(exc).__name__}") from exc
        return b"".join(chunks)

    async def fetch_media(self, media_id: str, *, max_bytes: int) -> DownloadedMedia:
        """Look a media file up and download it, refusing it (too big) before the download
        when Graph announces a larger size."""
        info = await self.media_info(media_id)
        if info.file_size is not None and info.file_size > max_bytes:
            raise _too_big(max_bytes)
        return DownloadedMedia(info=info, data=await self.download(info.url, max_bytes=max_bytes))

    async def send_text(self, phone_number_id: str, to: str, body: str) -> str:
        """Send ``body`` as a text message from the business number ``phone_number_id`` to
        ``to``; the new message's wamid. Free-form text reaches the person only within 24
        hours of their last message."""
        if not _GRAPH_ID.match(phone_number_id):
            raise ValueError("not a phone number id")
        if not to or len(to) > _MAX_ID:
            raise ValueError("no recipient")
        if not body or len(body) > MAX_REPLY:
            raise ValueError(f"a reply has 1 to {MAX_REPLY} characters")
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": False, "body": body},
        }
        answer = await self._request("POST", self._url(phone_number_id, "messages"), json=payload)
        sent = answer.get("messages")
        if not (isinstance(sent, list) and sent and isinstance(sent[0], dict)):
            raise GraphError("the send gave no message id", status=200)
        wamid = sent[0].get("id")
        if not isinstance(wamid, str):
            raise GraphError("the send gave no message id", status=200)
        return wamid


def _too_big(max_bytes: int) -> MediaRejected:
    return MediaRejected(
        "media", MediaProblem.TOO_BIG, f"the file is larger than {max_bytes} bytes"
    )


def _graph_error(status: int, body: object) -> GraphError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code")
        return GraphError(
            f"Graph API error {status}: {message if isinstance(message, str) else 'unknown'}",
            status=status,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        )
    return GraphError(f"Graph API error {status}", status=status)
