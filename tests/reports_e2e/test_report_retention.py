"""Retention of reports, on both backends: past the retention period a report whose
alert is closed forgets its content, place, reporter and evidence (files included); a
report whose alert is still live keeps everything, and so does a file another report
still holds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from graph_standin import message
from reports_world import Desk
from sample_media import ZOCALO, jpeg, ogg_opus

from sigueme.store.models import Alert, Report, ReportMessage, Role
from sigueme.store.reports import purge_report_evidence

NOW = int(time.time())


async def test_old_closed_reports_forget_their_content_and_evidence(desk: Desk) -> None:
    ana = await desk.account("ana")
    police = await desk.account("despacho", Role.DISPATCHER)
    photo, voice = jpeg(gps=ZOCALO), ogg_opus()
    # A WhatsApp report with a photo and a voice note, resolved by the police.
    photo_id = desk.graph.add_media(photo, "image/jpeg")
    voice_id = desk.graph.add_media(voice, "audio/ogg")
    r = await desk.webhook(
        message("text", {"body": "Me amenazaron"}, wamid="wamid.R1", timestamp=NOW),
        message(
            "image", {"id": photo_id, "mime_type": "image/jpeg"}, wamid="wamid.R2", timestamp=NOW
        ),
        message(
            "audio", {"id": voice_id, "mime_type": "audio/ogg"}, wamid="wamid.R3", timestamp=NOW
        ),
    )
    assert r.json()["taken"] == 3
    [old] = await desk.reports()
    old_alert = await desk.alert_of(old.id)
    r = await desk.client.post(
        f"/v1/alerts/{old_alert.id}/resolve", json={"outcome": "assisted"}, headers=police.headers
    )
    assert r.status_code == 200, r.text
    # An API report with the same voice note, still open.
    r = await desk.file_report(
        ana, {"text": "Siguen ahí", "lat": "18.92", "lon": "-99.22"}, [("v.ogg", voice, "")]
    )
    assert r.status_code == 201, r.text
    live_id = r.json()["id"]
    files = desk.evidence_files()
    assert len(files) == 3  # the photo, its copy without GPS, the voice note

    # Nothing is old enough yet.
    engine, store = desk.app.state.engine, desk.app.state.evidence_store
    now = datetime.now(UTC)
    result = await purge_report_evidence(engine, store, now - timedelta(days=30))
    assert (result.reports, result.media, result.orphan_keys) == (0, 0, ())

    # Both are past retention: the closed one is forgotten, the live one is kept.
    result = await purge_report_evidence(engine, store, now + timedelta(days=1))
    assert (result.reports, result.media, result.kept_live) == (1, 2, 1)
    assert len(result.orphan_keys) == 2  # the photo and its copy; the voice note is shared
    assert desk.evidence_files() == [f for f in files if f.name not in result.orphan_keys]
    assert len(desk.evidence_files()) == 1
    async with desk.app.state.sessions() as session:
        gone = await session.get(Report, old.id)
        kept = await session.get(Report, live_id)
        alert = await session.get(Alert, old_alert.id)
    assert gone is not None
    assert kept is not None
    assert alert is not None
    assert (gone.status, gone.text, gone.lon, gone.place) == ("purged", "", None, None)
    assert (gone.reporter_name, gone.reporter_contact, gone.wa_sender) == (None, None, None)
    assert gone.folio == old.folio
    assert (alert.status, alert.lon) == ("resolved", None)
    assert await desk.media(old.id) == []
    assert await desk.count(ReportMessage) == 0
    assert (kept.status, kept.text) == ("submitted", "Siguen ahí")
    assert len(await desk.media(live_id)) == 1
    r = await desk.client.get(f"/v1/reports/{old.id}", headers=police.headers)
    assert (r.json()["status"], r.json()["media"]) == ("purged", [])
    assert [h["action"] for h in r.json()["history"]] == [
        "raised",
        "repeated",
        "repeated",
        "resolved",
    ]

    # A second pass finds nothing more to do.
    result = await purge_report_evidence(engine, store, now + timedelta(days=1))
    assert (result.reports, result.kept_live) == (0, 1)
