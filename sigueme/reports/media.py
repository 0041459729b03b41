"""Evidence files: which ones a report accepts, checked from their content, and what is
recorded about them on arrival.

The limits are WhatsApp's own, so a file that came through WhatsApp always fits and the
API accepts no more than that channel does:

======  ====================================  =======
kind    types                                 at most
======  ====================================  =======
image   JPEG, PNG                             5 MiB
audio   AAC, AMR, MP3, M4A (MP4 audio), OGG   16 MiB
video   MP4, 3GP                              16 MiB
======  ====================================  =======

The type is read from the content (its signature), never from the name or the declared
MIME type alone: a file whose content disagrees with its declared type is refused as
mislabelled. :func:`accept_evidence` returns the SHA-256 taken on arrival and a copy for
monitors without location metadata (:mod:`sigueme.reports.metadata`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from sigueme.errors import Invalid
from sigueme.reports.metadata import (
    PNG_SIGNATURE,
    GpsPosition,
    MalformedMedia,
    Redacted,
    redact,
)

MIB = 1024 * 1024


class MediaKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"

    @property
    def max_bytes(self) -> int:
        """The largest file of this kind accepted (WhatsApp's limit)."""
        return _MAX_BYTES[self]

    @property
    def label_es(self) -> str:
        return _KIND_ES[self]


_MAX_BYTES = {MediaKind.IMAGE: 5 * MIB, MediaKind.AUDIO: 16 * MIB, MediaKind.VIDEO: 16 * MIB}
_KIND_ES = {MediaKind.IMAGE: "foto", MediaKind.AUDIO: "audio", MediaKind.VIDEO: "video"}

MAX_EVIDENCE_BYTES = max(_MAX_BYTES.values())
"""The largest file of any kind: read no more than this before the type is known."""


@dataclass(frozen=True, slots=True)
class MediaType:
    """An accepted evidence type."""

    mime: str
    """Canonical MIME type, without parameters (``audio/ogg``)."""
    kind: MediaKind
    extension: str

    @property
    def max_bytes(self) -> int:
        return self.kind.max_bytes


ACCEPTED: dict[str, MediaType] = {
    t.mime: t
    for t in (
        MediaType("image/jpeg", MediaKind.IMAGE, "jpg"),
        MediaType("image/png", MediaKind.IMAGE, "png"),
        MediaType("audio/aac", MediaKind.AUDIO, "aac"),
        MediaType("audio/amr", MediaKind.AUDIO, "amr"),
        MediaType("audio/mpeg", MediaKind.AUDIO, "mp3"),
        MediaType("audio/mp4", MediaKind.AUDIO, "m4a"),
        MediaType("audio/ogg", MediaKind.AUDIO, "ogg"),
        MediaType("video/mp4", MediaKind.VIDEO, "mp4"),
        MediaType("video/3gpp", MediaKind.VIDEO, "3gp"),
    )
}
"""The accepted types by canonical MIME type."""

_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mp3": "audio/mpeg",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/aacp": "audio/aac",
    "audio/x-aac": "audio/aac",
    "audio/opus": "audio/ogg",
    "audio/amr-nb": "audio/amr",
    "audio/amr-wb": "audio/amr",
    "video/3gp": "video/3gpp",
}


def canonical_mime(value: str) -> str:
    """``value`` lower-cased, without parameters, aliases resolved:
    ``"audio/ogg; codecs=opus"`` → ``"audio/ogg"``, ``"audio/x-m4a"`` → ``"audio/mp4"``."""
    base = value.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


class MediaProblem(StrEnum):
    """Why a file was refused."""

    EMPTY = "empty"
    TOO_BIG = "too_big"
    NOT_ALLOWED = "not_allowed"
    MISLABELLED = "mislabelled"

    @property
    def reason_es(self) -> str:
        """What the reporter is told, in Spanish."""
        return _PROBLEM_ES[self]


_PROBLEM_ES = {
    MediaProblem.EMPTY: "el archivo llegó vacío",
    MediaProblem.TOO_BIG: (
        "el archivo es demasiado grande (hasta 5 MB en fotos y 16 MB en audios y videos)"
    ),
    MediaProblem.NOT_ALLOWED: (
        "no recibimos ese tipo de archivo (fotos JPG o PNG; audios AAC, AMR, MP3, M4A u OGG; "
        "videos MP4 o 3GP)"
    ),
    MediaProblem.MISLABELLED: "el contenido del archivo no corresponde a su tipo",
}


class MediaRejected(Invalid):
    """An evidence file that is refused: ``problem`` says which rule it broke, ``field``
    names the input it came in, ``reason`` says why in words. The API answers 422 (or 413
    for :attr:`MediaProblem.TOO_BIG`, if it maps that on its own)."""

    def __init__(self, field: str, problem: MediaProblem, reason: str) -> None:
        super().__init__(field, reason)
        self.problem = problem


# -- what the content says -------------------------------------------------------------

_BMFF_AUDIO = frozenset({b"M4A ", b"M4B ", b"M4P "})
_BMFF_MP4 = frozenset(
    {b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9"}
    | {b"mp41", b"mp42", b"avc1", b"M4V ", b"M4VH", b"M4VP", b"mmp4", b"MSNV", b"NDAS"}
    | {b"NDSC", b"NDSH", b"NDSM", b"NDSP", b"NDSS", b"NDXC", b"NDXH", b"NDXM", b"NDXP"}
    | {b"F4V ", b"f4v ", b"dash", b"mp71", b"MQT "}
)
_BMFF_OTHER = {
    b"qt  ": "video/quicktime",
    b"heic": "image/heic",
    b"heix": "image/heic",
    b"mif1": "image/heif",
    b"msf1": "image/heif",
    b"avif": "image/avif",
    b"crx ": "image/x-canon-cr3",
}


def _mpeg_audio_frame(b0: int, b1: int, b2: int) -> bool:
    """An MPEG audio layer III frame header (an MP3 without an ID3 tag)."""
    return (
        b0 == 0xFF
        and (b1 & 0xE0) == 0xE0
        and (b1 >> 3) & 0x03 != 0x01  # version: not reserved
        and (b1 >> 1) & 0x03 == 0x01  # layer III
        and (b2 >> 4) not in (0x0, 0xF)  # bitrate: not free, not bad
        and (b2 >> 2) & 0x03 != 0x03  # sample rate: not reserved
    )


def _adts(b0: int, b1: int) -> bool:
    """An AAC ADTS frame header: 12 sync bits, then layer 00."""
    return b0 == 0xFF and (b1 & 0xF6) == 0xF0


def _ogg_audio(data: bytes) -> bool:
    """An Ogg stream whose first packet is Opus or Vorbis (not Theora video)."""
    if len(data) < 28:
        return False
    packet = 27 + data[26]
    head = data[packet : packet + 8]
    return head.startswith((b"OpusHead", b"\x01vorbis", b"Speex   ", b"\x7fFLAC"))


def sniff(data: bytes) -> tuple[str, ...]:
    """The MIME types the content of ``data`` is consistent with, the most specific first;
    empty when the signature is not one we know. An MP4 container holds audio or video,
    so ``video/mp4`` content may be declared either; 3GP and M4A are told by their brand.
    Known types that are not accepted are named too (``image/webp``), for a clear refusal.
    """
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return ("image/jpeg",)
    if head.startswith(PNG_SIGNATURE):
        return ("image/png",)
    if head[4:8] == b"ftyp" and len(head) >= 12:
        brand = head[8:12]
        if brand.startswith((b"3gp", b"3gg", b"3gs", b"3ge")):
            return ("video/3gpp",)
        if brand.startswith(b"3g2"):
            return ("video/3gpp2",)
        if brand in _BMFF_AUDIO:
            return ("audio/mp4",)
        if brand in _BMFF_MP4:
            return ("video/mp4", "audio/mp4")
        if brand in _BMFF_OTHER:
            return (_BMFF_OTHER[brand],)
        return ()
    if head.startswith(b"OggS"):
        return ("audio/ogg",) if _ogg_audio(data) else ("application/ogg",)
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n")):
        return ("audio/amr",)
    if head.startswith(b"ID3"):
        return ("audio/mpeg",)
    if head.startswith(b"ADIF"):
        return ("audio/aac",)
    if len(head) >= 3 and _adts(head[0], head[1]):
        return ("audio/aac",)
    if len(head) >= 3 and _mpeg_audio_frame(head[0], head[1], head[2]):
        return ("audio/mpeg",)
    for signature, mime in _OTHER_SIGNATURES:
        if head.startswith(signature):
            return (mime,)
    if head.startswith(b"RIFF") and head[8:12] in _RIFF:
        return (_RIFF[head[8:12]],)
    return ()


_OTHER_SIGNATURES = (
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1aE\xdf\xa3", "video/webm"),
    (b"fLaC", "audio/flac"),
    (b"\x7fELF", "application/x-executable"),
    (b"MZ", "application/x-msdownload"),
)
_RIFF = {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}


# -- the checks --------------------------------------------------------------------------


def check_media(data: bytes, declared_mime: str | None, *, field: str = "file") -> MediaType:
    """The accepted type of ``data``, read from its content, or :class:`MediaRejected`:
    empty, larger than its kind allows, a type that is not accepted, or content that
    disagrees with ``declared_mime`` (when one is given)."""
    if not data:
        raise MediaRejected(field, MediaProblem.EMPTY, "the file is empty")
    if len(data) > MAX_EVIDENCE_BYTES:
        raise MediaRejected(
            field,
            MediaProblem.TOO_BIG,
            f"the file has {len(data)} bytes; at most {MAX_EVIDENCE_BYTES} are accepted",
        )
    declared = canonical_mime(declared_mime) if declared_mime else None
    if declared is not None and declared not in ACCEPTED:
        raise MediaRejected(
            field, MediaProblem.NOT_ALLOWED, f"files of type {declared} are not accepted"
        )
    content = sniff(data)
    if not content:
        raise MediaRejected(
            field,
            MediaProblem.NOT_ALLOWED,
            "the content is not a recognised image, audio or video file",
        )
    accepted = [mime for mime in content if mime in ACCEPTED]
    if not accepted:
        raise MediaRejected(
            field, MediaProblem.NOT_ALLOWED, f"the content is {content[0]}, which is not accepted"
        )
    if declared is None:
        media_type = ACCEPTED[accepted[0]]
    elif declared in accepted:
        media_type = ACCEPTED[declared]
    else:
        raise MediaRejected(
            field,
            MediaProblem.MISLABELLED,
            f"declared as {declared} but the content is {content[0]}",
        )
    if len(data) > media_type.max_bytes:
        raise MediaRejected(
            field,
            MediaProblem.TOO_BIG,
            f"the {media_type.kind} has {len(data)} bytes; at most {media_type.max_bytes} "
            "are accepted",
        )
    return media_type


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Evidence:
    """An accepted evidence file, as it arrived, and the copy monitors may see."""

    media_type: MediaType
    data: bytes
    """The file exactly as it arrived: what is kept as evidence."""
    sha256: str
    """Hex SHA-256 of :attr:`data`, taken on arrival."""
    size: int
    redacted: bytes | None
    """The copy for monitors, without location metadata (the same bytes as :attr:`data`
    when there was none); ``None`` when the file's structure could not be walked, in
    which case monitors must be shown no copy."""
    removed: tuple[str, ...]
    """The metadata blocks left out of :attr:`redacted`."""
    position: GpsPosition | None
    """Where the metadata says the photo or video was taken, if it says."""

    @property
    def redacted_sha256(self) -> str | None:
        if self.redacted is None:
            return None
        return self.sha256 if self.redacted is self.data else sha256_hex(self.redacted)


def accept_evidence(data: bytes, declared_mime: str | None, *, field: str = "file") -> Evidence:
    """Check ``data`` (:func:`check_media`), hash it and make the monitors' copy.

    Raises :class:`MediaRejected` when the file is refused.
    """
    media_type = check_media(data, declared_mime, field=field)
    try:
        redacted: Redacted | None = redact(data, media_type.mime)
    except MalformedMedia:
        redacted = None
    return Evidence(
        media_type=media_type,
        data=data,
        sha256=sha256_hex(data),
        size=len(data),
        redacted=None if redacted is None else redacted.data,
        removed=() if redacted is None else redacted.removed,
        position=None if redacted is None else redacted.position,
    )
