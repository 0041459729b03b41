"""Tiny, real evidence files for the tests: photos made with Pillow (with GPS EXIF when
asked), and the first bytes of audio and video files built by hand after their
specifications (enough for a type to be read from the content)."""

from __future__ import annotations

import io
import struct

from PIL import ExifTags, Image, PngImagePlugin

# Zócalo de Cuernavaca, as degrees/minutes/seconds: 18°55'27.12" N, 99°13'17.76" W.
ZOCALO = (18.9242, -99.2216)


def _dms(value: float) -> tuple[float, float, float]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = round((value - degrees - minutes / 60) * 3600, 4)
    return (float(degrees), float(minutes), seconds)


def exif_block(*, gps: tuple[float, float] | None = None, orientation: int | None = None) -> bytes:
    """An EXIF block (``Exif\\0\\0`` + TIFF) made by Pillow."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Telefono de prueba"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps is not None:
        lat, lon = gps
        exif.get_ifd(ExifTags.IFD.GPSInfo).update(
            {
                ExifTags.GPS.GPSLatitudeRef: "N" if lat >= 0 else "S",
                ExifTags.GPS.GPSLatitude: _dms(lat),
                ExifTags.GPS.GPSLongitudeRef: "E" if lon >= 0 else "W",
                ExifTags.GPS.GPSLongitude: _dms(lon),
            }
        )
    block = exif.tobytes()
    assert block.startswith(b"Exif\x00\x00")
    return block


def picture(width: int = 24, height: int = 16) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata(
        [((x * 10) % 256, (y * 20) % 256, 90) for y in range(height) for x in range(width)]
    )
    return image


def jpeg(
    *,
    gps: tuple[float, float] | None = None,
    orientation: int | None = None,
    progressive: bool = False,
) -> bytes:
    """A small JPEG; with an EXIF block when ``gps`` or ``orientation`` is given."""
    out = io.BytesIO()
    options: dict[str, object] = {"quality": 85, "progressive": progressive}
    if gps is not None or orientation is not None:
        options["exif"] = exif_block(gps=gps, orientation=orientation)
    picture().save(out, "JPEG", **options)
    return out.getvalue()


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segments_after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


XMP = (
    b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description "
    b'exif:GPSLatitude="18,55.452N" exif:GPSLongitude="99,13.296W"/></x:xmpmeta>'
)


def png(*, gps: tuple[float, float] | None = None, text: str | None = None) -> bytes:
    """A small PNG; with an ``eXIf`` chunk when ``gps`` is given, a ``tEXt`` chunk when
    ``text`` is."""
    out = io.BytesIO()
    options: dict[str, object] = {}
    if gps is not None:
        options["exif"] = exif_block(gps=gps)
    if text is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", text)
        options["pnginfo"] = info
    picture().save(out, "PNG", **options)
    return out.getvalue()


# -- ISO base media ----------------------------------------------------------------------


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def ftyp(brand: bytes, *compatible: bytes) -> bytes:
    return box(b"ftyp", brand + b"\x00\x00\x02\x00" + b"".join(compatible or (brand,)))


def iso6709(lat: float, lon: float) -> bytes:
    return f"{lat:+08.4f}{lon:+09.4f}+000.000/".encode()


def mp4(
    brand: bytes = b"isom",
    *,
    location: tuple[float, float] | None = None,
    apple_location: tuple[float, float] | None = None,
    media: bytes = b"\x00\x00\x00\x10fake-video-data!" * 8,
) -> bytes:
    """An ISO base media file: ftyp, moov (mvhd, a track with a name in udta, and the
    movie's udta with ``©xyz`` and/or an Apple ``meta`` location), mdat."""
    movie = [box(b"mvhd", bytes(100))]
    track = box(b"trak", box(b"tkhd", bytes(84)) + box(b"udta", box(b"name", b"Camara")))
    movie.append(track)
    if location is not None:
        text = iso6709(*location)
        xyz = box(b"\xa9xyz", struct.pack(">HH", len(text), 0x15C7) + text)
        movie.append(box(b"udta", xyz))
    if apple_location is not None:
        key = b"com.apple.quicktime.location.ISO6709"
        keys = box(b"keys", bytes(4) + struct.pack(">I", 1) + box(b"mdta", key))
        value = box(b"data", struct.pack(">II", 1, 0) + iso6709(*apple_location))
        ilst = box(b"ilst", box(struct.pack(">I", 1), value))
        movie.append(box(b"meta", box(b"hdlr", bytes(8) + b"mdta" + bytes(12)) + keys + ilst))
    return (
        ftyp(brand, brand, b"isom", b"mp42") + box(b"moov", b"".join(movie)) + box(b"mdat", media)
    )


# -- audio -------------------------------------------------------------------------------


def ogg_opus() -> bytes:
    """The first page of an Ogg Opus stream (a WhatsApp voice note)."""
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    page = b"OggS" + struct.pack("<BBqIIIB", 0, 2, 0, 0x1234, 0, 0, 1) + bytes([len(head)])
    return page + head + b"OggS" + bytes(40)


def ogg_theora() -> bytes:
    head = b"\x80theora" + bytes(34)
    return b"OggS" + struct.pack("<BBqIIIB", 0, 2, 0, 1, 0, 0, 1) + bytes([len(head)]) + head


def mp3(*, id3: bool = True) -> bytes:
    frame = b"\xff\xfb\x90\x64" + bytes(413)  # MPEG-1 layer III, 128 kb/s, 44.1 kHz
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10) if id3 else b""
    return tag + frame * 3


def amr() -> bytes:
    return b"#!AMR\n" + (b"\x3c" + bytes(31)) * 4


def aac() -> bytes:
    frame = b"\xff\xf1\x50\x80\x04\x3f\xfc" + bytes(27)  # ADTS, AAC LC, 44.1 kHz, stereo
    return frame * 4


def m4a() -> bytes:
    return mp4(b"M4A ")


def three_gp() -> bytes:
    return mp4(b"3gp4")
