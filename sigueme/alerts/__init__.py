"""Alerts: what the police queue holds, how serious each kind is, and which trip
events raise or clear one. Pure, like :mod:`sigueme.geo`: no I/O here."""

from sigueme.alerts.kinds import (
    AlertKind,
    Severity,
    alert_kind_for,
    cleared_by,
)

__all__ = ["AlertKind", "Severity", "alert_kind_for", "cleared_by"]
