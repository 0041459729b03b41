"""Evidence files: the type read from the content (checked against filetype as an
independent oracle), WhatsApp's limits, refusals with a clear reason, the SHA-256 on
arrival and the monitors' copy."""

from __future__ import annotations

import hashlib
import io

import filetype
import pytest
import sample_media as sample
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from sigueme.errors import Invalid
from sigueme.reports.media import (
    ACCEPTED,
    MAX_EVIDENCE_BYTES,
    MIB,
    Evidence,
    MediaKind,
    MediaProblem,
    MediaRejected,
    accept_evidence,
    canonical_mime,
    check_media,
    sniff,
)

SAMPLES = {
    "jpeg": (sample.jpeg(), "image/jpeg", MediaKind.IMAGE),
    "png": (sample.png(), "image/png", MediaKind.IMAGE),
    "ogg": (sample.ogg_opus(), "audio/ogg; codecs=opus", MediaKind.AUDIO),
    "mp3": (sample.mp3(), "audio/mpeg", MediaKind.AUDIO),
    "mp3-no-id3": (sample.mp3(id3=False), "audio/mpeg", MediaKind.AUDIO),
    "amr": (sample.amr(), "audio/amr", MediaKind.AUDIO),
    "aac": (sample.aac(), "audio/aac", MediaKind.AUDIO),
    "m4a": (sample.m4a(), "audio/mp4", MediaKind.AUDIO),
    "mp4": (sample.mp4(), "video/mp4", MediaKind.VIDEO),
    "3gp": (sample.three_gp(), "video/3gpp", MediaKind.VIDEO),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_each_accepted_type_is_read_from_its_content(name: str) -> None:
    data, declared, kind = SAMPLES[name]
    media_type = check_media(data, declared)
    assert media_type.kind is kind
    assert media_type.mime == canonical_mime(declared)
    # Without a declared type the content alone decides.
    assert check_media(data, None).kind is kind


@pytest.mark.parametrize("name", [n for n in SAMPLES if n != "3gp"])
def test_the_independent_oracle_agrees(name: str) -> None:
    # filetype knows every accepted type but 3GP, which it calls MP4.
    data, declared, _ = SAMPLES[name]
    guess = filetype.guess(data)
    assert guess is not None
    assert guess.mime in sniff(data)
    assert canonical_mime(declared) in sniff(data)


def test_the_oracle_calls_3gp_an_mp4_and_so_do_we_by_kind() -> None:
    guess = filetype.guess(sample.three_gp())
    assert guess is not None
    assert guess.mime == "video/mp4"
    assert sniff(sample.three_gp()) == ("video/3gpp",)


@pytest.mark.parametrize(
    ("declared", "canonical"),
    [
        ("audio/ogg; codecs=opus", "audio/ogg"),
        ("IMAGE/JPEG", "image/jpeg"),
        ("image/jpg", "image/jpeg"),
        ("audio/x-m4a", "audio/mp4"),
        ("audio/mp3", "audio/mpeg"),
        (" video/3gp ", "video/3gpp"),
    ],
)
def test_declared_types_are_read_with_their_usual_spellings(declared: str, canonical: str) -> None:
    assert canonical_mime(declared) == canonical
    assert canonical in ACCEPTED


def test_an_mp4_container_may_hold_audio_or_video() -> None:
    data = sample.mp4()
    assert check_media(data, "video/mp4").kind is MediaKind.VIDEO
    assert check_media(data, "audio/mp4").kind is MediaKind.AUDIO


@pytest.mark.parametrize(
    ("data", "declared", "content"),
    [
        (sample.png(), "image/jpeg", "image/png"),
        (sample.jpeg(), "image/png", "image/jpeg"),
        (sample.jpeg(), "video/mp4", "image/jpeg"),
        (sample.mp3(), "audio/ogg", "audio/mpeg"),
        (sample.ogg_opus(), "audio/mpeg", "audio/ogg"),
        (sample.m4a(), "video/mp4", "audio/mp4"),
        (sample.three_gp(), "video/mp4", "video/3gpp"),
        (sample.aac(), "audio/amr", "audio/aac"),
    ],
)
def test_content_that_disagrees_with_its_type_is_mislabelled(
    data: bytes, declared: str, content: str
) -> None:
    with pytest.raises(MediaRejected) as caught:
        check_media(data, declared, field="media[0]")
    assert caught.value.problem is MediaProblem.MISLABELLED
    assert caught.value.field == "media[0]"
    assert caught.value.reason == f"declared as {declared} but the content is {content}"


@pytest.mark.parametrize(
    ("data", "declared", "reason"),
    [
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(30), "image/webp", "image/webp are not"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(30), "image/jpeg", "content is image/webp"),
        (b"%PDF-1.7\n" + bytes(30), "application/pdf", "application/pdf are not"),
        (b"%PDF-1.7\n" + bytes(30), None, "content is application/pdf"),
        (b"GIF89a" + bytes(30), "image/jpeg", "content is image/gif"),
        (b"MZ\x90\x00" + bytes(60), "video/mp4", "content is application/x-msdownload"),
        (sample.ogg_theora(), "audio/ogg", "content is application/ogg"),
        (sample.mp4(b"qt  "), "video/mp4", "content is video/quicktime"),
        (b"hola, esto es texto", "audio/ogg", "not a recognised image, audio or video"),
        (sample.jpeg(), "application/octet-stream", "application/octet-stream are not"),
    ],
)
def test_types_that_are_not_accepted(data: bytes, declared: str | None, reason: str) -> None:
    with pytest.raises(MediaRejected) as caught:
        check_media(data, declared)
    assert caught.value.problem is MediaProblem.NOT_ALLOWED
    assert reason in caught.value.reason
    assert caught.value.field == "file"


def test_whatsapp_size_limits() -> None:
    photo = sample.jpeg()
    at_limit = photo + bytes(5 * MIB - len(photo))
    assert check_media(at_limit, "image/jpeg").kind is MediaKind.IMAGE
    with pytest.raises(MediaRejected) as caught:
        check_media(at_limit + b"\x00", "image/jpeg")
    assert caught.value.problem is MediaProblem.TOO_BIG
    assert str(5 * MIB) in caught.value.reason
    # A video of the same size is well within its own limit.
    video = sample.mp4(media=bytes(8 * MIB))
    assert check_media(video, "video/mp4").kind is MediaKind.VIDEO
    with pytest.raises(MediaRejected) as caught:
        check_media(bytes(MAX_EVIDENCE_BYTES + 1), "video/mp4")
    assert caught.value.problem is MediaProblem.TOO_BIG


def test_an_empty_file() -> None:
    with pytest.raises(MediaRejected) as caught:
        check_media(b"", "image/jpeg")
    assert caught.value.problem is MediaProblem.EMPTY


def test_a_refusal_is_an_invalid_input_with_spanish_words_for_the_reporter() -> None:
    with pytest.raises(Invalid):
        check_media(b"", None)
    for problem in MediaProblem:
        assert problem.reason_es
        assert problem.reason_es[0].islower()
    assert "5 MB" in MediaProblem.TOO_BIG.reason_es


def test_evidence_keeps_the_original_and_shows_monitors_a_copy_without_gps() -> None:
    original = sample.jpeg(gps=sample.ZOCALO)
    evidence = accept_evidence(original, "image/jpeg")
    assert evidence.data == original
    assert evidence.sha256 == hashlib.sha256(original).hexdigest()
    assert evidence.size == len(original)
    assert evidence.position is not None
    assert evidence.position.lat == pytest.approx(sample.ZOCALO[0], abs=1e-6)
    assert evidence.position.lon == pytest.approx(sample.ZOCALO[1], abs=1e-6)
    assert evidence.removed == ("APP1 Exif",)
    assert evidence.redacted is not None
    assert evidence.redacted_sha256 == hashlib.sha256(evidence.redacted).hexdigest()
    assert evidence.redacted_sha256 != evidence.sha256
    shown = Image.open(io.BytesIO(evidence.redacted))
    assert not shown.getexif().get_ifd(0x8825)
    # The original still carries its position, as evidence.
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(0x8825)


def test_evidence_without_metadata_is_shown_as_it_is() -> None:
    voice = sample.ogg_opus()
    evidence = accept_evidence(voice, "audio/ogg; codecs=opus")
    assert evidence.redacted is voice
    assert evidence.redacted_sha256 == evidence.sha256
    assert (evidence.removed, evidence.position) == ((), None)


def test_a_photo_whose_structure_cannot_be_walked_is_kept_but_never_shown() -> None:
    broken = b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00"  # a segment longer than the file
    evidence = accept_evidence(broken, "image/jpeg")
    assert evidence.data == broken
    assert evidence.redacted is None
    assert evidence.redacted_sha256 is None


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.sampled_from([s[0][:40] for s in SAMPLES.values()]).flatmap(
            lambda head: st.binary(max_size=100).map(lambda tail: head + tail)
        ),
    ),
    declared=st.one_of(
        st.none(), st.sampled_from([*ACCEPTED, "image/webp", "x/y; a=b"]), st.text()
    ),
)
def test_any_bytes_are_accepted_or_refused_with_a_reason(data: bytes, declared: str | None) -> None:
    outcome: Evidence | MediaRejected
    try:
        outcome = accept_evidence(data, declared)
    except MediaRejected as exc:
        outcome = exc
    if isinstance(outcome, MediaRejected):
        assert outcome.reason
    else:
        assert outcome.media_type.mime in sniff(data)
