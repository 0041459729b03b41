"""The one way the API hands fixes to the path of a fix, whatever the channel: the
worker's risk zones refreshed when due, the worker's group commit
(:class:`~sigueme.services.batcher.IngestBatcher`), and the
outbox relay woken when the fixes raised alerts (so they reach the police queue at
once); and SOS from any channel."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sigueme.services.alerts import AlertChange, Position
from sigueme.services.batcher import IngestBatcher
from sigueme.services.ingest import IncomingFix, IngestResult, ingest
from sigueme.services.risk_zones import RiskZoneIndex
from sigueme.services.traveller import SosResult, raise_sos


def wake_relay(state: Any, changes: Sequence[AlertChange]) -> None:
    """Tell this worker's outbox relay that alert changes were just committed."""
    wake = getattr(state, "relay_wake", None)
    if changes and wake is not None:
        wake.set()


async def take_fixes(
    state: Any, trip_id: str, fixes: Sequence[IncomingFix], *, received_at: datetime
) -> IngestResult:
    """:func:`~sigueme.services.ingest.ingest` with this worker's risk zones (``state``
    is ``app.state``); raises what it raises."""
    zones = getattr(state, "risk_zones", None)
    if isinstance(zones, RiskZoneIndex):
        await zones.refresh(state.sessions, now=time.monotonic())
    else:
        zones = None
    batcher = getattr(state, "ingest_batcher", None)
    if isinstance(batcher, IngestBatcher):
        result = await batcher.ingest(trip_id, fixes, received_at=received_at, zones=zones)
    else:
        result = await ingest(state.sessions, trip_id, fixes, received_at=received_at, zones=zones)
    wake_relay(state, result.alerts)
    return result


async def take_sos(
    state: Any,
    trip_id: str,
    *,
    source: str,
    now: datetime,
    fix: IncomingFix | None = None,
    note: str | None = None,
) -> SosResult:
    """Raise the trip's SOS (at ``fix`` when given, else its last known position)."""
    position = None
    if fix is not None:
        position = Position(
            lon=fix.lon,
            lat=fix.lat,
            t=datetime.fromtimestamp(fix.t, now.tzinfo),
            accuracy=fix.accuracy,
            battery=fix.battery,
        )
    result = await raise_sos(
        state.sessions, trip_id, source=source, now=now, position=position, note=note
    )
    wake_relay(state, [result.change])
    return result
