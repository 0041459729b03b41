"""An alert as an OASIS CAP 1.2 message (Common Alerting Protocol), for Policía Morelos
and the CES systems that read CAP. Pure: a snapshot in, UTF-8 XML out.

One message describes one state of an alert. Its ``identifier`` is
``sigueme-{alert id}-{time of that state, compact UTC}``, so exporting the same state
twice gives the same message (byte for byte, unless ``now`` is passed) and every change
(a repeat, an escalation, acknowledged, dispatched...) gives a new one. ``sent`` is that
same time, in CAP's format (``2026-05-28T14:05:00-00:00``), and ``incidents`` is
``sigueme-{alert id}`` in every message about the alert.

How a status reads in CAP (``msgType`` / ``responseType`` / ``urgency``):

================  =========  =====================  ======================
status            msgType    responseType           urgency
================  =========  =====================  ======================
open, as raised   Alert      by severity (below)    by kind (below)
open, changed     Update     by severity            by kind
acknowledged      Update     by severity            by kind
dispatched        Update     Execute                by kind
resolved          Update     AllClear               Past
cancelled         Cancel     AllClear               Past
================  =========  =====================  ======================

- An open alert that repeated, escalated or otherwise changed since it was raised is an
  ``Update``, not a second ``Alert``: CAP consumers treat every ``Alert`` as a new
  incident, and an ``Update`` as superseding the messages it references.
- A resolved alert is an ``Update`` with ``AllClear``, not a ``Cancel``: CAP keeps
  ``Cancel`` for withdrawing messages (here the traveller cancelling with their PIN),
  and consumers may drop a cancelled incident without reading it, while a dispatcher's
  resolution (with its outcome) is information to keep.
- ``Update`` and ``Cancel`` carry ``references`` to the message sent when the alert was
  raised: ``{sender},sigueme-{id}-{opened_at},{opened_at}``. A snapshot is taken "as
  raised" when it is open, seen once, never escalated and its ``updated_at`` is within
  :data:`RAISED_WITHIN` of ``opened_at`` (the store stamps both on insert, a few
  microseconds apart); that message's identifier and ``sent`` use ``opened_at``, so
  later messages can name it. Messages between the first and the current one are not
  listed: the snapshot does not say when each earlier state began.
- ``responseType`` of a live alert: ``Execute`` when extreme (every SOS, or escalated
  to extreme), after the duress PIN, or once a unit is dispatched; ``Prepare`` when
  severe; ``Monitor`` otherwise.
- ``urgency``: ``Immediate`` for SOS, off route, signal lost, overdue and after the
  duress PIN; ``Expected`` for the others; ``Past`` once resolved or cancelled.
- ``certainty``: ``Observed`` for SOS and after the duress PIN (the person asked for
  help); ``Likely`` for off route, stopped, signal lost and overdue; ``Possible`` for
  late, backtracking and risk zone; ``Unlikely`` once resolved as a false alarm.
- ``severity`` is the alert's (:attr:`Severity.cap`, escalations included); ``category``
  is ``Security``; ``scope`` is ``Restricted`` to the police and the CES.

``contact`` is the traveller's contact (who to call), ``web`` the trip's live map. The
``area`` is a circle around the last known position (``lat,lon radius_km``, WGS 84,
radius the fix's accuracy and at least 50 m), or only ``Posición desconocida`` before
any fix. Characters XML 1.0 cannot carry (control characters, lone surrogates) are
replaced by U+FFFD; the rest is escaped by :mod:`xml.etree.ElementTree`.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final
from urllib.parse import quote
from xml.etree import ElementTree as ET

from sigueme.alerts.kinds import AlertKind, Severity
from sigueme.alerts.lifecycle import AlertStatus, Outcome
from sigueme.alerts.snapshot import AlertSnapshot

CAP_NAMESPACE: Final = "urn:oasis:names:tc:emergency:cap:1.2"
SENDER_NAME: Final = "Sígueme — Comisión Estatal de Seguridad de Morelos"
RESTRICTION: Final = "Uso exclusivo de Policía Morelos y CES"
MIN_RADIUS_M: Final = 50.0
"""The circle's smallest radius: phone fixes in the city are off by tens of metres."""
HEADLINE_MAX: Final = 160
RAISED_WITHIN: Final = timedelta(seconds=1)
"""How close ``updated_at`` must be to ``opened_at`` for a snapshot to be the alert as
raised (see the module docstring)."""

_IMMEDIATE: Final = frozenset(
    {AlertKind.SOS, AlertKind.OFF_ROUTE, AlertKind.SIGNAL_LOST, AlertKind.OVERDUE}
)
_LIKELY: Final = frozenset(
    {AlertKind.OFF_ROUTE, AlertKind.STOPPED, AlertKind.SIGNAL_LOST, AlertKind.OVERDUE}
)
_RESPONSE_BY_SEVERITY: Final = {
    Severity.EXTREME: "Execute",
    Severity.SEVERE: "Prepare",
    Severity.MODERATE: "Monitor",
    Severity.MINOR: "Monitor",
}

_INSTRUCTION_ES: Final = {
    AlertKind.SOS: (
        "Envíe de inmediato la unidad más cercana a la última posición conocida y llame "
        "a la persona. Trátelo como una emergencia en curso."
    ),
    AlertKind.OFF_ROUTE: (
        "Llame a la persona para confirmar el desvío. Si no responde o no lo explica, "
        "envíe una unidad a la última posición conocida."
    ),
    AlertKind.STOPPED: (
        "Llame a la persona para confirmar que está bien. Si no responde, envíe una "
        "unidad a la última posición conocida."
    ),
    AlertKind.LATE: (
        "Siga el recorrido en el mapa y llame a la persona si el retraso aumenta o se detiene."
    ),
    AlertKind.BACKTRACKING: (
        "Llame a la persona para confirmar por qué regresa y siga el recorrido en el mapa."
    ),
    AlertKind.SIGNAL_LOST: (
        "Intente comunicarse con la persona por llamada y mensaje. Si no responde, envíe "
        "una unidad a la última posición conocida."
    ),
    AlertKind.OVERDUE: (
        "La persona no llegó a su destino: llámela y, si no responde, envíe una unidad a "
        "la última posición conocida y al destino."
    ),
    AlertKind.RISK_ZONE: (
        "Siga el recorrido en el mapa, llame a la persona para confirmar que está bien y "
        "tenga una unidad disponible cerca de la zona."
    ),
    AlertKind.REPORT: (
        "Revise el reporte y su evidencia. Si describe un riesgo en curso, envíe una "
        "unidad al lugar; si es un posible delito electoral, túrnelo a la FEDE Morelos."
    ),
}
_DURESS_ES: Final = (
    "La persona usó su PIN de coacción: puede estar bajo amenaza. No la llame ni le "
    "escriba (quien la amenaza puede verlo) y no cancele la alerta aunque se lo pidan: "
    "envíe una unidad con discreción a la última posición conocida."
)

# XML 1.0 Char: anything else makes the document ill-formed (or unencodable).
_NOT_XML_CHAR: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# CAP 1.2: identifier and sender "MUST NOT include spaces, commas or restricted
# characters (< and &)".
_NOT_IN_IDENTIFIER: Final = re.compile(r"[\s,<&]")


def to_cap(alert: AlertSnapshot, *, sender: str, now: datetime | None = None) -> bytes:
    """The CAP 1.2 message for the alert's current state: UTF-8 XML with its declaration.

    ``sender`` names the system (``sigueme@ces.morelos.gob.mx``); ``ValueError`` if it is
    empty or holds spaces, commas, ``<`` or ``&``. ``now`` only moves the relative times
    in the description ("hace 12 minutos"); it defaults to ``alert.updated_at``, the
    time the message describes, so the same state always gives the same message.
    ``ValueError`` for naive datetimes.
    """
    if not sender or _NOT_IN_IDENTIFIER.search(sender):
        raise ValueError("CAP sender must be non-empty, without spaces, commas, '<' or '&'")
    for t in (alert.opened_at, alert.updated_at):
        _require_aware(t)
    as_raised = _as_raised(alert)
    stamp = alert.opened_at if as_raised else alert.updated_at

    root = ET.Element("alert", {"xmlns": CAP_NAMESPACE})
    _add(root, "identifier", _identifier(alert, stamp))
    _add(root, "sender", sender)
    _add(root, "sent", cap_time(stamp))
    _add(root, "status", "Actual")
    _add(root, "msgType", _msg_type(alert, as_raised))
    _add(root, "scope", "Restricted")
    _add(root, "restriction", RESTRICTION)
    note = _note(alert)
    if note:
        _add(root, "note", note)
    if not as_raised:
        first = _identifier(alert, alert.opened_at)
        _add(root, "references", f"{sender},{first},{cap_time(alert.opened_at)}")
    _add(root, "incidents", f"sigueme-{quote(alert.id, safe='')}")
    _info(root, alert, now if now is not None else alert.updated_at)

    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body.encode("utf-8") + b"\n"


def cap_time(t: datetime) -> str:
    """``t`` as CAP 1.2 writes times: UTC, whole seconds, ``-00:00`` (never ``Z``)."""
    _require_aware(t)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")


def _require_aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("naive datetime: CAP times need a UTC offset")


def _identifier(alert: AlertSnapshot, t: datetime) -> str:
    t = t.astimezone(UTC)
    compact = t.strftime("%Y%m%dT%H%M%S")
    if t.microsecond:
        compact += f".{t.microsecond:06d}"
    # Percent-encoding keeps distinct ids distinct and the identifier free of , < & etc.
    return f"sigueme-{quote(alert.id, safe='')}-{compact}Z"


def _as_raised(alert: AlertSnapshot) -> bool:
    return (
        alert.status is AlertStatus.OPEN
        and alert.count <= 1
        and alert.escalations == 0
        and timedelta(0) <= alert.updated_at - alert.opened_at < RAISED_WITHIN
    )


def _msg_type(alert: AlertSnapshot, as_raised: bool) -> str:
    if alert.status is AlertStatus.CANCELLED:
        return "Cancel"
    return "Alert" if as_raised else "Update"


def _duress(alert: AlertSnapshot) -> bool:
    return bool(alert.details.get("duress"))


def _closed(alert: AlertSnapshot) -> bool:
    return alert.status in (AlertStatus.RESOLVED, AlertStatus.CANCELLED)


def _response_type(alert: AlertSnapshot) -> str:
    if _closed(alert):
        return "AllClear"
    if _duress(alert) or alert.status is AlertStatus.DISPATCHED:
        return "Execute"
    return _RESPONSE_BY_SEVERITY[alert.severity]


def _urgency(alert: AlertSnapshot) -> str:
    if _closed(alert):
        return "Past"
    if _duress(alert) or alert.kind in _IMMEDIATE:
        return "Immediate"
    return "Expected"


def _certainty(alert: AlertSnapshot) -> str:
    if alert.status is AlertStatus.RESOLVED and alert.outcome is Outcome.FALSE_ALARM:
        return "Unlikely"
    if _duress(alert) or alert.kind is AlertKind.SOS:
        return "Observed"
    if alert.kind in _LIKELY:
        return "Likely"
    return "Possible"


def _headline(alert: AlertSnapshot) -> str:
    text = f"{alert.kind.title_es}: {alert.traveller.name}"
    if _duress(alert):
        text = f"PIN de coacción — {text}"
    if alert.status is not AlertStatus.OPEN:
        text += f" ({alert.status.label_es})"
    text = " ".join(_clean(text).split())
    if len(text) > HEADLINE_MAX:
        text = text[: HEADLINE_MAX - 1].rstrip() + "…"
    return text


def _instruction(alert: AlertSnapshot) -> str:
    if alert.status is AlertStatus.CANCELLED:
        text = "La persona canceló la alerta con su PIN. No se requiere más acción."
        if alert.unit:
            text += f" Confirme con la persona antes de retirar la unidad {alert.unit}."
        return text
    if alert.status is AlertStatus.RESOLVED:
        outcome = f" ({alert.outcome.label_es})" if alert.outcome else ""
        return f"Alerta resuelta{outcome}. No se requiere más acción."
    if alert.status is AlertStatus.DISPATCHED:
        unit = f" {alert.unit}" if alert.unit else ""
        text = (
            f"Unidad{unit} enviada a la última posición conocida. Mantenga contacto con la "
            "unidad hasta cerrar la alerta con su resultado."
        )
        if _duress(alert):
            text += " La persona usó su PIN de coacción: no la llame ni le escriba."
        return text
    return _DURESS_ES if _duress(alert) else _INSTRUCTION_ES[alert.kind]


def _note(alert: AlertSnapshot) -> str | None:
    if alert.status is AlertStatus.CANCELLED:
        return "Cancelada por la persona con su PIN."
    if alert.status is AlertStatus.RESOLVED:
        outcome = f": {alert.outcome.label_es}" if alert.outcome else ""
        return f"Resuelta por Policía Morelos{outcome}."
    return None


def _parameters(alert: AlertSnapshot) -> list[tuple[str, str]]:
    params = [
        ("alert_id", alert.id),
        ("kind", alert.kind.value),
    ]
    if alert.trip_id is not None:
        params.append(("trip_id", alert.trip_id))
    if alert.report is not None:
        if alert.report.folio:
            params.append(("report_folio", alert.report.folio))
        params.append(("report_category", alert.report.category))
    if alert.trip_label:
        params.append(("trip_label", alert.trip_label))
    params += [
        ("status", alert.status.value),
        ("count", str(alert.count)),
        ("escalations", str(alert.escalations)),
    ]
    if _duress(alert):
        params.append(("duress", "true"))
    for name, value in (
        ("battery_pct", alert.battery),
        ("accuracy_m", alert.accuracy),
        ("distance_m", alert.distance_m),
    ):
        if value is not None and math.isfinite(value):
            params.append((name, f"{value:.0f}"))
    if alert.position_at is not None:
        params.append(("position_at", cap_time(alert.position_at)))
    if alert.planned_arrival is not None:
        params.append(("planned_arrival", cap_time(alert.planned_arrival)))
    if alert.predicted_arrival is not None:
        params.append(("predicted_arrival", cap_time(alert.predicted_arrival)))
    if alert.unit:
        params.append(("unit", alert.unit))
    if alert.outcome is not None:
        params.append(("outcome", alert.outcome.value))
    return params


def _circle(alert: AlertSnapshot) -> str | None:
    """``lat,lon radius_km`` (CAP's order), or ``None`` with no usable position."""
    lat, lon = alert.lat, alert.lon
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    accuracy = alert.accuracy if alert.accuracy is not None else 0.0
    radius_m = max(accuracy, MIN_RADIUS_M) if math.isfinite(accuracy) else MIN_RADIUS_M
    return f"{lat:.6f},{lon:.6f} {radius_m / 1000:.3f}"


def _info(root: ET.Element, alert: AlertSnapshot, now: datetime) -> None:
    info = ET.SubElement(root, "info")
    _add(info, "language", "es-MX")
    _add(info, "category", "Security")
    _add(info, "event", alert.kind.title_es)
    _add(info, "responseType", _response_type(alert))
    _add(info, "urgency", _urgency(alert))
    _add(info, "severity", alert.severity.cap)
    _add(info, "certainty", _certainty(alert))
    _add(info, "onset", cap_time(alert.opened_at))
    _add(info, "senderName", SENDER_NAME)
    _add(info, "headline", _headline(alert))
    _add(info, "description", alert.description_es(now))
    _add(info, "instruction", _instruction(alert))
    if alert.map_url:
        _add(info, "web", alert.map_url)
    if alert.traveller.contact:
        _add(info, "contact", alert.traveller.contact)
    for name, value in _parameters(alert):
        parameter = ET.SubElement(info, "parameter")
        _add(parameter, "valueName", name)
        _add(parameter, "value", value)
    area = ET.SubElement(info, "area")
    circle = _circle(alert)
    if alert.report is not None:
        place = alert.report.place or "Lugar del reporte"
        _add(
            area,
            "areaDesc",
            place if circle is not None or alert.report.place else "Lugar no indicado",
        )
        if circle is not None:
            _add(area, "circle", circle)
    elif circle is None:
        _add(area, "areaDesc", "Posición desconocida")
    else:
        _add(area, "areaDesc", f"Última posición conocida de {alert.traveller.name}")
        _add(area, "circle", circle)


def _add(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = _clean(text)
    return element


def _clean(text: str) -> str:
    """Text XML 1.0 can carry: line ends normalised, forbidden characters replaced."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _NOT_XML_CHAR.sub("\ufffd", text)
