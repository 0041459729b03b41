"""One person's messages into draft reports: the five-minute window from their previous
message, per sender, first location, media kept in order, resends counted once; folios
and the Spanish replies."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigueme.reports.grouping import (
    DEFAULT_WINDOW_S,
    MAX_MESSAGES,
    DraftReport,
    add_message,
    folio_year,
    format_folio,
    group_messages,
    parse_folio,
    reply_added,
    reply_ask_location,
    reply_media_refused,
    reply_received,
    reply_unsupported,
    starts_new_report,
)
from sigueme.reports.media import MediaProblem
from sigueme.reports.whatsapp import IncomingMessage, Location, MediaRef, MessageType

T0 = 1780000000
ANA = "5217771234567"
LUIS = "5217779876543"


def msg(
    wamid: str,
    t: int,
    kind: MessageType = MessageType.TEXT,
    *,
    who: str = ANA,
    text: str | None = None,
    caption: str | None = None,
    location: Location | None = None,
    media: MediaRef | None = None,
    raw_type: str | None = None,
) -> IncomingMessage:
    if kind is MessageType.TEXT and text is None:
        text = f"mensaje {wamid}"
    return IncomingMessage(
        wamid=wamid,
        timestamp=t,
        type=kind,
        raw_type=raw_type or kind.value,
        phone_number_id="PHONE",
        wa_id=who,
        user_id=None,
        profile_name="Ana" if who == ANA else "Luis",
        text=text,
        caption=caption,
        location=location,
        media=media,
    )


ZOCALO = Location(lat=18.9242, lon=-99.2216, name="Zócalo")


def test_text_then_location_then_photo_make_one_report() -> None:
    photo = MediaRef(id="m1", mime_type="image/jpeg")
    messages = [
        msg("w1", T0, text="Están amenazando a los del comité"),
        msg("w2", T0 + 60, MessageType.LOCATION, location=ZOCALO),
        msg("w3", T0 + 200, MessageType.IMAGE, media=photo, caption="Ésta es la camioneta"),
    ]
    (draft,) = group_messages(messages)
    assert draft.message_ids == ("w1", "w2", "w3")
    assert draft.text == "Están amenazando a los del comité\n\nÉsta es la camioneta"
    assert draft.location == ZOCALO
    assert [(p.wamid, p.type, p.ref) for p in draft.media] == [("w3", MessageType.IMAGE, photo)]
    assert (draft.first_at, draft.last_at) == (T0, T0 + 200)
    assert (draft.sender, draft.reply_to, draft.profile_name) == (f"wa:{ANA}", ANA, "Ana")


def test_the_window_runs_from_the_previous_message() -> None:
    # Each message within five minutes of the one before: one report of 12 minutes.
    chain = [msg(f"w{k}", T0 + k * 240) for k in range(4)]
    assert len(group_messages(chain)) == 1
    # Exactly at the window's edge still joins; a second later does not.
    assert len(group_messages([msg("a", T0), msg("b", T0 + DEFAULT_WINDOW_S)])) == 1
    first, second = group_messages([msg("a", T0), msg("b", T0 + DEFAULT_WINDOW_S + 1)])
    assert (first.message_ids, second.message_ids) == (("a",), ("b",))
    assert len(group_messages([msg("a", T0), msg("b", T0 + 61)], window_s=60)) == 2


def test_senders_are_kept_apart() -> None:
    drafts = group_messages([msg("a1", T0), msg("l1", T0 + 1, who=LUIS), msg("a2", T0 + 2)])
    assert [(d.sender, d.message_ids) for d in drafts] == [
        (f"wa:{ANA}", ("a1", "a2")),
        (f"wa:{LUIS}", ("l1",)),
    ]


def test_the_first_location_is_the_report_position() -> None:
    other = Location(lat=18.8, lon=-99.1)
    (draft,) = group_messages(
        [
            msg("w1", T0, MessageType.LOCATION, location=ZOCALO),
            msg("w2", T0 + 10, MessageType.LOCATION, location=other),
        ]
    )
    assert draft.location == ZOCALO
    assert draft.texts == ()


def test_resent_messages_count_once_and_change_nothing() -> None:
    first, started = add_message(None, msg("w1", T0))
    assert started
    again, started = add_message(first, msg("w1", T0))
    assert again is first
    assert not started
    assert group_messages([msg("w1", T0), msg("w1", T0), msg("w2", T0 + 5)])[0].message_ids == (
        "w1",
        "w2",
    )


def test_incremental_adding_matches_the_batch() -> None:
    messages = [msg("w1", T0), msg("w2", T0 + 100), msg("w3", T0 + 1000), msg("w4", T0 + 1100)]
    draft: DraftReport | None = None
    drafts: list[DraftReport] = []
    for m in messages:
        assert starts_new_report(draft, m) is (m.wamid in ("w1", "w3"))
        draft, started = add_message(draft, m)
        if started:
            drafts.append(draft)
        else:
            drafts[-1] = draft
    assert drafts == group_messages(messages)


def test_a_late_message_joins_the_draft_its_time_falls_in() -> None:
    draft, _ = add_message(None, msg("w2", T0 + 100))
    draft, started = add_message(draft, msg("w1", T0))
    assert not started
    assert (draft.first_at, draft.last_at, draft.message_ids) == (T0, T0 + 100, ("w2", "w1"))


def test_stickers_documents_and_the_like_add_nothing_but_are_noted() -> None:
    (draft,) = group_messages(
        [
            msg("w1", T0, MessageType.UNSUPPORTED, raw_type="sticker"),
            msg("w2", T0 + 1, MessageType.DOCUMENT, media=MediaRef(id="d1"), raw_type="document"),
        ]
    )
    assert (draft.texts, draft.media, draft.skipped) == ((), (), ("sticker", "document"))
    assert draft.message_ids == ("w1", "w2")


def test_a_draft_is_bounded() -> None:
    messages = [msg(f"w{k:03d}", T0 + k) for k in range(MAX_MESSAGES + 1)]
    first, second = group_messages(messages)
    assert len(first.message_ids) == MAX_MESSAGES
    assert second.message_ids == (f"w{MAX_MESSAGES:03d}",)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([ANA, LUIS]), st.integers(0, 3000)),
        max_size=30,
    ),
    st.randoms(use_true_random=False),
)
def test_grouping_is_deterministic_and_loses_nothing(
    spec: list[tuple[str, int]], rng: random.Random
) -> None:
    messages = [msg(f"w{k}", T0 + t, who=who) for k, (who, t) in enumerate(spec)]
    drafts = group_messages(messages)
    shuffled = list(messages)
    rng.shuffle(shuffled)
    assert group_messages(shuffled) == drafts
    ids = [wamid for d in drafts for wamid in d.message_ids]
    assert sorted(ids) == sorted(m.wamid for m in messages)
    for d in drafts:
        times = sorted(m.timestamp for m in messages if m.wamid in d.message_ids)
        assert all(b - a <= DEFAULT_WINDOW_S for a, b in itertools.pairwise(times))
        assert {m.sender for m in messages if m.wamid in d.message_ids} == {d.sender}


# -- folios ------------------------------------------------------------------------------


def test_folios() -> None:
    assert format_folio(2026, 123) == "SC-2026-000123"
    assert format_folio(2026, 1234567) == "SC-2026-1234567"
    assert parse_folio("SC-2026-000123") == (2026, 123)
    assert parse_folio(" sc-2026-000123 ") == (2026, 123)
    for bad in ("SC-2026-123", "XX-2026-000123", "SC-26-000123", "SC-2026-000000", ""):
        with pytest.raises(ValueError, match="folio"):
            parse_folio(bad)
    with pytest.raises(ValueError, match="folio"):
        format_folio(2026, 0)


def test_the_folio_year_is_the_year_in_morelos() -> None:
    # 2027-01-01 03:00 UTC is still 31 December 2026 in Cuernavaca (UTC−6).
    new_year_utc = datetime(2027, 1, 1, 3, 0, tzinfo=UTC).timestamp()
    assert folio_year(new_year_utc) == 2026
    assert folio_year(new_year_utc + 4 * 3600) == 2027


# -- replies -----------------------------------------------------------------------------


def test_replies_are_short_spanish_and_name_the_folio() -> None:
    received = reply_received("SC-2026-000123")
    assert received.startswith(
        "Recibimos tu reporte. Folio: SC-2026-000123. Cuidamos siempre tu identidad."
    )
    assert "5 minutos" in received
    assert "911" in received
    assert "SC-2026-000123" in reply_added("SC-2026-000123")
    assert "ubicación" in reply_ask_location("SC-2026-000123")
    assert "demasiado grande" in reply_media_refused(MediaProblem.TOO_BIG)
    assert "no corresponde" in reply_media_refused(MediaProblem.MISLABELLED)
    assert "fotos, audios y videos" in reply_unsupported()
    for text in (
        received,
        reply_added("SC-2026-000123"),
        reply_ask_location("SC-2026-000123"),
        reply_media_refused(MediaProblem.NOT_ALLOWED),
        reply_unsupported(),
    ):
        assert len(text) <= 400
