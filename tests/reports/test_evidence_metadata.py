"""Location metadata: read from JPEG, PNG and MP4 files, and removed losslessly from the
copy monitors see (the compressed data is the same bytes; Pillow decodes the same
pixels)."""

from __future__ import annotations

import io

import pytest
import sample_media as sample
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sigueme.reports.metadata import (
    MalformedMedia,
    exif_orientation,
    exif_position,
    minimal_exif,
    redact,
    redact_isobmff,
    redact_jpeg,
    redact_png,
)

SYDNEY = (-33.8568, 151.2153)


def pixels(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.tobytes()


def scans(data: bytes) -> bytes:
    """Everything from the first start-of-scan marker on (the compressed image)."""
    return data[data.index(b"\xff\xda") :]


# -- EXIF ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [sample.ZOCALO, SYDNEY, (0.5, -0.25)])
def test_gps_position_of_an_exif_block(where: tuple[float, float]) -> None:
    position = exif_position(sample.exif_block(gps=where))
    assert position is not None
    assert (position.lat, position.lon) == pytest.approx(where, abs=1e-6)


def test_no_position_without_gps_or_at_null_island() -> None:
    assert exif_position(sample.exif_block()) is None
    assert exif_position(sample.exif_block(gps=(0.0, 0.0))) is None
    assert exif_position(b"") is None
    assert exif_position(b"Exif\x00\x00MM\x00*\x00\x00\x00\x08") is None


def test_minimal_exif_holds_only_the_orientation() -> None:
    block = minimal_exif(6)
    assert exif_orientation(block) == 6
    assert exif_position(block) is None
    with pytest.raises(ValueError, match="1–8"):
        minimal_exif(9)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_exif_junk_gives_no_position_and_no_error(junk: bytes) -> None:
    for block in (junk, b"Exif\x00\x00MM\x00*" + junk, b"II*\x00" + junk):
        position = exif_position(block)
        assert position is None or (-90 <= position.lat <= 90 and -180 <= position.lon <= 180)
        orientation = exif_orientation(block)
        assert orientation is None or 1 <= orientation <= 8


# -- JPEG ------------------------------------------------------------------------------


def test_jpeg_gps_is_read_and_removed_losslessly() -> None:
    original = sample.jpeg(gps=sample.ZOCALO)
    result = redact_jpeg(original)
    assert result.position is not None
    assert (result.position.lat, result.position.lon) == pytest.approx(sample.ZOCALO, abs=1e-6)
    assert result.removed == ("APP1 Exif",)
    assert b"Exif" not in result.data
    assert scans(result.data) == scans(original)
    assert pixels(result.data) == pixels(original)
    assert not Image.open(io.BytesIO(result.data)).getexif()


def test_jpeg_orientation_survives_alone() -> None:
    original = sample.jpeg(gps=sample.ZOCALO, orientation=6)
    result = redact_jpeg(original)
    assert result.orientation == 6
    shown = Image.open(io.BytesIO(result.data)).getexif()
    assert dict(shown) == {0x0112: 6}
    assert not shown.get_ifd(0x8825)
    assert pixels(result.data) == pixels(original)
    # An upright photo needs no EXIF at all.
    assert b"Exif" not in redact_jpeg(sample.jpeg(gps=sample.ZOCALO, orientation=1)).data


def test_jpeg_other_metadata_goes_too_and_colour_information_stays() -> None:
    icc = sample.segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + bytes(64))
    adobe = sample.segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x01")
    original = (
        sample.with_segments_after_soi(
            sample.jpeg(gps=sample.ZOCALO),
            sample.segment(0xE1, sample.XMP),
            sample.segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04" + b"Cuernavaca"),
            sample.segment(0xE2, b"MPF\x00" + bytes(16)),
            sample.segment(0xFE, b"tomada en la calle Morelos 12"),
            icc,
            adobe,
        )
        + b"\xff\xd8 a second picture appended by the phone, with its own EXIF"
    )
    result = redact_jpeg(original)
    assert result.removed == ("APP1 XMP", "APP13", "APP2", "COM", "APP1 Exif", "trailer")
    for secret in (b"GPS", b"Cuernavaca", b"Morelos", b"second picture", b"MPF"):
        assert secret not in result.data
    assert icc in result.data
    assert adobe in result.data
    assert result.data.endswith(b"\xff\xd9")
    assert pixels(result.data) == pixels(sample.jpeg(gps=sample.ZOCALO))


def test_progressive_jpeg_with_many_scans() -> None:
    original = sample.jpeg(gps=SYDNEY, progressive=True)
    assert original.count(b"\xff\xda") > 1
    result = redact_jpeg(original)
    assert result.position is not None
    assert result.position.lat < 0
    assert pixels(result.data) == pixels(original)


def test_jpeg_without_metadata_is_the_same_bytes() -> None:
    plain = sample.jpeg()
    result = redact_jpeg(plain)
    assert result.data is plain
    assert (result.removed, result.position) == ((), None)


def test_a_truncated_jpeg_still_loses_its_metadata() -> None:
    original = sample.jpeg(gps=sample.ZOCALO)
    cut = original[: len(original) - 40]
    result = redact_jpeg(cut)
    assert b"Exif" not in result.data
    assert scans(result.data) == scans(cut)


@pytest.mark.parametrize(
    "broken",
    [
        b"",
        b"\x89PNG",
        b"\xff\xd8",
        b"\xff\xd8\x00\x00",
        b"\xff\xd8\xff\xe1\x00",
        b"\xff\xd8\xff\xe1\x00\x01",
        b"\xff\xd8\xff\xe1\xff\xff" + bytes(10),
        b"\xff\xd8\xff\xd8",
    ],
)
def test_jpeg_structure_that_cannot_be_walked(broken: bytes) -> None:
    with pytest.raises(MalformedMedia):
        redact_jpeg(broken)


# -- PNG -------------------------------------------------------------------------------


def test_png_exif_and_text_chunks_are_removed_losslessly() -> None:
    original = sample.png(gps=sample.ZOCALO, text="Calle Morelos 12") + b"trailing"
    result = redact_png(original)
    assert result.position is not None
    assert (result.position.lat, result.position.lon) == pytest.approx(sample.ZOCALO, abs=1e-6)
    assert set(result.removed) == {"eXIf", "tEXt", "trailer"}
    assert b"eXIf" not in result.data
    assert b"Morelos" not in result.data
    assert result.data.endswith(b"IEND\xaeB`\x82")
    assert pixels(result.data) == pixels(sample.png())


def test_png_without_metadata_is_the_same_bytes() -> None:
    plain = sample.png()
    assert redact_png(plain).data is plain


@pytest.mark.parametrize(
    "broken",
    [b"", b"\xff\xd8\xff", sample.png()[:20], sample.png()[:8] + b"\x7f\xff\xff\xffIDAT"],
)
def test_png_structure_that_cannot_be_walked(broken: bytes) -> None:
    with pytest.raises(MalformedMedia):
        redact_png(broken)


# -- MP4 / 3GP ---------------------------------------------------------------------------


def test_mp4_location_is_read_and_blanked_in_place() -> None:
    original = sample.mp4(location=sample.ZOCALO)
    result = redact_isobmff(original)
    assert result.position is not None
    assert (result.position.lat, result.position.lon) == pytest.approx(sample.ZOCALO, abs=1e-4)
    assert result.removed == ("moov/trak/udta", "moov/udta")
    assert len(result.data) == len(original)
    assert b"+18.9242" not in result.data
    assert b"Camara" not in result.data
    # The media data is where it was, byte for byte: every offset into it still holds.
    mdat = original.index(b"mdat")
    assert result.data[mdat:] == original[mdat:]
    assert result.data.count(b"free") == 2


def test_apple_location_key_is_read_and_blanked() -> None:
    original = sample.mp4(b"mp42", apple_location=SYDNEY)
    result = redact_isobmff(original)
    assert result.position is not None
    assert (result.position.lat, result.position.lon) == pytest.approx(SYDNEY, abs=1e-4)
    assert "moov/meta" in result.removed
    assert b"com.apple.quicktime" not in result.data


def test_3gp_and_m4a_are_walked_the_same_way() -> None:
    assert redact(sample.mp4(b"3gp4", location=SYDNEY), "video/3gpp").position is not None
    assert "moov/trak/udta" in redact(sample.m4a(), "audio/mp4").removed


def test_mp4_without_metadata_is_the_same_bytes() -> None:
    plain = sample.ftyp(b"isom") + sample.box(b"moov", sample.box(b"mvhd", bytes(100)))
    assert redact_isobmff(plain).data is plain


@pytest.mark.parametrize(
    "broken",
    [
        b"",
        b"\x00\x00\x00\x10ftypisom",
        sample.ftyp(b"isom") + b"\x00\x00\x01\x00moov" + bytes(8),
        sample.ftyp(b"isom") + b"\x00\x00\x00\x04moov",
        sample.ftyp(b"isom") + sample.box(b"moov", b"\x00\x00\x00\x50udta"),
    ],
)
def test_mp4_structure_that_cannot_be_walked(broken: bytes) -> None:
    with pytest.raises(MalformedMedia):
        redact_isobmff(broken)


def test_formats_without_location_metadata_come_back_as_they_are() -> None:
    voice = sample.ogg_opus()
    assert redact(voice, "audio/ogg").data is voice


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            (b"\xff\xd8", "image/jpeg"),
            (sample.jpeg(gps=sample.ZOCALO)[:30], "image/jpeg"),
            (sample.png()[:8], "image/png"),
            (sample.ftyp(b"isom"), "video/mp4"),
            (sample.mp4(location=SYDNEY)[:60], "video/mp4"),
        ]
    ),
    st.binary(max_size=300),
)
def test_junk_after_a_valid_start_raises_nothing_but_malformed(
    start: tuple[bytes, str], junk: bytes
) -> None:
    head, mime = start
    try:
        result = redact(head + junk, mime)
    except MalformedMedia:
        return
    assert isinstance(result.data, bytes)
