"""Report categories: the seven of the issue, Spanish labels, which are electoral crimes
(FEDE Morelos), and their default severities."""

from __future__ import annotations

import pytest

from sigueme.alerts.kinds import Severity
from sigueme.reports.categories import ReportCategory


def test_the_seven_categories_of_the_issue() -> None:
    assert [c.value for c in ReportCategory] == [
        "threat",
        "attack_violence",
        "vote_buying_coercion",
        "polling_station_obstruction",
        "misuse_public_resources",
        "political_violence_women",
        "other",
    ]


@pytest.mark.parametrize(
    ("category", "electoral"),
    [
        (ReportCategory.THREAT, False),
        (ReportCategory.ATTACK_VIOLENCE, False),
        (ReportCategory.VOTE_BUYING_COERCION, True),
        (ReportCategory.POLLING_STATION_OBSTRUCTION, True),
        (ReportCategory.MISUSE_PUBLIC_RESOURCES, True),
        (ReportCategory.POLITICAL_VIOLENCE_WOMEN, True),
        (ReportCategory.OTHER, False),
    ],
)
def test_electoral_crimes_are_the_ones_fede_takes(
    category: ReportCategory, electoral: bool
) -> None:
    # Violence against candidates is for the police and the ordinary prosecutors.
    assert category.electoral_crime is electoral
    assert (category.legal_basis_es is not None) is electoral
    if electoral:
        assert category.legal_basis_es is not None
        assert category.legal_basis_es.startswith("LGMDE")


def test_labels_are_spanish_and_distinct() -> None:
    labels = [c.label_es for c in ReportCategory]
    assert len(set(labels)) == len(labels)
    assert ReportCategory.VOTE_BUYING_COERCION.label_es == "Compra o coacción del voto"
    assert ReportCategory.POLLING_STATION_OBSTRUCTION.label_es == "Obstrucción de una casilla"
    assert all(label[0].isupper() for label in labels)


def test_severities_order_an_attack_first() -> None:
    assert all(isinstance(c.severity, Severity) for c in ReportCategory)
    assert ReportCategory.ATTACK_VIOLENCE.severity is Severity.EXTREME
    assert max(ReportCategory, key=lambda c: c.severity) is ReportCategory.ATTACK_VIOLENCE
    assert ReportCategory.THREAT.severity > ReportCategory.OTHER.severity


def test_values_round_trip_from_the_wire() -> None:
    assert ReportCategory("political_violence_women") is ReportCategory.POLITICAL_VIOLENCE_WOMEN
    with pytest.raises(ValueError, match="not a valid"):
        ReportCategory("robo")
