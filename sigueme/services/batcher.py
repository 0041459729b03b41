"""Group commit for the path of a fix: the calls of many phones, one transaction.

Every channel of a worker hands its calls to the worker's :class:`IngestBatcher`
instead of calling :func:`~sigueme.services.ingest.ingest` itself. When fewer than
:data:`WRITERS` batches are being written, a call starts one at once (no added wait
when the worker is quiet); calls that arrive meanwhile wait and go together in the next
batch (:func:`~sigueme.services.ingest.ingest_many`: one transaction, the trips' rows
locked in id order, one statement per step for the whole batch). Under load a commit
thus carries many phones' fixes, and the database's round trips and commits are shared
among them; each call still gets exactly its own answer, committed before it is
returned (an acknowledged fix is stored). A phone's own calls never overlap (it waits
for each acknowledgement); calls of one trip from two channels are ordered by the
trip's row lock, as without batching.

A database error fails every call of its batch (nothing of it was stored; each phone
resends, and resends are idempotent); a refused call (invalid, unknown or ended trip)
fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sigueme.services.ingest import (
    IncomingFix,
    IngestCall,
    IngestResult,
    ZoneLookup,
    ingest_many,
)

log = logging.getLogger(__name__)

MAX_CALLS: Final = 200
"""Most calls one batch takes."""
MAX_FIXES: Final = 2_000
"""Most fixes one batch takes (a call over it goes alone)."""
WRITERS: Final = 1
"""Batches written at once on PostgreSQL (more than one would let one wait for the
database while the next is evaluated; trips are locked in id order, so batches never
deadlock: 2 was not measured better on this 2-core machine). SQLite has one writer: one
batch at a time."""


class IngestBatcher:
    """One worker's group commit (see the module's doc)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        max_calls: int = MAX_CALLS,
        max_fixes: int = MAX_FIXES,
        writers: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.max_calls = max_calls
        self.max_fixes = max_fixes
        if writers is None:
            bind = sessions.kw.get("bind")
            sqlite = bind is not None and bind.dialect.name == "sqlite"
            writers = 1 if sqlite else WRITERS
        self.writers = writers
        self._waiting: list[tuple[IngestCall, asyncio.Future[IngestResult]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._zones: ZoneLookup | None = None
        self.batches = 0
        self.calls = 0

    async def ingest(
        self,
        trip_id: str,
        fixes: Sequence[IncomingFix],
        *,
        received_at: datetime,
        zones: ZoneLookup | None = None,
    ) -> IngestResult:
        """As :func:`~sigueme.services.ingest.ingest`, in the next batch."""
        future: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        # Whoever waits gets the answer; one who left does not leave it "never retrieved".
        future.add_done_callback(_consume)
        self._waiting.append((IngestCall(trip_id, fixes, received_at), future))
        if zones is not None:
            self._zones = zones
        if len(self._running) < self.writers:
            task = asyncio.create_task(self._write(), name="ingest-batcher")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        # Shielded: a caller that goes away (a phone disconnecting) does not cancel the
        # batch the others wait on; its fixes are still stored.
        return await asyncio.shield(future)

    def _take(self) -> list[tuple[IngestCall, asyncio.Future[IngestResult]]]:
        batch: list[tuple[IngestCall, asyncio.Future[IngestResult]]] = []
        fixes = 0
        while self._waiting and len(batch) < self.max_calls:
            call = self._waiting[0][0]
            if batch and fixes + len(call.fixes) > self.max_fixes:
                break
            batch.append(self._waiting.pop(0))
            fixes += len(call.fixes)
        return batch

    async def _write(self) -> None:
        while self._waiting:
            batch = self._take()
            self.batches += 1
            self.calls += len(batch)
            try:
                answers = await ingest_many(
                    self.sessions, [call for call, _ in batch], zones=self._zones
                )
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    for _, future in self._waiting:
                        future.cancel()
                    self._waiting.clear()
                    raise
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, Exception):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)


def _consume(future: asyncio.Future[IngestResult]) -> None:
    if not future.cancelled():
        future.exception()
