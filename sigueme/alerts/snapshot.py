"""Everything an alert says, as plain values: what the police queue carries, what the
API returns, what CAP exports, and the Spanish text dispatchers and monitors read.

Built by the services from the stored alert, its trip and traveller
(:func:`sigueme.services.alerts.snapshot`); pure here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sigueme.alerts.kinds import AlertKind, Severity
from sigueme.alerts.lifecycle import AlertStatus, Outcome

LOW_BATTERY = 15.0
"""Percent under which the battery reads as low in an alert's text."""


@dataclass(frozen=True, slots=True)
class TrackPoint:
    t: datetime
    lon: float
    lat: float
    accuracy: float | None = None


@dataclass(frozen=True, slots=True)
class Traveller:
    name: str
    """Display name (or user name when none)."""
    contact: str | None = None
    profile: str | None = None
    """candidate, campaign, citizen, official..."""


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """What a report's alert says of the report (never who reported it)."""

    report_id: int
    folio: str | None
    category: str
    category_es: str
    text: str
    place: str | None
    media: int
    """Files attached."""
    channel: str | None
    source: str
    anonymous: bool
    electoral: bool
    """An electoral crime: may be referred to FEDE Morelos."""


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: datetime
    action: str
    actor: str | None
    note: str | None
    police_only: bool = False
    """Never shown outside the police (the duress PIN, a reveal)."""


POLICE_ONLY_DETAILS = ("duress", "duress_at")
"""Details of an alert that only the police read."""


@dataclass(frozen=True, slots=True)
class AlertSnapshot:
    id: str
    kind: AlertKind
    severity: Severity
    status: AlertStatus
    trip_id: str | None
    """``None`` for a report not linked to a trip."""
    trip_label: str | None
    traveller: Traveller
    """The trip's traveller; for a report, a placeholder (the reporter is not shown)."""
    opened_at: datetime
    updated_at: datetime
    count: int
    """How many times the condition was seen while the alert was live."""
    escalations: int
    lon: float | None
    """The position that raised (or last repeated) it; ``None`` before any fix."""
    lat: float | None
    position_at: datetime | None
    accuracy: float | None
    battery: float | None
    distance_m: float | None
    """Off the route at that position."""
    off_route_since: datetime | None
    """When the trip left its corridor (``off_route`` alerts)."""
    planned_arrival: datetime | None
    predicted_arrival: datetime | None
    map_url: str
    """The live map of the trip (for the police and monitors)."""
    unit: str | None = None
    outcome: Outcome | None = None
    closed_at: datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    track: tuple[TrackPoint, ...] = ()
    """The last stretch of the track before the alert, oldest first."""
    history: tuple[HistoryEntry, ...] = ()
    report: ReportFacts | None = None

    @property
    def delay_s(self) -> float | None:
        """Predicted minus planned arrival, seconds (negative: early)."""
        if self.predicted_arrival is None or self.planned_arrival is None:
            return None
        return (self.predicted_arrival - self.planned_arrival).total_seconds()

    def time_off_route_s(self, now: datetime) -> float | None:
        if self.off_route_since is None:
            return None
        return max((now - self.off_route_since).total_seconds(), 0.0)

    def description_es(self, now: datetime | None = None) -> str:
        """What a dispatcher reads, in Spanish (es-MX)."""
        now = now or datetime.now(UTC)
        if self.report is not None:
            return _report_text(self, self.report)
        who = self.traveller.name
        if self.traveller.profile:
            who += f" ({self.traveller.profile})"
        parts = [f"{self.kind.title_es}: {who}."]
        if self.details.get("duress"):
            parts.append("La persona usó su PIN de coacción: puede estar bajo amenaza.")
        if self.distance_m is not None and self.kind is AlertKind.OFF_ROUTE:
            parts.append(f"A {self.distance_m:,.0f} m de la ruta planeada.")
        off = self.time_off_route_s(now)
        if off is not None:
            parts.append(f"Fuera de ruta desde hace {_minutes(off)}.")
        zone = self.details.get("risk_zone_name")
        if zone:
            parts.append(f"Zona: {zone}.")
        if self.kind is AlertKind.SIGNAL_LOST and self.position_at is not None:
            parts.append(f"Última señal hace {_minutes((now - self.position_at).total_seconds())}.")
        delay = self.delay_s
        if delay is not None and delay > 60:
            parts.append(f"Llegada prevista con {_minutes(delay)} de retraso.")
        if self.battery is not None:
            low = " (baja)" if self.battery < LOW_BATTERY else ""
            parts.append(f"Batería: {self.battery:.0f} %{low}.")
        if self.accuracy is not None:
            parts.append(f"Precisión de la posición: {self.accuracy:.0f} m.")
        if self.traveller.contact:
            parts.append(f"Contacto: {self.traveller.contact}.")
        if self.count > 1:
            parts.append(f"Se repitió {self.count} veces.")
        return " ".join(parts)


def public_view(alert: AlertSnapshot) -> AlertSnapshot:
    """The alert as those outside the police see it (monitors, share links, the
    traveller, webhooks): without the police-only history and details, and without the
    traveller's phone number (a share link may be in anyone's hands)."""
    return replace(
        alert,
        traveller=replace(alert.traveller, contact=None),
        details={k: v for k, v in alert.details.items() if k not in POLICE_ONLY_DETAILS},
        history=tuple(h for h in alert.history if not h.police_only),
    )


def _report_text(alert: AlertSnapshot, report: ReportFacts) -> str:
    parts = [f"Reporte ciudadano: {report.category_es}."]
    if report.folio:
        parts.append(f"Folio {report.folio}.")
    if report.electoral:
        parts.append("Posible delito electoral: puede turnarse a la FEDE Morelos.")
    if report.place and alert.lon is None:
        parts.append(f"Lugar: {report.place}.")
    if report.media:
        parts.append(f"Archivos adjuntos: {report.media}.")
    text = " ".join(report.text.split())
    if text:
        parts.append(f"«{text[:280]}{'…' if len(text) > 280 else ''}»")
    if alert.count > 1:
        parts.append(f"Se repitió {alert.count} veces.")
    return " ".join(parts)


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "menos de un minuto"
    if minutes == 1:
        return "1 minuto"
    if minutes < 120:
        return f"{minutes} minutos"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def alert_dict(alert: AlertSnapshot, now: datetime, *, track: bool = True) -> dict[str, Any]:
    """The alert as JSON (the API's answer and the police queue's ``alert`` field)."""
    body: dict[str, Any] = {
        "id": alert.id,
        "kind": alert.kind.value,
        "title": alert.kind.title_es,
        "severity": int(alert.severity),
        "severity_label": alert.severity.label_es,
        "status": alert.status.value,
        "status_label": alert.status.label_es,
        "description": alert.description_es(now),
        "trip": None if alert.trip_id is None else {"id": alert.trip_id, "label": alert.trip_label},
        "report": None
        if alert.report is None
        else {
            "id": alert.report.report_id,
            "folio": alert.report.folio,
            "category": alert.report.category,
            "category_label": alert.report.category_es,
            "text": alert.report.text,
            "place": alert.report.place,
            "media": alert.report.media,
            "channel": alert.report.channel,
            "source": alert.report.source,
            "anonymous": alert.report.anonymous,
            "electoral": alert.report.electoral,
        },
        "traveller": {
            "name": alert.traveller.name,
            "contact": alert.traveller.contact,
            "profile": alert.traveller.profile,
        },
        "opened_at": _iso(alert.opened_at),
        "updated_at": _iso(alert.updated_at),
        "closed_at": _iso(alert.closed_at),
        "count": alert.count,
        "escalations": alert.escalations,
        "position": None
        if alert.lon is None or alert.lat is None
        else {"type": "Point", "coordinates": [alert.lon, alert.lat]},
        "position_at": _iso(alert.position_at),
        "accuracy_m": _round(alert.accuracy),
        "battery": _round(alert.battery, 0),
        "distance_m": _round(alert.distance_m),
        "off_route_since": _iso(alert.off_route_since),
        "time_off_route_s": _round(alert.time_off_route_s(now), 0),
        "planned_arrival": _iso(alert.planned_arrival),
        "predicted_arrival": _iso(alert.predicted_arrival),
        "delay_s": _round(alert.delay_s, 0),
        "unit": alert.unit,
        "outcome": alert.outcome.value if alert.outcome else None,
        "map_url": alert.map_url,
        "details": alert.details,
        "history": [
            {"at": _iso(h.at), "action": h.action, "by": h.actor, "note": h.note}
            for h in alert.history
        ],
    }
    if track:
        body["track"] = {
            "type": "LineString" if len(alert.track) > 1 else "MultiPoint",
            "coordinates": [[p.lon, p.lat] for p in alert.track],
            "times": [_iso(p.t) for p in alert.track],
        }
    return body
