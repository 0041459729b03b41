"""The FastAPI application: :func:`create_app` wires settings, storage, routers and
error handling; nothing is built at import time.

Start-up (the lifespan) opens the database engine, refuses a database whose schema is
not the code's (:class:`~sigueme.errors.SchemaOutOfDate`, saying to run ``sigueme
migrate``), puts the session factory in ``app.state``, then enters each of
``app.state.lifespan_hooks`` in order. Everything is entered on one
:class:`AsyncExitStack`, so a start that fails half-way still closes what it opened,
and shutdown closes in reverse order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from redis.asyncio import Redis

from sigueme import __version__
from sigueme.api import (
    alerts,
    background,
    devices,
    health,
    live,
    queue,
    reports,
    risk_zones,
    shares,
    trackers,
    trips,
    users,
    watch,
    web,
    webhooks,
    whatsapp,
)
from sigueme.api.errors import install_error_handlers
from sigueme.api.limits import MAX_BODY_BYTES, BodySizeLimit, document_refusals
from sigueme.api.log_privacy import keep_secrets_out_of_logs
from sigueme.api.metrics import HttpMetrics, MetricsMiddleware
from sigueme.bus.live import LiveBus, LiveMetrics, LocalLiveBus, RedisLiveBus
from sigueme.services.batcher import IngestBatcher
from sigueme.services.risk_zones import RiskZoneIndex
from sigueme.settings import Settings
from sigueme.store.db import check_schema, make_engine, sessionmaker
from sigueme.store.retention import purge_forever

LifespanHook = Callable[[FastAPI], AbstractAsyncContextManager[object]]
"""Something that runs for the app's lifetime (a background task, a client pool):
entered after the database is ready, exited at shutdown in reverse order."""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    # Here, not in create_app: a server configures its logging between the two.
    keep_secrets_out_of_logs()
    async with AsyncExitStack() as stack:
        engine = make_engine(settings.database_url.get_secret_value())
        stack.push_async_callback(engine.dispose)
        await check_schema(engine)
        app.state.engine = engine
        app.state.sessions = sessionmaker(engine)
        app.state.ingest_batcher = IngestBatcher(app.state.sessions)
        app.state.redis = None
        if settings.redis_url is not None:
            # Connects lazily: a Redis that is down at start does not stop the service.
            client = Redis.from_url(settings.redis_url.get_secret_value())
            stack.push_async_callback(client.aclose)
            app.state.redis = client
        hooks: list[LifespanHook] = app.state.lifespan_hooks
        for hook in hooks:
            await stack.enter_async_context(hook(app))
        yield


@asynccontextmanager
async def retention_task(app: FastAPI) -> AsyncIterator[None]:
    """Purge location history past its retention period, in the background, for the
    app's lifetime (ARCHITECTURE.md, promise 6)."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        purge_forever(app.state.engine, app.state.settings, stop), name="retention-purge"
    )
    try:
        yield
    finally:
        stop.set()
        await task


@asynccontextmanager
async def live_bus(app: FastAPI) -> AsyncIterator[None]:
    """The live bus for the app's lifetime (``app.state.live_bus``): Redis pub/sub when
    ``app.state.redis`` is set (several workers), in process otherwise."""
    metrics: LiveMetrics = app.state.live_metrics
    redis: Redis | None = app.state.redis
    bus: LiveBus = (
        RedisLiveBus(redis, metrics=metrics) if redis is not None else LocalLiveBus(metrics=metrics)
    )
    async with bus:
        app.state.live_bus = bus
        try:
            yield
        finally:
            app.state.live_bus = None


def create_app(
    settings: Settings | None = None, *, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    """The Sígueme API. ``settings`` default to the ``SIGUEME_*`` environment.

    Nothing is opened here: the database is opened (and its schema checked) when the
    app starts. Add background work to ``app.state.lifespan_hooks`` before it starts."""
    settings = settings if settings is not None else Settings()
    app = FastAPI(
        title="Sígueme",
        version=__version__,
        description="Real-time route monitoring for people at risk, with alerts to "
        "Policía Morelos. Every /v1 call needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = HttpMetrics()
    app.state.lifespan_hooks = []
    app.state.live_metrics = LiveMetrics(app.state.metrics.registry)
    app.state.live_bus = None
    app.state.risk_zones = RiskZoneIndex()

    # -- lifespan hooks ----------------------------------------------------------------
    app.state.lifespan_hooks.append(retention_task)
    app.state.lifespan_hooks.append(live_bus)
    app.state.lifespan_hooks.append(queue.police_queue)
    app.state.lifespan_hooks.append(webhooks.webhook_task)
    app.state.lifespan_hooks.append(background.alert_services)  # after queue and webhooks
    app.state.lifespan_hooks.append(reports.report_services)  # evidence store, WhatsApp
    app.state.relay_wake = None

    install_error_handlers(app)
    # Added last runs first: metrics see every answer, including the 413s.
    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    app.openapi = document_refusals(app.openapi)  # type: ignore[method-assign]
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)

    app.include_router(health.router)
    app.include_router(users.router)
    # -- trip and share routers ----------------------------------------------------------
    app.include_router(trips.router)
    app.include_router(shares.router)
    app.include_router(live.router)
    app.include_router(watch.router)
    app.include_router(devices.router)
    app.include_router(risk_zones.router)
    app.include_router(webhooks.router)
    app.include_router(queue.router)
    app.include_router(alerts.router)
    app.include_router(trackers.router)
    # -- reports (SeguriChat): the API, channels and the WhatsApp webhook ---------------
    app.include_router(reports.router)
    app.include_router(whatsapp.router)
    # -- the web pages (log-in, live map, share link, console) and their files -----------
    app.include_router(web.router)
    return app
