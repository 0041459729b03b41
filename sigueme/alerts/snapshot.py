"""Everything an alert says, as plain values: what the police queue carries, what the
API returns, what CAP exports, and the Spanish text dispatchers and monitors read.

Built by the services from the stored alert, its trip and traveller
(:func:`sigueme.services.alerts.snapshot`); pure here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sigueme.alerts.kinds import AlertKind, Severity
from sigueme.alerts.lifecycle import AlertStatus, Outcome


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
class HistoryEntry:
    at: datetime
    action: str
    actor: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class AlertSnapshot:
    id: str
    kind: AlertKind
    severity: Severity
    status: AlertStatus
    trip_id: str
    trip_label: str | None
    traveller: Traveller
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
    planned_arrival: datetime
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

    @property
    def delay_s(self) -> float | None:
        """Predicted minus planned arrival, seconds (negative: early)."""
        if self.predicted_arrival is None:
            return None
        return (self.predicted_arrival - self.planned_arrival).total_seconds()

    def time_off_route_s(self, now: datetime) -> float | None:
        if self.off_route_since is None:
            return None
        return max((now - self.off_route_since).total_seconds(), 0.0)

    def description_es(self, now: datetime | None = None) -> str:
        """What a dispatcher reads, in Spanish (es-MX)."""
        now = now or datetime.now(UTC)
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
            parts.append(f"Batería: {self.battery:.0f} %.")
        if self.accuracy is not None:
            parts.append(f"Precisión de la posición: {self.accuracy:.0f} m.")
        if self.traveller.contact:
            parts.append(f"Contacto: {self.traveller.contact}.")
        if self.count > 1:
            parts.append(f"Se repitió {self.count} veces.")
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
