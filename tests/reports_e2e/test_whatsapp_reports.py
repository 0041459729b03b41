"""WhatsApp to the police queue, end to end, on both backends: signed webhook calls from
Meta (here: built as Meta builds them), media fetched from the Graph API stand-in, the
report in the dispatchers' queue for the right people only, and the replies in Spanish
the person reads. Bad input of every kind gets its answer and changes nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from graph_standin import GraphStandin, message, notification, signed
from reports_world import APP_SECRET, VERIFY_TOKEN, WEBHOOK, Desk, running_desk
from sample_media import ZOCALO, jpeg, ogg_opus, png

from sigueme.reports.grouping import (
    reply_added,
    reply_ask_location,
    reply_media_refused,
    reply_received,
    reply_unsupported,
)
from sigueme.reports.media import MIB, MediaProblem
from sigueme.reports.metadata import redact
from sigueme.reports.whatsapp import SIGNATURE_HEADER, sign
from sigueme.store.models import Alert, ReportMessage, Role

NOW = int(time.time())
ANA = "5217771234567"


def text(body: str, wamid: str, at: int = NOW) -> dict[str, object]:
    return message("text", {"body": body}, wamid=wamid, timestamp=at, sender=ANA)


def location(wamid: str, at: int = NOW, lat: float = 18.9186, lon: float = -99.2342) -> dict:
    place = {"latitude": lat, "longitude": lon, "name": "Jardín Borda", "address": "Morelos 271"}
    return message("location", place, wamid=wamid, timestamp=at, sender=ANA)


def image(media_id: str, wamid: str, at: int = NOW, mime: str = "image/jpeg") -> dict:
    ref = {"id": media_id, "mime_type": mime, "caption": "Así quedó la camioneta"}
    return message("image", ref, wamid=wamid, timestamp=at, sender=ANA)


async def test_a_conversation_becomes_one_report_in_the_right_queue(desk: Desk) -> None:
    admin = await desk.account("admin", Role.ADMIN)
    police = await desk.account("despacho", Role.DISPATCHER)
    other_monitor = await desk.account("observador-yautepec", Role.MONITOR)
    traveller = await desk.account("ana-viajera", Role.TRAVELLER)
    await desk.channel(admin, "Yautepec", other_monitor)
    photo = jpeg(gps=ZOCALO)
    media_id = desk.graph.add_media(photo, "image/jpeg")

    # Text, then a location, then a photo: three signed calls, a minute apart.
    r = await desk.webhook(
        text("Nos amenazaron afuera del mitin, eran tres hombres en una camioneta", "wamid.A1")
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"taken": 1, "duplicates": 0, "refused": 0}
    r = await desk.webhook(location("wamid.A2", NOW + 60))
    assert r.status_code == 200, r.text
    r = await desk.webhook(image(media_id, "wamid.A3", NOW + 120))
    assert r.status_code == 200, r.text

    [report] = await desk.reports()
    assert report.source == "whatsapp"
    assert report.category == "other"
    assert report.folio is not None
    assert report.folio.startswith("SC-")
    assert "Nos amenazaron" in report.text
    assert "Así quedó la camioneta" in report.text
    assert (report.lon, report.lat, report.position_source) == (-99.2342, 18.9186, "whatsapp")
    assert report.place == "Jardín Borda, Morelos 271"
    assert (report.reporter_name, report.reporter_contact) == ("Ana", ANA)
    assert await desk.count(ReportMessage) == 3

    # The photo was fetched from the stand-in, kept as it arrived with its SHA-256, and
    # a copy without its GPS position was made for monitors.
    [media] = await desk.media(report.id)
    assert media.sha256 == hashlib.sha256(photo).hexdigest()
    assert (media.size, media.content_type, media.source_id) == (len(photo), "image/jpeg", media_id)
    assert (media.lat, media.lon) == pytest.approx(ZOCALO, abs=1e-4)
    store = desk.app.state.evidence_store
    assert await store.get(media.storage_key) == photo
    assert media.redacted_key is not None
    assert media.redacted_key != media.storage_key
    copy = await store.get(media.redacted_key)
    assert redact(copy, "image/jpeg").position is None
    assert hashlib.sha256(copy).hexdigest() == media.redacted_sha256

    # The person was answered in Spanish, with the folio.
    folio = report.folio
    assert desk.replies() == [
        reply_received(folio),
        reply_ask_location(folio),
        reply_added(folio),
        reply_added(folio),
    ]
    assert {m["to"] for m in desk.graph.sent} == {ANA}

    # One alert in the general queue: the dispatcher sees it, with the report and without
    # who made it; its later messages repeated it.
    r = await desk.alerts(police)
    assert r.status_code == 200, r.text
    [alert] = r.json()["alerts"]
    assert (alert["kind"], alert["severity"], alert["status"]) == ("report", 2, "open")
    assert alert["report"]["folio"] == folio
    assert alert["report"]["media"] == 1
    assert alert["position"] == {"type": "Point", "coordinates": [-99.2342, 18.9186]}
    assert ANA not in json.dumps(alert)
    assert "Ana" not in json.dumps(alert["traveller"])
    assert [a for a, _ in await desk.history(alert["id"])] == ["raised", "repeated", "repeated"]
    r = await desk.client.get(f"/v1/alerts/{alert['id']}", headers=police.headers)
    assert r.status_code == 200
    assert r.json()["report"]["text"] == report.text

    # And no one else: a monitor of another channel, a traveller.
    for who in (other_monitor, traveller):
        r = await desk.client.get("/v1/reports", headers=who.headers)
        assert r.status_code == 200
        assert r.json()["reports"] == []
        r = await desk.client.get(f"/v1/reports/{report.id}", headers=who.headers)
        assert r.status_code == 404
        r = await desk.client.get(f"/v1/reports/{report.id}/media/{media.id}", headers=who.headers)
        assert r.status_code == 404
        assert (await desk.alerts(who)).status_code == 403


async def test_a_bad_signature_is_refused_and_stores_nothing(desk: Desk) -> None:
    media_id = desk.graph.add_media(jpeg(), "image/jpeg")
    body, headers = signed(
        APP_SECRET, notification(text("hola", "wamid.B1"), image(media_id, "wamid.B2"))
    )
    before = await desk.totals()
    forged = [
        {**headers, SIGNATURE_HEADER: sign("otro-secreto", body)},
        {k: v for k, v in headers.items() if k != SIGNATURE_HEADER},
        {**headers, SIGNATURE_HEADER: "sha256=" + "0" * 64},
    ]
    for bad in forged:
        r = await desk.raw_webhook(body, bad)
        assert r.status_code == 401, r.text
    # The body changed after signing (one byte): refused as well.
    r = await desk.raw_webhook(body.replace(b"hola", b"hole"), headers)
    assert r.status_code == 401
    assert await desk.totals() == before
    assert desk.graph.requests == []
    assert desk.graph.sent == []
    assert desk.evidence_files() == []


async def test_a_replayed_call_doubles_nothing(desk: Desk) -> None:
    media_id = desk.graph.add_media(jpeg(gps=ZOCALO), "image/jpeg")
    body, headers = signed(
        APP_SECRET,
        notification(text("Compran votos en la colonia", "wamid.C1"), image(media_id, "wamid.C2")),
    )
    r = await desk.raw_webhook(body, headers)
    assert r.status_code == 200
    assert r.json()["taken"] == 2
    after_first = await desk.totals()
    replies = len(desk.graph.sent)
    fetched = len(desk.graph.requests)

    # Meta resends the same call (it does when an answer is late).
    r = await desk.raw_webhook(body, headers)
    assert r.status_code == 200
    assert r.json() == {"taken": 0, "duplicates": 2, "refused": 0}
    assert await desk.totals() == after_first
    assert len(desk.graph.sent) == replies  # nobody is answered twice
    assert len(desk.graph.requests) == fetched  # nothing downloaded again
    assert after_first["reports"] == 1
    assert after_first["media"] == 1

    # A replayed message among new ones: only the new one is taken.
    r = await desk.webhook(text("Compran votos en la colonia", "wamid.C1"), text("más", "wamid.C3"))
    assert r.json() == {"taken": 1, "duplicates": 1, "refused": 0}
    assert await desk.count(ReportMessage) == 3


@pytest.mark.parametrize(
    ("data", "announced", "mime", "problem"),
    [
        # Graph announces more than WhatsApp's 5 MB for an image: not even downloaded.
        (jpeg(), 6 * MIB, "image/jpeg", MediaProblem.TOO_BIG),
        # Really larger once downloaded (sent chunked, the size unknown up front).
        (jpeg() + bytes(5 * MIB), None, "image/jpeg", MediaProblem.TOO_BIG),
        # A PNG declared as a voice note.
        (png(), None, "audio/ogg", MediaProblem.MISLABELLED),
    ],
    ids=["announced-too-big", "too-big", "mislabelled"],
)
async def test_a_refused_file_gets_a_spanish_answer_and_changes_nothing(
    desk: Desk, data: bytes, announced: int | None, mime: str, problem: MediaProblem
) -> None:
    r = await desk.webhook(text("Golpearon a un brigadista", "wamid.D1"))
    assert r.status_code == 200
    [report] = await desk.reports()
    before = await desk.totals()
    files = desk.evidence_files()
    media_id = desk.graph.add_media(data, mime, file_size=announced, chunked=announced is None)
    kind = "audio" if mime.startswith("audio") else "image"
    ref = {"id": media_id, "mime_type": mime}
    r = await desk.webhook(message(kind, ref, wamid="wamid.D2", timestamp=NOW + 30, sender=ANA))
    assert r.status_code == 200, r.text
    assert r.json() == {"taken": 0, "duplicates": 0, "refused": 1}
    assert desk.replies()[-1] == reply_media_refused(problem)
    assert "Folio" not in desk.replies()[-1]
    assert await desk.totals() == before
    assert desk.evidence_files() == files
    assert await desk.media(report.id) == []

    # A refused file as someone's first message starts no report.
    other = desk.graph.add_media(data, mime, file_size=announced, chunked=announced is None)
    ref = {"id": other, "mime_type": mime}
    r = await desk.webhook(
        message(kind, ref, wamid="wamid.D3", timestamp=NOW, sender="5217770000000"),
        wa_id="5217770000000",
        user_id=None,
    )
    assert r.json()["refused"] == 1
    assert await desk.totals() == before


async def test_messages_after_the_window_start_a_new_report(desk: Desk) -> None:
    r = await desk.webhook(location("wamid.E1", NOW - 900))
    assert r.status_code == 200
    voice = desk.graph.add_media(ogg_opus(), "audio/ogg")
    note = message(
        "audio",
        {"id": voice, "mime_type": "audio/ogg; codecs=opus", "voice": True},
        wamid="wamid.E2",
        timestamp=NOW - 900 + 299,
        sender=ANA,
    )
    r = await desk.webhook(note)
    assert r.status_code == 200
    r = await desk.webhook(text("Otra cosa: quitaron propaganda", "wamid.E3", NOW))
    assert r.status_code == 200
    first, second = await desk.reports()
    assert first.folio != second.folio
    assert [m.kind for m in await desk.media(first.id)] == ["audio"]
    assert second.text == "Otra cosa: quitaron propaganda"
    assert second.lon is None
    assert desk.replies() == [
        reply_received(first.folio or ""),  # a location first: no need to ask for it
        reply_added(first.folio or ""),
        reply_received(second.folio or ""),
        reply_ask_location(second.folio or ""),
    ]
    assert await desk.count(Alert) == 2


async def test_the_handshake(desk: Desk) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "8842"}
    r = await desk.client.get(WEBHOOK, params=params)
    assert (r.status_code, r.text) == (200, "8842")
    r = await desk.client.get(WEBHOOK, params={**params, "hub.verify_token": "otra"})
    assert r.status_code == 403


async def test_junk_and_oversized_bodies_are_refused(desk: Desk) -> None:
    body = b'{"object": "page"}'
    r = await desk.raw_webhook(body, {SIGNATURE_HEADER: sign(APP_SECRET, body)})
    assert r.status_code == 422
    big = b" " * (1024 * 1024 + 1)
    r = await desk.raw_webhook(big, {SIGNATURE_HEADER: sign(APP_SECRET, big)})
    assert r.status_code == 413
    # Delivery receipts only: fine, nothing to take.
    r = await desk.webhook(statuses=[{"id": "wamid.X", "status": "read"}])
    assert r.status_code == 200
    assert r.json()["taken"] == 0
    assert (await desk.totals())["reports"] == 0


async def test_whatsapp_off_answers_clearly(
    database_url: str, tmp_path: Path, graph: GraphStandin
) -> None:
    off = {
        "whatsapp_verify_token": None,
        "whatsapp_app_secret": None,
        "whatsapp_access_token": None,
    }
    async with running_desk(database_url, tmp_path, graph, **off) as desk:
        r = await desk.client.get(WEBHOOK, params={"hub.mode": "subscribe"})
        assert r.status_code == 404
        assert "not configured" in r.json()["detail"]
        r = await desk.webhook(text("hola", "wamid.F1"))
        assert r.status_code == 404
    half = {"whatsapp_access_token": None}
    async with running_desk(database_url, tmp_path, graph, **half) as desk:
        r = await desk.webhook(text("hola", "wamid.F1"))
        assert r.status_code == 503
        assert "ACCESS_TOKEN" in r.json()["detail"]
        assert (await desk.totals())["reports"] == 0


async def test_the_same_call_twice_at_once_makes_one_report(desk: Desk) -> None:
    media_id = desk.graph.add_media(jpeg(), "image/jpeg")
    body, headers = signed(
        APP_SECRET,
        notification(text("Están golpeando a alguien", "wamid.G1"), image(media_id, "wamid.G2")),
    )
    first, second = await asyncio.gather(
        desk.raw_webhook(body, headers), desk.raw_webhook(body, headers)
    )
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["taken"] + second.json()["taken"] == 2
    totals = await desk.totals()
    assert (totals["reports"], totals["messages"], totals["media"], totals["alerts"]) == (
        1,
        2,
        1,
        1,
    )
    [report] = await desk.reports()
    assert desk.replies() == [
        reply_received(report.folio or ""),
        reply_ask_location(report.folio or ""),
        reply_added(report.folio or ""),
    ]


async def test_what_a_report_cannot_hold_is_answered(desk: Desk) -> None:
    sticker = message(
        "sticker",
        {"id": "123", "mime_type": "image/webp"},
        wamid="wamid.H1",
        timestamp=NOW,
        sender=ANA,
    )
    r = await desk.webhook(sticker)
    assert r.json()["taken"] == 0
    assert desk.replies() == [reply_unsupported()]
    assert (await desk.totals())["reports"] == 0
    # Within a report: kept as one of its messages (a replay skips it), no new content.
    await desk.webhook(text("Nos quitaron las lonas", "wamid.H2"))
    document = message(
        "document",
        {"id": "456", "mime_type": "application/pdf", "filename": "acta.pdf"},
        wamid="wamid.H3",
        timestamp=NOW + 10,
        sender=ANA,
    )
    r = await desk.webhook(document)
    assert r.json()["taken"] == 1
    assert desk.replies()[-1] == reply_unsupported()
    [report] = await desk.reports()
    alert = await desk.alert_of(report.id)
    assert [a for a, _ in await desk.history(alert.id)] == ["raised"]
    assert await desk.media(report.id) == []
