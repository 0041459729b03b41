"""The service's domain errors: one small hierarchy, mapped to HTTP statuses in one
table (:mod:`sigueme.api.errors`)."""

from __future__ import annotations


class SiguemeError(Exception):
    """Base of the errors a caller can act on."""


class NotFound(SiguemeError):
    """No such thing, or not one the caller may see (the same answer, on purpose)."""


class Forbidden(SiguemeError):
    """The caller is known but may not do this."""


class Unauthorized(SiguemeError):
    """No valid credentials."""


class Conflict(SiguemeError):
    """The request clashes with the current state (a finished trip, a name taken)."""


class TooMany(SiguemeError):
    """Too many attempts or requests: come back after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Invalid(SiguemeError):
    """Input that passes the schema but not the rules (a route that cannot be followed)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class SchemaOutOfDate(SiguemeError):
    """The database schema is not the one this code needs."""
