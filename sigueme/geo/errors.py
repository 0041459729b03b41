"""Errors raised by the geo core.

Every error names the input it refuses (``field``) and why (``reason``), so the API
can answer a 4xx that a person can act on. They are ``ValueError`` subclasses:
bad input, never a bug.
"""

from __future__ import annotations


class GeoError(ValueError):
    """Input that the geo core refuses."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class RouteError(GeoError):
    """A planned route, corridor, stop or schedule that cannot be monitored."""


class FixError(GeoError):
    """A location fix that is not a position on Earth at a time."""


class ThresholdError(GeoError):
    """A monitoring threshold outside its allowed range."""
