"""Alert kinds and severities, and how the geo core's events map onto them.

A trip event is either a warning sign that warrants an alert in the Policía Morelos
queue (``off_route``, ``stopped``, ...), the end of one (``back_on_route`` clears
``off_route``), or information for monitors only (``low_battery``, ``arrived``).
The texts are what dispatchers and monitors read, in Spanish (es-MX).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

from sigueme.geo import EventKind


class Severity(IntEnum):
    """How urgent an alert is; higher is more urgent. Values order the queue."""

    MINOR = 1
    MODERATE = 2
    SEVERE = 3
    EXTREME = 4

    @property
    def cap(self) -> str:
        """The CAP 1.2 ``severity`` value."""
        return self.name.capitalize()

    @property
    def label_es(self) -> str:
        return _SEVERITY_ES[self]


_SEVERITY_ES = {
    Severity.MINOR: "baja",
    Severity.MODERATE: "media",
    Severity.SEVERE: "alta",
    Severity.EXTREME: "máxima",
}


class AlertKind(StrEnum):
    """Why a trip is in the police queue."""

    SOS = "sos"
    OFF_ROUTE = "off_route"
    STOPPED = "stopped"
    LATE = "late"
    BACKTRACKING = "backtracking"
    SIGNAL_LOST = "signal_lost"
    OVERDUE = "overdue"
    RISK_ZONE = "risk_zone"
    REPORT = "report"
    """A citizen's report (SeguriChat): its severity comes from its category."""

    @property
    def severity(self) -> Severity:
        """The severity an alert of this kind starts with."""
        return _SEVERITY[self]

    @property
    def title_es(self) -> str:
        """The short title a dispatcher reads."""
        return _TITLE_ES[self]


_SEVERITY = {
    AlertKind.SOS: Severity.EXTREME,
    AlertKind.OFF_ROUTE: Severity.SEVERE,
    AlertKind.SIGNAL_LOST: Severity.SEVERE,
    AlertKind.OVERDUE: Severity.SEVERE,
    AlertKind.STOPPED: Severity.MODERATE,
    AlertKind.BACKTRACKING: Severity.MODERATE,
    AlertKind.LATE: Severity.MODERATE,
    AlertKind.RISK_ZONE: Severity.MODERATE,
    AlertKind.REPORT: Severity.MODERATE,
}

_TITLE_ES = {
    AlertKind.SOS: "Botón de pánico (SOS)",
    AlertKind.OFF_ROUTE: "Fuera de la ruta planeada",
    AlertKind.STOPPED: "Detenido fuera de las paradas previstas",
    AlertKind.LATE: "Retraso respecto al plan",
    AlertKind.BACKTRACKING: "Regresa sobre la ruta",
    AlertKind.SIGNAL_LOST: "Sin señal del teléfono",
    AlertKind.OVERDUE: "No llegó a su destino a tiempo",
    AlertKind.RISK_ZONE: "Entró a una zona de riesgo",
    AlertKind.REPORT: "Reporte ciudadano (SeguriChat)",
}

_RAISES = {
    EventKind.OFF_ROUTE: AlertKind.OFF_ROUTE,
    EventKind.STOPPED: AlertKind.STOPPED,
    EventKind.LATE: AlertKind.LATE,
    EventKind.BACKTRACKING: AlertKind.BACKTRACKING,
}

_CLEARS = {
    EventKind.BACK_ON_ROUTE: AlertKind.OFF_ROUTE,
    EventKind.MOVING: AlertKind.STOPPED,
    EventKind.ON_SCHEDULE: AlertKind.LATE,
}


def alert_kind_for(event: EventKind) -> AlertKind | None:
    """The alert a trip event raises, or ``None`` for events that inform only."""
    return _RAISES.get(event)


def cleared_by(event: EventKind) -> AlertKind | None:
    """The alert kind whose condition a trip event ends (the alert itself stays open
    until a dispatcher resolves it: a trip back on route may still need help)."""
    return _CLEARS.get(event)
