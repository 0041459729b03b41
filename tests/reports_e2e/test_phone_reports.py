"""A report from the traveller's phone socket (small media inside the frame), on both
backends: linked to the trip, in the police queue, its file kept as evidence; refused
frames get an error frame and store nothing."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))

from asgi_websocket import connect
from reports_world import Desk
from sample_media import jpeg

from sigueme.store.models import Alert, Report, ReportMedia, Role

HERE = (-99.2216, 18.9242)


async def _socket_report(desk: Desk, frame: dict[str, Any]) -> tuple[dict[str, Any], str, Any]:
    ana = await desk.account("ana")
    trip_id = await desk.trip(ana, last=HERE)
    async with connect(desk.app, f"/v1/trips/{trip_id}/phone", ana.headers) as ws:
        assert (await ws.receive_json())["type"] == "ready"
        await ws.send_json(frame)
        answer: dict[str, Any] = await ws.receive_json()
    return answer, trip_id, ana


async def test_a_voice_note_or_photo_from_the_phone_becomes_a_report_of_the_trip(
    desk: Desk,
) -> None:
    photo = jpeg(gps=(18.9, -99.2))
    answer, trip_id, ana = await _socket_report(
        desk,
        {
            "type": "report",
            "text": "Nos siguen desde Temixco",
            "category": "threat",
            "media": [{"content_type": "image/jpeg", "data": base64.b64encode(photo).decode()}],
        },
    )
    assert answer["type"] == "report_ack", answer
    assert answer["folio"].startswith("SC-")
    r = await desk.client.get(f"/v1/reports/{answer['report_id']}", headers=ana.headers)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["text"] == "Nos siguen desde Temixco"
    assert [m["size"] for m in report["media"]] == [len(photo)]
    police = await desk.account("despacho", Role.DISPATCHER)
    queue = (await desk.client.get("/v1/alerts?kind=report", headers=police.headers)).json()
    [alert] = queue["alerts"]
    assert alert["id"] == answer["alert_id"]
    assert alert["trip"]["id"] == trip_id


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({"type": "report"}, "text"),
        ({"type": "report", "text": "x", "category": "nope"}, "category"),
        ({"type": "report", "text": "x", "lat": 18.9}, "lon"),
        (
            {"type": "report", "media": [{"content_type": "image/jpeg", "data": "%%%%"}]},
            "media[0].data",
        ),
        (
            {
                "type": "report",
                "media": [{"content_type": "audio/ogg", "data": base64.b64encode(jpeg()).decode()}],
            },
            "media[0]",
        ),
    ],
)
async def test_a_refused_report_frame_gets_an_error_and_stores_nothing(
    desk: Desk, frame: dict[str, Any], field: str
) -> None:
    answer, _, _ = await _socket_report(desk, frame)
    assert answer["type"] == "error", answer
    assert answer["field"] == field
    assert await desk.count(Report) == 0
    assert await desk.count(ReportMedia) == 0
    assert await desk.count(Alert) == 0
