"""The life of an alert: its statuses, what a dispatcher or the traveller may do to it,
and escalation. Pure: the services that store alerts ask these functions.

::

    open ──acknowledge──▶ acknowledged ──dispatch──▶ dispatched ──resolve──▶ resolved
      │  ╲                     │                         │
      │   ╲──dispatch / resolve (a dispatcher may skip steps at 2 a.m.)
      └──── cancel (the traveller's PIN) ──▶ cancelled   (from any live status)

An alert is *live* (needs the police) while open, acknowledged or dispatched; the
database allows one live alert per trip and kind. Escalation raises the severity of an
alert still ``open`` (nobody acknowledged it in time) one step, up to extreme.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from sigueme.alerts.kinds import Severity


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"

    @property
    def live(self) -> bool:
        """Still needs the police (one live alert per trip and kind)."""
        return self in LIVE_STATUSES

    @property
    def label_es(self) -> str:
        return _STATUS_ES[self]


LIVE_STATUSES: Final = frozenset(
    {AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.DISPATCHED}
)

_STATUS_ES = {
    AlertStatus.OPEN: "abierta",
    AlertStatus.ACKNOWLEDGED: "atendida",
    AlertStatus.DISPATCHED: "unidad enviada",
    AlertStatus.RESOLVED: "resuelta",
    AlertStatus.CANCELLED: "cancelada por la persona",
}


class Action(StrEnum):
    """What happened to an alert: its history's entries and the outbox's events."""

    RAISED = "raised"
    REPEATED = "repeated"
    """The same condition again while the alert is live: counted, not a new alert."""
    CONDITION_ENDED = "condition_ended"
    """The trip is back on route, moving again... (the alert stays until resolved)."""
    ESCALATED = "escalated"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"
    DURESS = "duress"
    """The traveller entered their duress PIN: police only."""
    REFERRED_FEDE = "referred_fede"
    """A report of an electoral crime referred to the electoral prosecutor (FEDE
    Morelos): a recorded step, the status does not change."""
    REVEALED = "revealed"
    """A dispatcher looked at who made a report (audited): police only."""
    CATEGORY_CHANGED = "category_changed"
    """A dispatcher set or corrected a report's category (its severity follows)."""
    CHANNEL_CHANGED = "channel_changed"
    """A dispatcher routed a report to a channel."""


class Outcome(StrEnum):
    """How a dispatcher closed an alert."""

    ASSISTED = "assisted"
    FALSE_ALARM = "false_alarm"
    NO_CONTACT = "no_contact"
    SAFE = "safe"
    """Contacted: the person is safe, no help needed."""
    OTHER = "other"

    @property
    def label_es(self) -> str:
        return _OUTCOME_ES[self]


_OUTCOME_ES = {
    Outcome.ASSISTED: "persona auxiliada",
    Outcome.FALSE_ALARM: "falsa alarma",
    Outcome.NO_CONTACT: "sin contacto",
    Outcome.SAFE: "la persona está a salvo",
    Outcome.OTHER: "otro",
}


class TransitionError(Exception):
    """The action does not apply to an alert in its current status."""

    def __init__(self, status: AlertStatus, action: Action) -> None:
        super().__init__(f"an alert that is {status.value} cannot be {action.value}")
        self.status = status
        self.action = action


_NEXT: Final[dict[tuple[AlertStatus, Action], AlertStatus]] = {
    (AlertStatus.OPEN, Action.ACKNOWLEDGED): AlertStatus.ACKNOWLEDGED,
    (AlertStatus.OPEN, Action.DISPATCHED): AlertStatus.DISPATCHED,
    (AlertStatus.ACKNOWLEDGED, Action.DISPATCHED): AlertStatus.DISPATCHED,
    # A second unit, or the unit changed: recorded again.
    (AlertStatus.DISPATCHED, Action.DISPATCHED): AlertStatus.DISPATCHED,
    (AlertStatus.OPEN, Action.RESOLVED): AlertStatus.RESOLVED,
    (AlertStatus.ACKNOWLEDGED, Action.RESOLVED): AlertStatus.RESOLVED,
    (AlertStatus.DISPATCHED, Action.RESOLVED): AlertStatus.RESOLVED,
    (AlertStatus.OPEN, Action.CANCELLED): AlertStatus.CANCELLED,
    (AlertStatus.ACKNOWLEDGED, Action.CANCELLED): AlertStatus.CANCELLED,
    (AlertStatus.DISPATCHED, Action.CANCELLED): AlertStatus.CANCELLED,
}


def next_status(status: AlertStatus, action: Action) -> AlertStatus:
    """The status after ``action``; :class:`TransitionError` when it does not apply
    (acknowledging a resolved alert, resolving twice...)."""
    try:
        return _NEXT[(status, action)]
    except KeyError:
        raise TransitionError(status, action) from None


def escalated(severity: Severity) -> Severity:
    """One step more urgent, at most extreme."""
    return Severity(min(severity + 1, Severity.EXTREME))
