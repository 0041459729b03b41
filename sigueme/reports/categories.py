"""What a report is about: its category, the Spanish (es-MX) label a dispatcher reads, the
severity it enters the police queue with, and whether it may be an electoral crime that
the dispatcher can refer to FEDE Morelos (the state prosecutor's electoral unit).

Which categories are electoral crimes follows the Ley General en Materia de Delitos
Electorales (LGMDE): buying or pressuring votes (art. 7, and art. 7 Bis for social
programmes), blocking a polling station (art. 7), public servants coercing subordinates or
diverting public resources (art. 11), and political violence against women in gender terms
(art. 20 Bis). Threats and attacks on candidates are matters for the police and the
ordinary prosecutors, not for the electoral prosecutors.
"""

from __future__ import annotations

from enum import StrEnum

from sigueme.alerts.kinds import Severity


class ReportCategory(StrEnum):
    """Why a citizen, candidate or campaign filed a report."""

    THREAT = "threat"
    ATTACK_VIOLENCE = "attack_violence"
    VOTE_BUYING_COERCION = "vote_buying_coercion"
    POLLING_STATION_OBSTRUCTION = "polling_station_obstruction"
    MISUSE_PUBLIC_RESOURCES = "misuse_public_resources"
    POLITICAL_VIOLENCE_WOMEN = "political_violence_women"
    OTHER = "other"

    @property
    def label_es(self) -> str:
        """The short label a dispatcher reads."""
        return _LABEL_ES[self]

    @property
    def electoral_crime(self) -> bool:
        """Whether a report of this category may be referred to FEDE Morelos."""
        return self in _ELECTORAL

    @property
    def legal_basis_es(self) -> str | None:
        """The LGMDE article an electoral-crime category falls under; ``None`` otherwise."""
        return _ELECTORAL.get(self)

    @property
    def severity(self) -> Severity:
        """The severity a report of this category enters the queue with (a dispatcher may
        change it once they read the report)."""
        return _SEVERITY[self]


_LABEL_ES = {
    ReportCategory.THREAT: "Amenaza",
    ReportCategory.ATTACK_VIOLENCE: "Agresión o violencia",
    ReportCategory.VOTE_BUYING_COERCION: "Compra o coacción del voto",
    ReportCategory.POLLING_STATION_OBSTRUCTION: "Obstrucción de una casilla",
    ReportCategory.MISUSE_PUBLIC_RESOURCES: "Uso indebido de recursos públicos",
    ReportCategory.POLITICAL_VIOLENCE_WOMEN: (
        "Violencia política contra las mujeres en razón de género"
    ),
    ReportCategory.OTHER: "Otro",
}

_ELECTORAL = {
    ReportCategory.VOTE_BUYING_COERCION: "LGMDE, arts. 7 y 7 Bis",
    ReportCategory.POLLING_STATION_OBSTRUCTION: "LGMDE, art. 7",
    ReportCategory.MISUSE_PUBLIC_RESOURCES: "LGMDE, art. 11",
    ReportCategory.POLITICAL_VIOLENCE_WOMEN: "LGMDE, art. 20 Bis",
}

_SEVERITY = {
    # A physical attack may be under way: the most urgent, like an SOS.
    ReportCategory.ATTACK_VIOLENCE: Severity.EXTREME,
    ReportCategory.THREAT: Severity.SEVERE,
    ReportCategory.POLITICAL_VIOLENCE_WOMEN: Severity.SEVERE,
    # On election day a blocked polling station needs someone there within the hour.
    ReportCategory.POLLING_STATION_OBSTRUCTION: Severity.SEVERE,
    ReportCategory.VOTE_BUYING_COERCION: Severity.MODERATE,
    ReportCategory.MISUSE_PUBLIC_RESOURCES: Severity.MODERATE,
    ReportCategory.OTHER: Severity.MODERATE,
}
