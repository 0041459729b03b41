"""The WhatsApp webhook: Meta's handshake, the signature over the raw body, and the
notifications read into messages (and junk refused with one error type only)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from typing import Any

import pytest
from graph_standin import PHONE_NUMBER_ID, message, notification, signed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigueme.errors import Invalid
from sigueme.reports.whatsapp import (
    MAX_NOTIFICATION_BYTES,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    SIGNATURE_HEADER,
    IncomingMessage,
    Location,
    MediaRef,
    MessageType,
    NotificationError,
    parse_notification,
    sign,
    verify_challenge,
    verify_signature,
)

SECRET = "app-secret-de-prueba"
T0 = 1780000000


def body_of(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


# -- the handshake -----------------------------------------------------------------------


def test_the_handshake_echoes_the_challenge_for_the_right_token() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "ficha", "hub.challenge": "1158201444"}
    assert verify_challenge(params, "ficha") == "1158201444"


@pytest.mark.parametrize(
    ("params", "token"),
    [
        ({"hub.mode": "subscribe", "hub.verify_token": "otra", "hub.challenge": "1"}, "ficha"),
        ({"hub.mode": "unsubscribe", "hub.verify_token": "ficha", "hub.challenge": "1"}, "ficha"),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, "ficha"),
        ({"hub.mode": "subscribe", "hub.verify_token": "ficha"}, "ficha"),
        ({"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}, ""),
        ({"hub.mode": "subscribe", "hub.verify_token": "ficha", "hub.challenge": "<b>"}, "ficha"),
        ({}, "ficha"),
    ],
)
def test_the_handshake_refuses(params: dict[str, str], token: str) -> None:
    assert verify_challenge(params, token) is None


# -- the signature -----------------------------------------------------------------------


def test_a_good_signature_verifies() -> None:
    body, headers = signed(
        SECRET, notification(message("text", {"body": "hola"}, wamid="w1", timestamp=T0))
    )
    header = headers[SIGNATURE_HEADER]
    assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify_signature(SECRET, body, header)
    assert verify_signature(SECRET.encode(), body, header.upper().replace("SHA256=", "sha256="))


def test_bad_missing_and_malformed_signatures_fail() -> None:
    body = b'{"object":"whatsapp_business_account","entry":[]}'
    good = sign(SECRET, body)
    assert not verify_signature("otro-secreto", body, good)  # bad key
    assert not verify_signature(SECRET, body + b" ", good)  # body changed
    assert not verify_signature(SECRET, body, None)  # missing
    assert not verify_signature(SECRET, body, "")
    assert not verify_signature(SECRET, body, good.replace("sha256=", "sha1="))  # wrong prefix
    assert not verify_signature(SECRET, body, good.removeprefix("sha256="))  # no prefix
    assert not verify_signature(SECRET, body, good[:-1])  # too short
    assert not verify_signature(SECRET, body, good + "0")  # too long
    assert not verify_signature(SECRET, body, good[:-1] + "g")  # not hex
    assert not verify_signature("", body, sign("", body))  # no secret configured


def test_a_re_serialised_body_does_not_verify() -> None:
    document = notification(
        message("text", {"body": "Amenaza en la colonia Centro"}, wamid="w1", timestamp=T0)
    )
    body, headers = signed(SECRET, document)
    again = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    assert again != body
    assert json.loads(again) == json.loads(body)
    assert not verify_signature(SECRET, again, headers[SIGNATURE_HEADER])


# -- notifications -----------------------------------------------------------------------


def test_the_reference_example_a_location() -> None:
    raw = (
        b'{"object":"whatsapp_business_account","entry":[{"id":"WABA_ID","changes":[{"field":'
        b'"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":'
        b'"527775006264","phone_number_id":"PHONE_ID"},"contacts":[{"profile":{"name":"Ana"},'
        b'"wa_id":"5217771234567","user_id":"MX.123"}],"messages":[{"from":"5217771234567","id":'
        b'"wamid.ABC","timestamp":"1780000000","type":"location","location":{"latitude":18.9242,'
        b'"longitude":-99.2216,"name":"Z\xc3\xb3calo"}}]}}]}]}'
    )
    assert parse_notification(raw) == [
        IncomingMessage(
            wamid="wamid.ABC",
            timestamp=1780000000,
            type=MessageType.LOCATION,
            raw_type="location",
            phone_number_id="PHONE_ID",
            wa_id="5217771234567",
            user_id="MX.123",
            profile_name="Ana",
            location=Location(lat=18.9242, lon=-99.2216, name="Zócalo"),
        )
    ]


def test_text_and_media_messages() -> None:
    document = notification(
        message("text", {"body": "Nos amenazaron afuera del comité"}, wamid="w1", timestamp=T0),
        message(
            "image",
            {"id": "8812", "mime_type": "image/jpeg", "sha256": "abc=", "caption": "La camioneta"},
            wamid="w2",
            timestamp=T0 + 20,
        ),
        message(
            "audio",
            {"id": "8813", "mime_type": "audio/ogg; codecs=opus", "voice": True},
            wamid="w3",
            timestamp=T0 + 40,
        ),
        message("video", {"id": "8814", "mime_type": "video/mp4"}, wamid="w4", timestamp=T0 + 60),
        message(
            "document",
            {"id": "8815", "mime_type": "application/pdf", "filename": "acta.pdf"},
            wamid="w5",
            timestamp=T0 + 80,
        ),
    )
    text, image, audio, video, document_ = parse_notification(body_of(document))
    assert (text.type, text.text, text.sender, text.reply_to) == (
        MessageType.TEXT,
        "Nos amenazaron afuera del comité",
        "user:MX.1502576394655843",
        "5217771234567",
    )
    assert text.phone_number_id == PHONE_NUMBER_ID
    assert text.sent_at.year == 2026
    assert (image.type, image.caption) == (MessageType.IMAGE, "La camioneta")
    assert image.media == MediaRef(id="8812", mime_type="image/jpeg", sha256="abc=")
    assert audio.media is not None
    assert audio.media.voice
    assert video.type is MessageType.VIDEO
    assert document_.media is not None
    assert document_.media.filename == "acta.pdf"


def test_a_hidden_number_is_identified_by_the_business_scoped_user_id() -> None:
    document = notification(
        message("text", {"body": "hola"}, wamid="w1", timestamp=T0, sender=None, user_id="MX.77"),
        wa_id=None,
        user_id="MX.77",
    )
    (parsed,) = parse_notification(body_of(document))
    assert (parsed.wa_id, parsed.user_id, parsed.sender, parsed.reply_to) == (
        None,
        "MX.77",
        "user:MX.77",
        "MX.77",
    )
    # Without a BSUID at all, the number is the key.
    document = notification(
        message("text", {"body": "hola"}, wamid="w2", timestamp=T0), user_id=None
    )
    assert parse_notification(body_of(document))[0].sender == "wa:5217771234567"


def test_unknown_types_are_unsupported_not_errors() -> None:
    document = notification(
        message("sticker", {"id": "1", "mime_type": "image/webp"}, wamid="w1", timestamp=T0),
        message("reaction", {"message_id": "w0", "emoji": "👍"}, wamid="w2", timestamp=T0),
        message("unsupported", None, wamid="w3", timestamp=T0),
        message("a-type-from-2030", None, wamid="w4", timestamp=T0),
    )
    parsed = parse_notification(body_of(document))
    assert [m.type for m in parsed] == [MessageType.UNSUPPORTED] * 4
    assert [m.raw_type for m in parsed] == [
        "sticker",
        "reaction",
        "unsupported",
        "a-type-from-2030",
    ]


def test_statuses_and_other_fields_give_no_messages() -> None:
    receipts = notification(
        statuses=[{"id": "wamid.X", "status": "delivered", "timestamp": str(T0)}]
    )
    assert parse_notification(body_of(receipts)) == []
    other = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"x": 1}}]}],
    }
    assert parse_notification(body_of(other)) == []


def test_text_is_made_safe_to_store() -> None:
    document = notification(message("text", {"body": "a\x00b \ud800c"}, wamid="w1", timestamp=T0))
    (parsed,) = parse_notification(json.dumps(document).encode())
    assert parsed.text == "ab ?c"
    parsed.text.encode("utf-8")


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (lambda d: d.update(object="page"), "object", "whatsapp_business_account"),
        (lambda d: d.update(entry={}), "entry", "must be a list"),
        (lambda d: d["entry"][0].update(changes="x"), "entry[0].changes", "must be a list"),
        (
            lambda d: d["entry"][0]["changes"][0]["value"].pop("metadata"),
            "entry[0].changes[0].value.metadata",
            "must be an object",
        ),
        (
            lambda d: _message(d).update(timestamp="1780000000.5"),
            "entry[0].changes[0].value.messages[0].timestamp",
            "epoch seconds",
        ),
        (
            lambda d: _message(d).update(timestamp="99"),
            "entry[0].changes[0].value.messages[0].timestamp",
            "plausible",
        ),
        (
            lambda d: _message(d).update(timestamp="99999999999"),
            "entry[0].changes[0].value.messages[0].timestamp",
            "plausible",
        ),
        (
            lambda d: _message(d).update(timestamp=True),
            "entry[0].changes[0].value.messages[0].timestamp",
            "epoch seconds",
        ),
        (lambda d: _message(d).pop("id"), "entry[0].changes[0].value.messages[0].id", "non-empty"),
        (
            lambda d: _message(d).update(text={"body": 5}),
            "entry[0].changes[0].value.messages[0].text.body",
            "must be a string",
        ),
        (
            lambda d: _message(d).update(text={"body": "x" * 20000}),
            "entry[0].changes[0].value.messages[0].text.body",
            "longer than",
        ),
        (
            lambda d: _message(d).update(
                type="location", location={"latitude": 91, "longitude": 0}
            ),
            "entry[0].changes[0].value.messages[0].location.latitude",
            "between -90 and 90",
        ),
        (
            lambda d: _message(d).update(
                type="location", location={"latitude": "18", "longitude": 0}
            ),
            "entry[0].changes[0].value.messages[0].location.latitude",
            "must be a number",
        ),
        (
            lambda d: _message(d).update(type="image", image={"mime_type": "image/jpeg"}),
            "entry[0].changes[0].value.messages[0].image.id",
            "non-empty",
        ),
        (
            lambda d: _message(d).update(type="audio", audio={"id": "1", "voice": "yes"}),
            "entry[0].changes[0].value.messages[0].audio.voice",
            "true or false",
        ),
        (
            lambda d: (
                _message(d).pop("from"),
                d["entry"][0]["changes"][0]["value"].pop("contacts"),
            ),
            "entry[0].changes[0].value.messages[0].from",
            "sender is missing",
        ),
    ],
)
def test_malformed_notifications_name_the_field(mutate: Any, field: str, reason: str) -> None:
    document = notification(message("text", {"body": "hola"}, wamid="w1", timestamp=T0))
    mutate(document)
    with pytest.raises(NotificationError) as caught:
        parse_notification(body_of(document))
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert isinstance(caught.value, Invalid)


def _message(document: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = document["entry"][0]["changes"][0]["value"]["messages"][0]
    return found


def test_a_message_from_the_future_is_refused_when_the_clock_is_given() -> None:
    document = notification(message("text", {"body": "hola"}, wamid="w1", timestamp=T0 + 7200))
    assert parse_notification(body_of(document))  # no clock: only plausibility
    with pytest.raises(NotificationError, match="in the future"):
        parse_notification(body_of(document), now=T0)
    assert parse_notification(body_of(document), now=T0 + 7000)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"[]",
        b"\xff\xfe{}",
        b'{"object": NaN}',
        b'{"object": Infinity}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"object":"whatsapp_business_account","entry":[' + b"{}," * 1000 + b"{}]}",
        b" " * (MAX_NOTIFICATION_BYTES + 1),
    ],
)
def test_junk_bodies(raw: bytes) -> None:
    with pytest.raises(NotificationError):
        parse_notification(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


def _either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``valid``, one time in eight any JSON value."""
    return st.integers(0, 7).flatmap(lambda n: json_values if n == 0 else valid)


IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.=", min_size=1, max_size=12)
_MEDIA = st.fixed_dictionaries(
    {"id": IDS},
    optional={
        "mime_type": st.just("image/jpeg"),
        "voice": st.booleans(),
        "caption": st.text(max_size=10),
    },
)
CONTENT = {
    "text": st.fixed_dictionaries({"body": st.text(max_size=30)}),
    "location": st.fixed_dictionaries(
        {"latitude": st.floats(-90, 90), "longitude": st.floats(-180, 180)},
        optional={"name": st.text(max_size=10)},
    ),
    "image": _MEDIA,
    "audio": _MEDIA,
    "video": _MEDIA,
    "document": _MEDIA,
    "sticker": _MEDIA,
}


@st.composite
def near_notifications(draw: st.DrawFn) -> dict[str, Any]:
    """Notifications whose every part may be right or junk."""
    kind = draw(_either(st.sampled_from(sorted(CONTENT))))
    content = draw(
        _either(CONTENT[kind]) if isinstance(kind, str) and kind in CONTENT else json_values
    )
    msg = {
        "from": draw(_either(st.just("5217771234567"))),
        "id": draw(_either(IDS)),
        "timestamp": draw(_either(st.integers(MIN_TIMESTAMP - 5, MAX_TIMESTAMP + 5).map(str))),
        "type": kind,
    }
    if isinstance(kind, str):
        msg[kind] = content
    value = {
        "messaging_product": draw(_either(st.just("whatsapp"))),
        "metadata": draw(_either(st.just({"phone_number_id": "1"}))),
        "contacts": draw(
            _either(st.just([{"profile": {"name": "Ana"}, "wa_id": "5217771234567"}]))
        ),
        "messages": draw(_either(st.just([msg]))),
    }
    change = {"field": draw(_either(st.just("messages"))), "value": draw(_either(st.just(value)))}
    entry = {"id": "1", "changes": draw(_either(st.just([change])))}
    return {
        "object": draw(_either(st.just("whatsapp_business_account"))),
        "entry": draw(_either(st.just([entry]))),
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_notifications())
def test_near_notifications_parse_or_raise_only_the_parse_error(document: dict[str, Any]) -> None:
    outcome: list[IncomingMessage] | NotificationError
    try:
        outcome = parse_notification(json.dumps(document).encode())
    except NotificationError as exc:
        outcome = exc
    if isinstance(outcome, NotificationError):
        assert outcome.field
        assert outcome.reason
    else:
        for parsed in outcome:
            assert isinstance(parsed, IncomingMessage)
            assert parsed.wamid
            assert parsed.sender


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_parse_or_raise_only_the_parse_error(raw: bytes) -> None:
    with contextlib.suppress(NotificationError):
        parse_notification(raw)
