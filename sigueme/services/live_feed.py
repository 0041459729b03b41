"""What watchers are told after a fix: the trip's update, published on the live bus.

Every channel that ingests fixes calls :func:`publish_ingest` right after
:func:`~sigueme.services.ingest.ingest` has returned (its transaction committed), so a
watcher never sees a position that is not stored. Publishing is best-effort: it never
raises and never waits on a watcher or on Redis (:mod:`sigueme.bus.live`).

The update is a GeoJSON Feature (RFC 7946, ``[lon, lat]``)::

    {"type": "Feature",
     "geometry": {"type": "Point", "coordinates": [-99.2345, 18.9211]},
     "properties": {"kind": "position", "trip_id": "...", "t": "2026-05-28T14:05:00Z",
                    "route_status": "on_route", "distance_m": 4.2, "progress_m": 1600.0,
                    "progress_fraction": 0.51, "predicted_arrival": "...Z", "delay_s": -30,
                    "battery": 80, "accuracy": 8, "events": ["back_on_route"]}}

for the newest accepted fix of the call. When fixes were evaluated but none accepted
(vague, jumping or late fixes), a ``"kind": "status"`` Feature without geometry says
what the monitor now thinks (it may have raised events; the phone is still heard
from). A call of resends only publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sigueme.bus.live import LiveBus
from sigueme.services.ingest import IncomingFix, IngestResult, TripStatus

log = logging.getLogger(__name__)

ACCEPTED = "accepted"
_failed_once = False


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def status_properties(status: TripStatus) -> dict[str, Any]:
    """The trip's status as watchers get it."""
    return {
        "trip_id": status.trip_id,
        "route_status": status.route_status,
        "distance_m": _round(status.distance_m, 1),
        "progress_m": _round(status.progress_m, 1),
        "progress_fraction": _round(status.progress_fraction, 4),
        "predicted_arrival": _iso(status.predicted_arrival),
        "delay_s": _round(status.delay_s, 0),
    }


def position_feature(
    status: TripStatus,
    *,
    lon: float,
    lat: float,
    t: datetime,
    battery: float | None,
    accuracy: float | None,
    events: Sequence[str] = (),
) -> dict[str, Any]:
    """A ``position`` Feature: the trip at ``(lon, lat)`` at ``t`` with ``status``."""
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {
            "kind": "position",
            **status_properties(status),
            "t": _iso(t),
            "battery": battery,
            "accuracy": accuracy,
            "events": list(events),
        },
    }


def ingest_update(fixes: Sequence[IncomingFix], result: IngestResult) -> dict[str, Any] | None:
    """The update to publish after ``ingest(fixes)`` returned ``result``, or ``None``."""
    events = [kind for outcome in result.outcomes for kind in outcome.events]
    newest: IncomingFix | None = None
    evaluated: IncomingFix | None = None
    for incoming, outcome in zip(fixes, result.outcomes, strict=True):
        if outcome.duplicate:
            continue
        if evaluated is None or incoming.t > evaluated.t:
            evaluated = incoming
        if outcome.verdict == ACCEPTED and (newest is None or incoming.t > newest.t):
            newest = incoming
    if newest is not None:
        return position_feature(
            result.status,
            lon=newest.lon,
            lat=newest.lat,
            t=datetime.fromtimestamp(newest.t, UTC),
            battery=newest.battery,
            accuracy=newest.accuracy,
            events=events,
        )
    if evaluated is None and not events:
        return None
    return {
        "type": "Feature",
        "geometry": None,
        "properties": {
            "kind": "status",
            **status_properties(result.status),
            "t": _iso(datetime.fromtimestamp(evaluated.t, UTC)) if evaluated else None,
            "events": events,
        },
    }


async def publish_ingest(
    bus: LiveBus | None, trip_id: str, fixes: Sequence[IncomingFix], result: IngestResult
) -> None:
    """Publish the trip's update after a committed :func:`ingest` of ``fixes``.

    Never raises: the fixes are stored, and the phone must get its acknowledgement
    whatever becomes of the live feed (a failure is logged once and counted)."""
    global _failed_once
    if bus is None:
        return
    try:
        update = ingest_update(fixes, result)
        if update is not None:
            await bus.publish(trip_id, update)
    except Exception:
        bus.metrics.publish_failures.inc()
        if not _failed_once:
            _failed_once = True
            log.exception("live feed: the update of trip %s was not published", trip_id)
