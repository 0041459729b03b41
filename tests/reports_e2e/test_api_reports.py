"""Reports through the API, on both backends: multipart uploads with evidence, the place
a report needs, trips, channels deciding who sees what, the evidence files served after
an access check, the audited reveal of the reporter, FEDE referrals and categories."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from graph_standin import GraphStandin
from reports_world import Account, Desk, running_desk
from sample_media import ZOCALO, jpeg, ogg_opus, png
from sqlalchemy import update

from sigueme.reports.metadata import redact
from sigueme.store.models import AlertOutbox, Report, ReportMedia, Role, Trip

HERE = {"lat": "18.9186", "lon": "-99.2342"}


async def _filed(desk: Desk, who: Account, fields: dict[str, Any], files: Any = None) -> dict:
    r = await desk.file_report(who, fields, files)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_multipart_report_with_evidence_enters_the_queue(desk: Desk) -> None:
    ana = await desk.account("ana", Role.TRAVELLER, display_name="Ana Díaz", contact="777 000 1111")
    police = await desk.account("despacho", Role.DISPATCHER)
    photo, voice = jpeg(gps=ZOCALO), ogg_opus()
    body = await _filed(
        desk,
        ana,
        {"text": "Nos dispararon al salir del mitin", "category": "attack_violence", **HERE},
        [("foto.jpg", photo, "image/jpeg"), ("nota.ogg", voice, "application/octet-stream")],
    )
    assert body["folio"].startswith("SC-")
    assert body["position_source"] == "phone"
    assert [m["sha256"] for m in body["media"]] == [
        hashlib.sha256(photo).hexdigest(),
        hashlib.sha256(voice).hexdigest(),
    ]

    # An attack is at the top of the queue, at once, without who reported it.
    r = await desk.alerts(police)
    [alert] = r.json()["alerts"]
    assert (alert["id"], alert["kind"], alert["severity"]) == (body["alert_id"], "report", 4)
    assert alert["report"]["folio"] == body["folio"]
    assert "Ana" not in json.dumps(alert)
    assert "777" not in json.dumps(alert)

    # On the police queue too (the relay puts it there), with the report.
    entry = await desk.queued(body["alert_id"])
    assert (entry["kind"], entry["event"], entry["severity"]) == ("report", "raised", "4")
    assert json.loads(entry["alert"])["report"]["folio"] == body["folio"]

    # The report shows each file's SHA-256 and size, to the reporter and the police.
    for who in (ana, police):
        r = await desk.client.get(f"/v1/reports/{body['id']}", headers=who.headers)
        assert r.status_code == 200, r.text
        shown = r.json()
        assert [(m["sha256"], m["size"]) for m in shown["media"]] == [
            (hashlib.sha256(photo).hexdigest(), len(photo)),
            (hashlib.sha256(voice).hexdigest(), len(voice)),
        ]
        assert shown["identity"] == "protected"
        assert "Ana" not in json.dumps(shown)
    assert [h["action"] for h in shown["history"]] == ["raised"]
    # Photo original and its copy without GPS, and the voice note (nothing to strip).
    assert len(desk.evidence_files()) == 3


async def test_where_a_report_happened(desk: Desk) -> None:
    ana = await desk.account("ana")
    police = await desk.account("despacho", Role.DISPATCHER)
    # A photo's own position fills a missing one.
    body = await _filed(
        desk, ana, {"text": "Pintas amenazantes"}, [("a.jpg", jpeg(gps=ZOCALO), "")]
    )
    assert body["position_source"] == "photo"
    r = await desk.client.get(f"/v1/reports/{body['id']}", headers=police.headers)
    lon, lat = r.json()["position"]["coordinates"]
    assert (lat, lon) == pytest.approx(ZOCALO, abs=1e-4)
    # A place in words, as JSON, with when it happened.
    r = await desk.client.post(
        "/v1/reports",
        json={
            "text": "Ofrecen despensas a cambio de la credencial",
            "category": "vote_buying_coercion",
            "place": "Colonia Antonio Barona, frente a la primaria",
            "occurred_at": "2026-05-30T18:20:00-06:00",
            "position_source": "map",
        },
        headers=ana.headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["position_source"] == "text"
    r = await desk.client.get(f"/v1/reports/{r.json()['id']}", headers=ana.headers)
    shown = r.json()
    assert shown["position"] is None
    assert shown["place"] == "Colonia Antonio Barona, frente a la primaria"
    assert shown["occurred_at"] == "2026-05-31T00:20:00Z"
    assert shown["electoral"] is True


@pytest.mark.parametrize(
    ("fields", "files", "status", "loc"),
    [
        ({"text": "Me siguen"}, [], 422, ["location"]),
        ({"text": "Me siguen"}, [("a.jpg", jpeg(), "image/jpeg")], 422, ["location"]),
        ({"text": "x", **HERE}, [("a.jpg", jpeg() + bytes(6 * 2**20), "image/jpeg")], 413, None),
        ({"text": "x", **HERE}, [("a.gif", b"GIF89a" + bytes(64), "image/gif")], 415, None),
        ({"text": "x", **HERE}, [("a.gif", b"GIF89a" + bytes(64), "")], 415, None),
        ({"text": "x", **HERE}, [("a.jpg", png(), "image/jpeg")], 422, ["media", 0]),
        (
            {"text": "x", **HERE},
            [("ok.jpg", jpeg(), "image/jpeg"), ("mal.ogg", jpeg(), "audio/ogg")],
            422,
            ["media", 1],
        ),
        ({"text": "x", "lat": "18.9"}, [], 422, ["lon"]),
        ({"text": "x", **HERE, "channel": "no-existe"}, [], 422, ["channel"]),
        ({"text": "x", **HERE, "category": "robo"}, [], 422, None),
        ({"text": "", **HERE}, [], 422, ["text"]),
        ({"text": "x", **HERE, "occurred_at": "2099-01-01T00:00:00Z"}, [], 422, None),
    ],
    ids=[
        "no-place",
        "no-place-photo-without-gps",
        "too-big",
        "not-allowed",
        "not-allowed-undeclared",
        "mislabelled",
        "one-bad-of-two",
        "half-a-position",
        "unknown-channel",
        "unknown-category",
        "empty",
        "future",
    ],
)
async def test_refused_reports_change_nothing(
    desk: Desk,
    fields: dict[str, Any],
    files: list[tuple[str, bytes, str]],
    status: int,
    loc: list[str | int] | None,
) -> None:
    ana = await desk.account("ana")
    r = await desk.file_report(ana, fields, files)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if loc is not None:
        assert detail[0]["loc"] == loc
    assert await desk.totals() == {
        "reports": 0,
        "messages": 0,
        "media": 0,
        "alerts": 0,
        "history": 0,
        "outbox": 0,
    }
    assert desk.evidence_files() == []


async def test_a_traveller_attaches_a_report_to_their_trip(desk: Desk) -> None:
    ana = await desk.account("ana")
    beto = await desk.account("beto")
    trip_id = await desk.trip(ana, last=(-99.2280, 18.9150))
    body = await _filed(
        desk, ana, {"text": "Nos cerraron el paso", "trip_id": trip_id}, [("v.ogg", ogg_opus(), "")]
    )
    assert body["position_source"] == "phone"
    alert = await desk.alert_of(body["id"])
    assert (alert.trip_id, alert.lon, alert.lat) == (trip_id, -99.2280, 18.9150)
    r = await desk.file_report(beto, {"text": "x", **HERE, "trip_id": trip_id})
    assert r.status_code == 404
    r = await desk.file_report(ana, {"text": "x", **HERE, "trip_id": trip_id, "anonymous": "true"})
    assert r.status_code == 422
    async with desk.app.state.sessions() as session:
        await session.execute(update(Trip).where(Trip.id == trip_id).values(status="finished"))
        await session.commit()
    r = await desk.file_report(ana, {"text": "x", **HERE, "trip_id": trip_id})
    assert r.status_code == 409
    assert (await desk.totals())["reports"] == 1


async def test_the_reporter_is_revealed_only_on_purpose_and_audited(desk: Desk) -> None:
    admin = await desk.account("admin", Role.ADMIN)
    ana = await desk.account("ana", display_name="Ana Díaz", contact="777 000 1111")
    police = await desk.account("despacho", Role.DISPATCHER)
    elsewhere = await desk.account("despacho-cuautla", Role.DISPATCHER)
    monitor = await desk.account("observador", Role.MONITOR)
    await desk.channel(admin, "Cuernavaca", police, monitor)
    await desk.channel(admin, "Cuautla", elsewhere)
    signed = await _filed(desk, ana, {"text": "Amenaza", **HERE, "channel": "Cuernavaca"})
    anonymous = await _filed(
        desk, ana, {"text": "Amenaza", **HERE, "channel": "Cuernavaca", "anonymous": "true"}
    )

    reason = {"reason": "contactar a la persona para su protección"}
    r = await desk.client.post(
        f"/v1/reports/{signed['id']}/reveal", json=reason, headers=police.headers
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "report_id": signed["id"],
        "anonymous": False,
        "name": "Ana Díaz",
        "contact": "777 000 1111",
        "user": "ana",
        "source": "api",
    }
    assert (police.id, "report.reveal") in await desk.audit(signed["id"])
    history = await desk.history(signed["alert_id"])
    assert ("revealed", True) in history  # police only

    r = await desk.client.post(
        f"/v1/reports/{anonymous['id']}/reveal", json=reason, headers=police.headers
    )
    assert r.json()["name"] == "anónimo"
    assert r.json()["contact"] is None
    async with desk.app.state.sessions() as session:
        row = await session.get(Report, anonymous["id"])
        assert row is not None
        assert (row.reporter_user_id, row.reporter_name, row.reporter_contact) == (None, None, None)
    # The anonymous reporter cannot find it again either.
    r = await desk.client.get(f"/v1/reports/{anonymous['id']}", headers=ana.headers)
    assert r.status_code == 404

    url = f"/v1/reports/{signed['id']}/reveal"
    assert (await desk.client.post(url, json=reason, headers=monitor.headers)).status_code == 403
    assert (await desk.client.post(url, json=reason, headers=ana.headers)).status_code == 403
    assert (await desk.client.post(url, json=reason, headers=elsewhere.headers)).status_code == 404
    assert (await desk.client.post(url, json={}, headers=police.headers)).status_code == 422
    assert [a for _, a in await desk.audit(signed["id"])].count("report.reveal") == 1


async def test_electoral_crimes_go_to_fede_and_categories_are_set(desk: Desk) -> None:
    ana = await desk.account("ana")
    police = await desk.account("despacho", Role.DISPATCHER)
    votes = await _filed(
        desk, ana, {"text": "Compra de votos", **HERE, "category": "vote_buying_coercion"}
    )
    threat = await _filed(desk, ana, {"text": "Me amenazaron", **HERE, "category": "threat"})

    note = {"note": "Turnado con oficio 123/2026"}
    url = f"/v1/reports/{votes['id']}/refer-fede"
    r = await desk.client.post(url, json=note, headers=police.headers)
    assert r.status_code == 200, r.text
    assert r.json()["event"] == "referred_fede"
    assert ("referred_fede", False) in await desk.history(votes["alert_id"])
    outbox = await desk.count(
        AlertOutbox, AlertOutbox.alert_id == votes["alert_id"], AlertOutbox.event == "referred_fede"
    )
    assert outbox == 1
    assert (await desk.client.post(url, json=note, headers=police.headers)).status_code == 409
    r = await desk.client.get(f"/v1/reports/{votes['id']}", headers=police.headers)
    assert "oficio 123/2026" in r.json()["referred_fede"]["note"]
    assert "LGMDE" in r.json()["referred_fede"]["note"]
    r = await desk.client.get(f"/v1/reports/{votes['id']}", headers=ana.headers)
    assert r.json()["referred_fede"]["note"] is None  # the reporter sees that, not the note
    r = await desk.client.post(
        f"/v1/reports/{threat['id']}/refer-fede", json=note, headers=police.headers
    )
    assert r.status_code == 409

    # The dispatcher corrects a category: the alert's severity follows, recorded.
    r = await desk.client.patch(
        f"/v1/reports/{threat['id']}", json={"category": "attack_violence"}, headers=police.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["category"] == "attack_violence"
    assert (await desk.alert_of(threat["id"])).severity == 4
    assert [a for a, _ in await desk.history(threat["alert_id"])] == ["raised", "category_changed"]
    r = await desk.client.patch(
        f"/v1/reports/{threat['id']}", json={"category": "threat"}, headers=ana.headers
    )
    assert r.status_code == 403


async def test_evidence_files_are_served_after_an_access_check(desk: Desk) -> None:
    admin = await desk.account("admin", Role.ADMIN)
    ana = await desk.account("ana")
    police = await desk.account("despacho", Role.DISPATCHER)
    monitor = await desk.account("observador", Role.MONITOR)
    outsider = await desk.account("observador-cuautla", Role.MONITOR)
    await desk.channel(admin, "Cuernavaca", police, monitor)
    await desk.channel(admin, "Cuautla", outsider)
    photo = jpeg(gps=ZOCALO)
    body = await _filed(
        desk,
        ana,
        {"text": "Quemaron propaganda", **HERE, "channel": "Cuernavaca"},
        [("a.jpg", photo, "image/jpeg")],
    )
    [media] = await desk.media(body["id"])
    url = f"/v1/reports/{body['id']}/media/{media.id}"

    r = await desk.client.get(url, headers=police.headers)
    assert r.status_code == 200
    assert r.content == photo
    assert r.headers["x-sigueme-sha256"] == hashlib.sha256(photo).hexdigest()
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store"
    for who in (monitor, ana):
        r = await desk.client.get(url, headers=who.headers)
        assert r.status_code == 200
        assert r.content != photo
        assert redact(r.content, "image/jpeg").position is None
        assert r.headers["x-sigueme-sha256"] == hashlib.sha256(r.content).hexdigest()
    assert (await desk.client.get(url, headers=outsider.headers)).status_code == 404
    assert (
        await desk.client.get(url.replace(f"/{media.id}", "/999"), headers=police.headers)
    ).status_code == 404
    audit = await desk.audit(body["id"])
    assert [u for u, a in audit if a == "report.media"] == [police.id, monitor.id, ana.id]

    # No copy without location metadata could be made: monitors get nothing.
    async with desk.app.state.sessions() as session:
        await session.execute(
            update(ReportMedia).where(ReportMedia.id == media.id).values(redacted_key=None)
        )
        await session.commit()
    assert (await desk.client.get(url, headers=monitor.headers)).status_code == 404
    assert (await desk.client.get(url, headers=police.headers)).status_code == 200


async def test_channels_route_reports_to_their_dispatchers_and_monitors(desk: Desk) -> None:
    admin = await desk.account("admin", Role.ADMIN)
    ana = await desk.account("ana")
    d_cva = await desk.account("despacho-cuernavaca", Role.DISPATCHER)
    d_cua = await desk.account("despacho-cuautla", Role.DISPATCHER)
    m_cva = await desk.account("observador-cuernavaca", Role.MONITOR)
    m_cua = await desk.account("observador-cuautla", Role.MONITOR)
    cva_channel = await desk.channel(admin, "Cuernavaca", d_cva, m_cva)
    cua_channel = await desk.channel(admin, "Cuautla", d_cua, m_cua)
    cva = await _filed(desk, ana, {"text": "a", **HERE, "channel": "Cuernavaca"})
    cua = await _filed(desk, ana, {"text": "b", **HERE, "channel": "Cuautla"})
    general = await _filed(desk, ana, {"text": "c", **HERE})

    async def queue(who: Account) -> set[str]:
        r = await desk.alerts(who)
        assert r.status_code == 200, r.text
        return {a["id"] for a in r.json()["alerts"]}

    assert await queue(d_cva) == {cva["alert_id"], general["alert_id"]}
    assert await queue(d_cua) == {cua["alert_id"], general["alert_id"]}
    assert await queue(admin) == {cva["alert_id"], cua["alert_id"], general["alert_id"]}
    r = await desk.alerts(d_cva)
    assert sum(r.json()["counts_live_by_severity"].values()) == 2

    other = cua["alert_id"]
    for path in (f"/v1/alerts/{other}", f"/v1/alerts/{other}.cap"):
        assert (await desk.client.get(path, headers=d_cva.headers)).status_code == 404
    steps = {"acknowledge": {}, "dispatch": {"unit": "MOR-114"}, "resolve": {"outcome": "other"}}
    for step, body in steps.items():
        r = await desk.client.post(f"/v1/alerts/{other}/{step}", json=body, headers=d_cva.headers)
        assert r.status_code == 404
    assert (await desk.alert_of(cua["id"])).status == "open"
    r = await desk.client.post(
        f"/v1/alerts/{cva['alert_id']}/acknowledge", json={}, headers=d_cva.headers
    )
    assert r.status_code == 200
    r = await desk.client.get(f"/v1/alerts/{other}.cap", headers=d_cua.headers)
    assert r.status_code == 200

    async def listed(who: Account) -> set[int]:
        r = await desk.client.get("/v1/reports", headers=who.headers)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()["reports"]}

    assert await listed(m_cva) == {cva["id"]}
    assert await listed(m_cua) == {cua["id"]}
    assert await listed(d_cva) == {cva["id"], general["id"]}
    assert await listed(ana) == {cva["id"], cua["id"], general["id"]}
    r = await desk.client.get(f"/v1/reports/{cva['id']}", headers=m_cva.headers)
    assert "history" not in r.json()
    assert r.json()["trip_id"] is None

    # A dispatcher routes a report of the general queue to a channel.
    r = await desk.client.patch(
        f"/v1/reports/{general['id']}", json={"channel": "Cuautla"}, headers=d_cva.headers
    )
    assert r.status_code == 200, r.text
    assert await queue(d_cva) == {cva["alert_id"]}
    assert await listed(m_cua) == {cua["id"], general["id"]}

    # Channels are the admins' to make.
    r = await desk.client.get("/v1/channels", headers=admin.headers)
    assert [(c["name"], c["members"]) for c in r.json()["channels"]] == [
        ("Cuautla", ["despacho-cuautla", "observador-cuautla"]),
        ("Cuernavaca", ["despacho-cuernavaca", "observador-cuernavaca"]),
    ]
    r = await desk.client.get("/v1/channels", headers=d_cva.headers)
    assert [c["name"] for c in r.json()["channels"]] == ["Cuernavaca"]
    body = {"name": "Jiutepec", "kind": "municipality"}
    assert (
        await desk.client.post("/v1/channels", json=body, headers=d_cva.headers)
    ).status_code == 403
    body["name"] = "Cuautla"
    assert (
        await desk.client.post("/v1/channels", json=body, headers=admin.headers)
    ).status_code == 409
    members = f"/v1/channels/{cva_channel}/members"
    assert (await desk.client.put(f"{members}/ana", headers=admin.headers)).status_code == 422
    assert (await desk.client.put(f"{members}/nadie", headers=admin.headers)).status_code == 404
    r = await desk.client.delete(
        f"/v1/channels/{cua_channel}/members/{m_cua.name}", headers=admin.headers
    )
    assert r.status_code == 204
    assert await listed(m_cua) == set()


async def test_uploads_pass_the_services_own_limits(
    database_url: str, tmp_path: Path, graph: GraphStandin
) -> None:
    async with running_desk(database_url, tmp_path, graph) as desk:
        ana = await desk.account("ana")
        photo = jpeg(gps=ZOCALO) + bytes(3 * 2**20)  # a phone's photo: a few megabytes
        r = await desk.file_report(ana, {"text": "x", **HERE}, [("a.jpg", photo, "image/jpeg")])
        assert r.status_code == 201, r.text
