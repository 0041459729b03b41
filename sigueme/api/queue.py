"""The police queue over HTTP, for dispatchers' systems that do not speak Redis (and
for the embedded default, whose queue is on the database).

The same operations as the queue itself (:class:`~sigueme.bus.queue.PoliceQueue`):
read new entries as a named consumer, acknowledge them, reclaim those another consumer
read and left unacknowledged, and see how many are pending. Delivery is at least once:
an entry read and not acknowledged comes back to whoever reclaims it, and an alert
change may be queued twice; tell duplicates apart by the entry's ``outbox_id``.

Dispatchers and admins only. A queue backend that is down answers 503 with the reason
and ``Retry-After``: nothing was read or acknowledged, try again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import HTTPConnection

from sigueme.api.deps import SessionDep, require_role
from sigueme.api.trips import INVALID, UNAUTHORIZED, _err
from sigueme.bus.queue import PoliceQueue, QueueEntry, QueueUnavailable, make_police_queue
from sigueme.store.models import Role

RETRY_AFTER_S = 5
"""What a 503 tells the caller to wait before trying again, in seconds."""

router = APIRouter(
    prefix="/v1/queue",
    tags=["police queue"],
    dependencies=[Depends(require_role(Role.DISPATCHER, Role.ADMIN))],
    responses={
        **UNAUTHORIZED,
        403: _err("Only dispatchers and admins work the police queue."),
        503: _err("The queue's backend (Redis or the database) is down: retry later."),
    },
)

Consumer = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Who reads: one name per reading process (a console, a CAD bridge), "
        "the same after a restart so it finds what it held.",
        examples=["cad-cuernavaca-1"],
    ),
]
EntryId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=41,
        pattern=r"^[0-9]+(-[0-9]+)?$",
        description="An entry's id as read.",
        examples=["1764284400000-0", "42"],
    ),
]


class QueueEntryOut(BaseModel):
    """One alert change. ``fields`` are the queue's (all strings): ``outbox_id``,
    ``alert_id``, ``event``, ``kind``, ``severity``, ``status``, ``trip_id``,
    ``opened_at`` and ``alert`` (the alert as JSON)."""

    id: str
    fields: dict[str, str]
    deliveries: int = Field(description="Times handed out; more than 1: reclaimed.")


class QueueEntries(BaseModel):
    entries: list[QueueEntryOut]


class ReadRequest(BaseModel):
    """Entries never handed to anyone, oldest first, now held by ``consumer`` until
    acknowledged."""

    model_config = ConfigDict(extra="forbid")

    consumer: Consumer
    count: int = Field(10, ge=1, le=100, description="At most this many entries.")
    block_ms: int = Field(
        0, ge=0, le=30_000, description="Wait up to this long for one when there is none."
    )


class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[EntryId] = Field(min_length=1, max_length=1000)


class AckResult(BaseModel):
    acknowledged: int = Field(description="How many of the ids were pending.")


class ClaimRequest(BaseModel):
    """Entries read by some consumer and not acknowledged for ``min_idle_ms`` (it
    crashed, or hangs), now held by ``consumer``."""

    model_config = ConfigDict(extra="forbid")

    consumer: Consumer
    min_idle_ms: int = Field(ge=1000, le=7 * 24 * 3600 * 1000)
    count: int = Field(10, ge=1, le=100)


class QueueInfo(BaseModel):
    pending: int = Field(description="Entries handed out and not acknowledged.")
    backend: Literal["redis", "database"]
    stream: str = Field(description="The Redis Stream's key (the table on the database).")
    group: str = Field(description="The consumer group.")


def _unavailable(reason: str) -> HTTPException:
    return HTTPException(503, detail=reason, headers={"Retry-After": str(RETRY_AFTER_S)})


def get_police_queue(conn: HTTPConnection) -> PoliceQueue:
    """The app's queue (set by :func:`police_queue`); 503 while it is not running."""
    queue: PoliceQueue | None = getattr(conn.app.state, "police_queue", None)
    if queue is None:
        raise _unavailable("the police queue is not running")
    return queue


QueueDep = Annotated[PoliceQueue, Depends(get_police_queue)]


def _out(entries: list[QueueEntry]) -> QueueEntries:
    return QueueEntries(
        entries=[QueueEntryOut(id=e.id, fields=e.fields, deliveries=e.deliveries) for e in entries]
    )


@router.post(
    "/read",
    response_model=QueueEntries,
    summary="Read new entries as a consumer",
    responses=INVALID,
)
async def read(body: ReadRequest, queue: QueueDep, session: SessionDep) -> QueueEntries:
    """``XREADGROUP``: up to ``count`` entries no consumer has had, oldest first, held
    by ``consumer`` until acknowledged; waits up to ``block_ms`` when there is none."""
    # The caller is known: give the request's connection back before a long wait.
    await session.close()
    try:
        entries = await queue.read(body.consumer, count=body.count, block_ms=body.block_ms)
    except QueueUnavailable as exc:
        raise _unavailable(str(exc)) from exc
    return _out(entries)


@router.post(
    "/ack",
    response_model=AckResult,
    summary="Acknowledge entries",
    responses=INVALID,
)
async def ack(body: AckRequest, queue: QueueDep, session: SessionDep) -> AckResult:
    """``XACK``: these entries are dealt with and never come back. Unknown or already
    acknowledged ids count 0."""
    await session.close()
    try:
        return AckResult(acknowledged=await queue.ack(body.ids))
    except QueueUnavailable as exc:
        raise _unavailable(str(exc)) from exc


@router.post(
    "/claim",
    response_model=QueueEntries,
    summary="Reclaim entries another consumer left unacknowledged",
    responses=INVALID,
)
async def claim(body: ClaimRequest, queue: QueueDep, session: SessionDep) -> QueueEntries:
    """``XAUTOCLAIM``: up to ``count`` entries pending for ``min_idle_ms`` or more, now
    held by ``consumer``; ``deliveries`` tells how many times each was handed out."""
    await session.close()
    try:
        entries = await queue.claim_stale(
            body.consumer, min_idle_ms=body.min_idle_ms, count=body.count
        )
    except QueueUnavailable as exc:
        raise _unavailable(str(exc)) from exc
    return _out(entries)


@router.get("", response_model=QueueInfo, summary="The queue: backend and pending entries")
async def info(queue: QueueDep, session: SessionDep) -> QueueInfo:
    await session.close()
    try:
        pending = await queue.pending()
    except QueueUnavailable as exc:
        raise _unavailable(str(exc)) from exc
    backend: Literal["redis", "database"] = "redis" if queue.backend == "redis" else "database"
    return QueueInfo(pending=pending, backend=backend, stream=queue.stream, group=queue.group)


@asynccontextmanager
async def police_queue(app: FastAPI) -> AsyncIterator[None]:
    """The police queue for the app's lifetime (``app.state.police_queue``): a Redis
    Stream when ``app.state.redis`` is set, the database otherwise. It holds no
    connection of its own (the app's Redis client and sessions)."""
    settings = app.state.settings
    app.state.police_queue = make_police_queue(
        app.state.redis,
        app.state.sessions,
        stream=settings.police_stream,
        group=settings.police_group,
    )
    try:
        yield
    finally:
        app.state.police_queue = None
