"""Retention: location history is deleted once it is older than its retention period,
except the fixes an alert keeps as evidence (promise 6).

:func:`purge` deletes in bounded chunks, each its own short transaction, so a purge
of millions of rows never holds one giant transaction, never locks the table, and
lets fix appends go on between chunks. :func:`purge_forever` is the background task
the service runs; ``sigueme purge`` runs :func:`purge` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Delete, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from sigueme.settings import Settings
from sigueme.store.models import Fix, Trip, TripStatus
from sigueme.store.reports import ReportPurge, evidence_store_for, purge_report_evidence

log = logging.getLogger(__name__)

DEFAULT_CHUNK: Final = 10_000
"""Fixes deleted per transaction."""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge did (or, in a dry run, would do). Counts only: no personal data."""

    cutoff: datetime
    """Fixes received before this instant are purged."""
    purged: int
    """Fixes deleted (dry run: that would be deleted)."""
    evidence_kept: int
    """Fixes received before the cutoff that alerts keep as evidence: not deleted."""
    chunks: int = 0
    """Transactions that deleted (zero in a dry run)."""
    dry_run: bool = False
    complete: bool = True
    """False when ``stop`` ended the purge early: older fixes may remain."""
    positions_cleared: int = 0
    """Ended trips whose last known position (older than the cutoff) was forgotten."""


def _chunk_delete(cutoff: datetime, chunk_size: int, postgres: bool) -> Delete:
    ids = select(Fix.id).where(Fix.received_at < cutoff, ~Fix.evidence).limit(chunk_size)
    if postgres:
        # Two workers purging at once take different rows instead of queueing on the
        # same row locks.
        ids = ids.with_for_update(skip_locked=True)
    return delete(Fix).where(Fix.id.in_(ids.scalar_subquery()))


async def purge(
    engine: AsyncEngine,
    older_than: datetime,
    *,
    chunk_size: int = DEFAULT_CHUNK,
    dry_run: bool = False,
    stop: asyncio.Event | None = None,
) -> PurgeResult:
    """Delete the fixes received before ``older_than`` that are not evidence.

    Deletes at most ``chunk_size`` fixes per transaction, committing each chunk,
    until none is left; each committed chunk stays deleted even if a later one
    fails. If ``stop`` is set, returns after the chunk in progress
    (``complete=False``). ``dry_run`` counts and deletes nothing.
    """
    if older_than.tzinfo is None:
        raise ValueError("older_than must be timezone-aware")
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    old = Fix.received_at < older_than
    if dry_run:
        async with engine.connect() as conn:
            purgeable = await conn.scalar(
                select(func.count()).select_from(Fix).where(old, ~Fix.evidence)
            )
            kept = await conn.scalar(select(func.count()).select_from(Fix).where(old, Fix.evidence))
        return PurgeResult(older_than, purgeable or 0, kept or 0, dry_run=True)

    stmt = _chunk_delete(older_than, chunk_size, engine.dialect.name == "postgresql")
    purged = chunks = 0
    complete = True
    while True:
        if stop is not None and stop.is_set():
            complete = False
            break
        async with engine.begin() as conn:
            deleted = (await conn.execute(stmt)).rowcount
        purged += deleted
        chunks += 1
        if deleted < chunk_size:
            break
        # Let the rest of the process (fix appends, requests) run between chunks.
        await asyncio.sleep(0)
    cleared = 0
    if complete:
        # The trip row repeats its last fix (position, accuracy, battery): history too.
        # Kept while the trip is active (the watchdog needs it) or while an alert of the
        # trip holds evidence.
        evidence = select(Fix.id).where(Fix.trip_id == Trip.id, Fix.evidence).exists()
        forget = (
            update(Trip)
            .where(
                Trip.last_fix_at < older_than,
                Trip.status != TripStatus.ACTIVE.value,
                Trip.last_lon.is_not(None),
                ~evidence,
            )
            .values(last_lon=None, last_lat=None, last_accuracy=None, last_battery=None)
        )
        async with engine.begin() as conn:
            cleared = (await conn.execute(forget)).rowcount
    async with engine.connect() as conn:
        kept = await conn.scalar(select(func.count()).select_from(Fix).where(old, Fix.evidence))
    return PurgeResult(
        older_than, purged, kept or 0, chunks, complete=complete, positions_cleared=cleared
    )


async def purge_forever(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Purge every ``settings.purge_interval_s`` the fixes received more than
    ``settings.retention_days`` ago, starting now, until ``stop`` is set.

    A failed run is logged and the next one comes at the next interval; only
    cancelling the task or setting ``stop`` ends it, and ``stop`` does so promptly
    (after the chunk in progress). Logs counts only, never positions or trips.
    """
    while not stop.is_set():
        cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
        try:
            result = await purge(engine, cutoff, stop=stop)
        except Exception:
            log.exception(
                "retention: purge failed; next attempt in %.0f s", settings.purge_interval_s
            )
        else:
            log.info(
                "retention: purged %d fixes received before %s in %d chunks; "
                "%d older fixes kept as evidence%s",
                result.purged,
                cutoff.isoformat(timespec="seconds"),
                result.chunks,
                result.evidence_kept,
                "" if result.complete else " (stopped before the end)",
            )
        try:
            reports = await _purge_reports(engine, settings, cutoff)
        except Exception:
            log.exception("retention: report purge failed; next attempt at the next interval")
        else:
            log.info(
                "retention: forgot %d reports and %d evidence files (%d files deleted); "
                "%d kept while their alert is live",
                reports.reports,
                reports.media,
                len(reports.orphan_keys),
                reports.kept_live,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.purge_interval_s)


async def _purge_reports(engine: AsyncEngine, settings: Settings, cutoff: datetime) -> ReportPurge:
    """Reports past retention (:func:`sigueme.store.reports.purge_report_evidence`)."""
    store = evidence_store_for(settings)
    try:
        return await purge_report_evidence(engine, store, cutoff)
    finally:
        await store.aclose()
