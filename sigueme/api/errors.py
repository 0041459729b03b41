"""Domain errors as HTTP answers: one table, installed by :func:`install_error_handlers`.

Bodies look like FastAPI's own: ``{"detail": "reason"}``, and for input that breaks a
rule (:class:`~sigueme.errors.Invalid`, :class:`~sigueme.geo.GeoError`) the list form
of a validation error, so clients handle one shape for every 422::

    {"detail": [{"loc": ["route", "coordinates"], "msg": "...", "type": "value_error"}]}
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.responses import Response

from sigueme.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    SchemaOutOfDate,
    SiguemeError,
    TooMany,
    Unauthorized,
)
from sigueme.geo import GeoError
from sigueme.store.fixes import AppendError, UnknownTrip

STATUS: dict[type[SiguemeError], int] = {
    UnknownTrip: 404,  # before AppendError, which it also is
    AppendError: 503,  # the database failed a write: nothing was acknowledged, retry
    NotFound: 404,
    Forbidden: 403,
    Unauthorized: 401,
    Conflict: 409,
    Invalid: 422,
    TooMany: 429,
    SchemaOutOfDate: 503,
}
"""HTTP status of each domain error (a subclass answers as its nearest listed base)."""

_PART = re.compile(r"[^.\[\]]+")


def field_loc(field: str) -> list[str | int]:
    """``"stops[2].radius_m"`` → ``["stops", 2, "radius_m"]``: a field path as the
    ``loc`` of a validation error."""
    return [int(p) if p.isdigit() else p for p in _PART.findall(field)] or [field]


def invalid_body(field: str, reason: str) -> dict[str, object]:
    """The 422 body naming ``field`` and ``reason``."""
    return {"detail": [{"loc": field_loc(field), "msg": reason, "type": "value_error"}]}


def status_of(exc: SiguemeError) -> int:
    """The HTTP status for ``exc`` (500 for a domain error the table does not know)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


async def _domain_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SiguemeError)
    status = status_of(exc)
    if isinstance(exc, Invalid):
        return JSONResponse(invalid_body(exc.field, exc.reason), status_code=status)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    if isinstance(exc, TooMany):
        headers = {"Retry-After": str(max(exc.retry_after_s, 1))}
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


async def _geo_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GeoError)
    return JSONResponse(invalid_body(exc.field, exc.reason), status_code=422)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    """FastAPI's 422, without echoing the refused input back: it may be huge (a route
    of a million vertices), personal (positions), or not JSON at all (NaN)."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every :class:`~sigueme.errors.SiguemeError` and
    :class:`~sigueme.geo.GeoError` a handler or dependency raises with its status, and
    request validation errors without their input."""
    app.add_exception_handler(SiguemeError, _domain_error)
    app.add_exception_handler(GeoError, _geo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
