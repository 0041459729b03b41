"""The alert services every worker runs for the app's lifetime: the outbox relay (alert
changes onto the police queue, the watchers' feed and the webhooks), the watchdog
(silent and overdue trips, escalation of alerts nobody acknowledged). (The risk zones
are refreshed on the path of a fix, when due: :func:`sigueme.api.fixes_in.take_fixes`.)

``app.state.relay_wake`` is the relay's doorbell: whoever commits an alert change in
this worker rings it (:func:`sigueme.api.fixes_in.wake_relay`), so the change is on the
police queue within milliseconds rather than at the next poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from sigueme.alerts.lifecycle import Action
from sigueme.services.alerts import AlertChange
from sigueme.services.relay import Relayed, relay_forever
from sigueme.services.watchdog import watchdog_forever
from sigueme.services.webhooks import enqueue_deliveries
from sigueme.settings import Settings


@asynccontextmanager
async def alert_services(app: FastAPI) -> AsyncIterator[None]:
    """Needs ``app.state.police_queue`` (and the live bus, webhooks hooks) entered first."""
    settings: Settings = app.state.settings
    stop = asyncio.Event()
    wake = asyncio.Event()
    app.state.relay_wake = wake

    async def to_webhooks(session: AsyncSession, relayed: Relayed) -> None:
        # Webhooks may belong to monitors: they get the alert as watchers do, without
        # what only the police read (the duress PIN's marks), and never its duress step.
        if relayed.event == Action.DURESS.value:
            return
        await enqueue_deliveries(
            session,
            outbox_id=relayed.outbox_id,
            alert_id=relayed.alert_id,
            trip_id=relayed.trip_id,
            event=relayed.event,
            payload=relayed.public,
        )

    def wake_webhooks(_published: list[Relayed]) -> None:
        # After the commit: the sender finds the deliveries the pass enqueued.
        webhook_wake = getattr(app.state, "webhook_wake", None)
        if webhook_wake is not None:
            webhook_wake.set()

    def woken(changes: list[AlertChange]) -> None:
        if changes:
            wake.set()

    tasks = [
        asyncio.create_task(
            relay_forever(
                app.state.sessions,
                app.state.police_queue,
                stop,
                public_url=settings.public_url,
                wake=wake,
                live=app.state.live_bus,
                on_published=to_webhooks,
                after_commit=wake_webhooks,
            ),
            name="alert-relay",
        ),
        asyncio.create_task(
            watchdog_forever(
                app.state.sessions,
                stop,
                escalate_after=timedelta(seconds=settings.escalate_after_s),
                interval_s=settings.watchdog_interval_s,
                on_changes=woken,
            ),
            name="watchdog",
        ),
    ]
    try:
        yield
    finally:
        stop.set()
        wake.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        app.state.relay_wake = None
