"""Liveness, readiness and metrics, for load balancers, orchestrators and Prometheus.

None of these needs a token: they say nothing about anyone's trips. Keep ``/metrics``
off the public internet at the proxy if its traffic figures are a concern.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from sigueme.api.metrics import HttpMetrics

READY_TIMEOUT_S = 3.0
"""A database that takes longer than this to answer SELECT 1 is not ready."""

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    reason: str | None = None


@router.get(
    "/healthz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="The process is alive",
)
async def healthz() -> Health:
    """Answers as long as the process serves requests; touches nothing else."""
    return Health(status="ok")


def _reason(exc: BaseException) -> str:
    # The driver's own message (e.g. "connection refused", "database ... does not
    # exist"), without SQLAlchemy's statement dump; never the URL or its password.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_S:g} s"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__


@router.get(
    "/readyz",
    response_model=Health,
    summary="Ready to serve: the database answers (and Redis, if configured)",
    responses={503: {"model": Health, "description": "Not ready, with the reason."}},
)
async def readyz(request: Request) -> Response:
    """200 when the database answers ``SELECT 1``; 503 with the reason otherwise. With
    Redis configured but not answering ``PING``, still 200 (fixes and alerts are stored
    and reach the queue later) but ``degraded``, with the reason."""
    engine: AsyncEngine = request.app.state.engine
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready", reported, never raised
        body = Health(status="unavailable", reason=f"database: {_reason(exc)}")
        return JSONResponse(body.model_dump(), status_code=503)
    redis: Redis | None = request.app.state.redis
    if redis is not None:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await redis.ping()
        except Exception as exc:  # reported, never raised
            body = Health(status="degraded", reason=f"redis: {_reason(exc)}")
            return JSONResponse(body.model_dump())
    return JSONResponse(Health(status="ok").model_dump(exclude_none=True))


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the request counter and latency histogram."""
    http: HttpMetrics = request.app.state.metrics
    return Response(generate_latest(http.registry), media_type=CONTENT_TYPE_LATEST)
