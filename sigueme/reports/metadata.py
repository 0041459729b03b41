"""Location metadata inside evidence files: read it, and make a copy without it.

A phone writes where a photo or video was taken into the file (EXIF GPS in a JPEG, an
``eXIf`` chunk in a PNG, ``©xyz`` or Apple's location key in an MP4/3GP). That position
is useful to the dispatcher (where it happened) and dangerous in the wrong hands (where
the reporter lives). The original file is kept untouched as evidence; monitors are shown
a copy from which every metadata block was removed *losslessly*: the compressed image or
video data is copied byte for byte, never decoded and re-encoded.

- JPEG: the marker segments are walked; EXIF and XMP (APP1), IPTC (APP13), the other
  application segments, comments and anything after the end of the image (MPF secondary
  images, vendor trailers) are dropped. JFIF (APP0), ICC profiles (APP2) and Adobe (APP14)
  stay: they change how the pixels look. The EXIF orientation, the one tag a viewer needs
  to show the photo upright, is written back in a minimal EXIF block of its own.
- PNG: ``eXIf``, ``tEXt``, ``zTXt``, ``iTXt`` and ``tIME`` chunks are dropped, and
  anything after ``IEND``.
- MP4/3GP (ISO base media): ``udta``, ``meta`` and XMP ``uuid`` boxes of the movie and its
  tracks become ``free`` boxes of the same size, their contents zeroed, so every offset
  into the media data stays valid.

Pure functions over bytes; a file whose structure cannot be walked raises
:class:`MalformedMedia` (the caller then shows monitors no copy at all).
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

_MAX_IFD_ENTRIES = 512
"""More entries than any camera writes: a bound on what a hostile file can make us read."""


class MalformedMedia(ValueError):
    """A file whose structure cannot be walked safely."""


@dataclass(frozen=True, slots=True)
class GpsPosition:
    """Where a photo or video was taken, WGS 84 degrees."""

    lat: float
    lon: float


@dataclass(frozen=True, slots=True)
class Redacted:
    """A copy of a file without its metadata, and what the metadata said."""

    data: bytes
    """The copy for monitors (the very same bytes when there was nothing to remove)."""
    removed: tuple[str, ...]
    """Names of the blocks removed (``"APP1 Exif"``, ``"eXIf"``, ``"moov/udta"``, ...)."""
    position: GpsPosition | None = None
    """The GPS position the metadata held, if any."""
    orientation: int | None = None
    """The EXIF orientation (1–8), if any."""


def redact(data: bytes, mime: str) -> Redacted:
    """A copy of ``data`` (of the canonical MIME type ``mime``) without its metadata.

    Formats that carry no location metadata we know of come back as they are.
    Raises :class:`MalformedMedia` when the structure cannot be walked.
    """
    if mime == "image/jpeg":
        return redact_jpeg(data)
    if mime == "image/png":
        return redact_png(data)
    if mime in ("video/mp4", "video/3gpp", "audio/mp4"):
        return redact_isobmff(data)
    return Redacted(data, ())


# -- EXIF (TIFF) ---------------------------------------------------------------------------

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
_TAG_ORIENTATION = 0x0112
_TAG_GPS_IFD = 0x8825


class _Tiff:
    """Bounds-checked reads from a TIFF block (the body of an EXIF segment)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 8 or data[:4] not in (b"II*\x00", b"MM\x00*"):
            raise MalformedMedia("not a TIFF block")
        self.data = data
        self.order = "<" if data[:2] == b"II" else ">"

    def u16(self, at: int) -> int:
        self._need(at, 2)
        value: int = struct.unpack_from(self.order + "H", self.data, at)[0]
        return value

    def u32(self, at: int) -> int:
        self._need(at, 4)
        value: int = struct.unpack_from(self.order + "I", self.data, at)[0]
        return value

    def _need(self, at: int, size: int) -> None:
        if at < 0 or at + size > len(self.data):
            raise MalformedMedia("offset outside the TIFF block")

    def ifd(self, at: int) -> dict[int, tuple[int, int, int]]:
        """The entries of the IFD at ``at``: tag → (type, count, offset of the value)."""
        count = self.u16(at)
        if count > _MAX_IFD_ENTRIES:
            raise MalformedMedia("too many IFD entries")
        entries: dict[int, tuple[int, int, int]] = {}
        for k in range(count):
            base = at + 2 + 12 * k
            tag, kind, n = self.u16(base), self.u16(base + 2), self.u32(base + 4)
            size = _TYPE_SIZE.get(kind, 0) * n
            where = base + 8 if size <= 4 else self.u32(base + 8)
            entries.setdefault(tag, (kind, n, where))
        return entries

    def rationals(self, entry: tuple[int, int, int], count: int) -> list[float]:
        kind, n, at = entry
        if kind not in (5, 10) or n < count:
            raise MalformedMedia("not a rational value")
        fmt = self.order + ("I" if kind == 5 else "i")
        values = []
        for k in range(count):
            self._need(at + 8 * k, 8)
            num = struct.unpack_from(fmt, self.data, at + 8 * k)[0]
            den = struct.unpack_from(fmt, self.data, at + 8 * k + 4)[0]
            if den == 0:
                raise MalformedMedia("a rational with a zero denominator")
            values.append(num / den)
        return values

    def ascii(self, entry: tuple[int, int, int]) -> str:
        kind, n, at = entry
        if kind != 2 or n > 64:
            raise MalformedMedia("not a short text value")
        self._need(at, n)
        return self.data[at : at + n].split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _tiff_of(exif: bytes) -> bytes:
    """The TIFF block of an EXIF payload (with or without the ``Exif\\0\\0`` prefix)."""
    return exif[6:] if exif.startswith(b"Exif\x00\x00") else exif


def exif_orientation(exif: bytes) -> int | None:
    """The orientation tag (1–8) of an EXIF block, or ``None``."""
    try:
        tiff = _Tiff(_tiff_of(exif))
        entry = tiff.ifd(tiff.u32(4)).get(_TAG_ORIENTATION)
        if entry is None or entry[0] != 3 or entry[1] < 1:
            return None
        value = tiff.u16(entry[2])
    except MalformedMedia:
        return None
    return value if 1 <= value <= 8 else None


def exif_position(exif: bytes) -> GpsPosition | None:
    """The GPS latitude and longitude of an EXIF block, or ``None`` when it has none, or
    none that makes sense (missing hemisphere, out of range, exactly 0°, 0°: what cameras
    write when they had no fix)."""
    try:
        tiff = _Tiff(_tiff_of(exif))
        pointer = tiff.ifd(tiff.u32(4)).get(_TAG_GPS_IFD)
        if pointer is None or pointer[0] not in (4, 13) or pointer[1] != 1:
            return None
        gps = tiff.ifd(tiff.u32(pointer[2]))
        if not all(tag in gps for tag in (1, 2, 3, 4)):
            return None
        lat_ref, lon_ref = tiff.ascii(gps[1]).upper(), tiff.ascii(gps[3]).upper()
        d, m, s = tiff.rationals(gps[2], 3)
        lat = d + m / 60.0 + s / 3600.0
        d, m, s = tiff.rationals(gps[4], 3)
        lon = d + m / 60.0 + s / 3600.0
    except MalformedMedia:
        return None
    if lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
        return None
    lat = -lat if lat_ref == "S" else lat
    lon = -lon if lon_ref == "W" else lon
    return _position(lat, lon)


def _position(lat: float, lon: float) -> GpsPosition | None:
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or (lat == 0.0 and lon == 0.0):
        return None
    return GpsPosition(lat=lat, lon=lon)


def minimal_exif(orientation: int) -> bytes:
    """An EXIF APP1 payload holding only the orientation tag."""
    if not 1 <= orientation <= 8:
        raise ValueError("orientation must be 1–8")
    entry = struct.pack(">HHIHH", _TAG_ORIENTATION, 3, 1, orientation, 0)
    return b"Exif\x00\x00" + b"MM\x00*" + struct.pack(">IH", 8, 1) + entry + b"\x00" * 4


# -- JPEG ------------------------------------------------------------------------------

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_APP0, _APP1, _APP2, _APP14, _COM = 0xE0, 0xE1, 0xE2, 0xEE, 0xFE


def _standalone(marker: int) -> bool:
    return marker == 0x01 or 0xD0 <= marker <= 0xD7


def _jpeg_segment_kept(marker: int, payload: bytes) -> str | None:
    """``None`` to keep a segment, else the name it is reported under when dropped."""
    if marker == _APP0:
        return None if payload.startswith(b"JFIF\x00") else "APP0"
    if marker == _APP1:
        if payload.startswith(b"Exif\x00\x00"):
            return "APP1 Exif"
        return "APP1 XMP" if payload.startswith(b"http://ns.adobe.com/") else "APP1"
    if marker == _APP2:
        return None if payload.startswith(b"ICC_PROFILE\x00") else "APP2"
    if marker == _APP14:
        return None if payload.startswith(b"Adobe") else "APP14"
    if 0xE0 <= marker <= 0xEF:
        return f"APP{marker - 0xE0}"
    if marker == _COM:
        return "COM"
    return None


def redact_jpeg(data: bytes) -> Redacted:
    """A JPEG without its metadata (see the module's description), losslessly."""
    n = len(data)
    if data[:2] != b"\xff\xd8":
        raise MalformedMedia("a JPEG starts with SOI")
    out = bytearray(b"\xff\xd8")
    insert_at = 2
    removed: list[str] = []
    position: GpsPosition | None = None
    orientation: int | None = None
    i = 2
    while True:
        if i >= n:
            raise MalformedMedia("the JPEG ends before its image data")
        if data[i] != 0xFF:
            raise MalformedMedia("a JPEG marker was expected")
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n:
            raise MalformedMedia("the JPEG ends inside a marker")
        marker = data[i]
        i += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            break
        if marker == _SOI:
            raise MalformedMedia("a second SOI")
        if _standalone(marker):
            out += bytes((0xFF, marker))
            continue
        if i + 2 > n:
            raise MalformedMedia("the JPEG ends inside a segment")
        length = int.from_bytes(data[i : i + 2], "big")
        if length < 2 or i + length > n:
            raise MalformedMedia("a JPEG segment runs past the end of the file")
        payload = data[i + 2 : i + length]
        dropped = _jpeg_segment_kept(marker, payload)
        if dropped is None:
            out += bytes((0xFF, marker)) + data[i : i + length]
            if marker == _APP0 and insert_at == 2 and len(out) == 2 + 2 + length:
                insert_at = len(out)  # EXIF goes after a leading JFIF segment
        else:
            removed.append(dropped)
            if dropped == "APP1 Exif":
                position = position or exif_position(payload)
                orientation = orientation or exif_orientation(payload)
        i += length
        if marker != _SOS:
            continue
        # Entropy-coded data: it runs to the next marker that is not a stuffed 0xFF00 or a
        # restart marker.
        j = i
        while True:
            k = data.find(b"\xff", j)
            if k < 0 or k + 1 >= n:  # a truncated file: keep what there is
                out += data[i:]
                i = n
                break
            following = data[k + 1]
            if following == 0xFF:
                j = k + 1
            elif following == 0x00 or 0xD0 <= following <= 0xD7:
                j = k + 2
            else:
                out += data[i:k]
                i = k
                break
        if i >= n:
            break
    if i < n:
        removed.append("trailer")
    if orientation is not None and orientation != 1:
        exif = minimal_exif(orientation)
        out[insert_at:insert_at] = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    if not removed:
        return Redacted(data, (), None, None)
    return Redacted(bytes(out), tuple(removed), position, orientation)


# -- PNG -------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DROPPED = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})


def redact_png(data: bytes) -> Redacted:
    """A PNG without its metadata chunks, losslessly."""
    if not data.startswith(PNG_SIGNATURE):
        raise MalformedMedia("a PNG starts with its signature")
    n = len(data)
    out = bytearray(PNG_SIGNATURE)
    removed: list[str] = []
    position: GpsPosition | None = None
    orientation: int | None = None
    i = len(PNG_SIGNATURE)
    ended = False
    while i < n:
        if i + 12 > n:
            raise MalformedMedia("the PNG ends inside a chunk header")
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if length > 0x7FFFFFFF or end > n:
            raise MalformedMedia("a PNG chunk runs past the end of the file")
        if kind in _PNG_DROPPED:
            removed.append(kind.decode("ascii"))
            if kind == b"eXIf":
                exif = data[i + 8 : end - 4]
                position = position or exif_position(exif)
                orientation = orientation or exif_orientation(exif)
        else:
            out += data[i:end]
        i = end
        if kind == b"IEND":
            ended = True
            break
    if ended and i < n:
        removed.append("trailer")
    if not removed:
        return Redacted(data, (), None, None)
    return Redacted(bytes(out), tuple(removed), position, orientation)


# -- ISO base media (MP4, 3GP, M4A) ------------------------------------------------------

_XMP_UUID = bytes.fromhex("be7acfcb97a942e89c71999491e3afac")
_ISO6709 = re.compile(rb"([+-]\d{1,2}(?:\.\d+)?)([+-]\d{1,3}(?:\.\d+)?)")
_APPLE_LOCATION_KEY = b"com.apple.quicktime.location.ISO6709"
_MAX_BOXES = 10_000


def _boxes(data: bytes | bytearray, start: int, end: int) -> list[tuple[bytes, int, int, int]]:
    """The boxes between ``start`` and ``end``: (type, box start, payload start, box end)."""
    found = []
    i = start
    while i < end:
        if i + 8 > end:
            raise MalformedMedia("the file ends inside a box header")
        size = int.from_bytes(data[i : i + 4], "big")
        kind = bytes(data[i + 4 : i + 8])
        header = 8
        if size == 1:
            if i + 16 > end:
                raise MalformedMedia("the file ends inside a box header")
            size = int.from_bytes(data[i + 8 : i + 16], "big")
            header = 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            raise MalformedMedia("a box runs past its container")
        found.append((kind, i, i + header, i + size))
        if len(found) > _MAX_BOXES:
            raise MalformedMedia("too many boxes")
        i += size
    return found


def _iso6709(text: bytes) -> GpsPosition | None:
    match = _ISO6709.search(text)
    if match is None:
        return None
    return _position(float(match.group(1)), float(match.group(2)))


def _blank(buf: bytearray, start: int, payload: int, end: int) -> None:
    """Turn the box at ``start`` into a ``free`` box of the same size, contents zeroed."""
    buf[start + 4 : start + 8] = b"free"
    buf[payload:end] = bytes(end - payload)


def redact_isobmff(data: bytes) -> Redacted:
    """An MP4/3GP/M4A file whose metadata boxes became zeroed ``free`` boxes."""
    if data[4:8] != b"ftyp":
        raise MalformedMedia("an ISO media file starts with ftyp")
    buf = bytearray(data)
    removed: list[str] = []
    position: GpsPosition | None = None

    def sweep(start: int, end: int, path: str) -> None:
        nonlocal position
        for kind, box, payload, box_end in _boxes(buf, start, end):
            name = kind.decode("latin-1")
            if kind == b"udta":
                for child, _, child_payload, child_end in _boxes(buf, payload, box_end):
                    if child == b"\xa9xyz":  # 2-byte length, 2-byte language, ISO 6709
                        position = position or _iso6709(bytes(buf[child_payload + 4 : child_end]))
            elif kind == b"meta" and _APPLE_LOCATION_KEY in buf[payload:box_end]:
                position = position or _iso6709(bytes(buf[payload:box_end]).split(b"ilst", 1)[-1])
            if kind in (b"udta", b"meta") or (
                kind == b"uuid" and buf[payload : payload + 16] == _XMP_UUID
            ):
                _blank(buf, box, payload, box_end)
                removed.append(f"{path}{name}")
            elif kind in (b"moov", b"trak"):
                sweep(payload, box_end, f"{path}{name}/")

    sweep(0, len(buf), "")
    if not removed:
        return Redacted(data, (), None, None)
    return Redacted(bytes(buf), tuple(removed), position, None)
