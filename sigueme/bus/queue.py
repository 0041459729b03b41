"""The Policía Morelos queue: alert changes, in order, for dispatcher consoles and the
force's own systems.

With Redis, it is a Redis Stream (default key ``sigueme:police``) with one consumer group
(default ``policia-morelos``): consumers read with ``XREADGROUP``, acknowledge with
``XACK``, and entries a crashed consumer left pending are reclaimed with ``XAUTOCLAIM``
(:class:`RedisStreamQueue`). In the embedded default the same interface runs on the
database (:class:`DatabaseQueue`, table ``police_queue``).

Delivery is at least once: the outbox relay (:mod:`sigueme.services.relay`) may put an
alert change on the queue twice (a crash between ``XADD`` and marking it published).
Every entry carries ``outbox_id`` (unique per change) and ``alert_id``: consumers tell
duplicates apart with them.

Entry fields (all strings, as a Redis Stream holds them):

``outbox_id``, ``alert_id``, ``event`` (raised, repeated, escalated, acknowledged,
dispatched, resolved, cancelled, duress, condition_ended), ``kind``, ``severity``
(1-4), ``status``, ``trip_id``, ``opened_at`` (ISO 8601), ``alert`` (the alert as JSON,
as ``GET /v1/alerts/{id}`` returns it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_STREAM = "sigueme:police"
DEFAULT_GROUP = "policia-morelos"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: str
    """The entry's id: a Redis Stream id (``1764284400000-0``), or the row id on the
    database."""
    fields: dict[str, str]
    deliveries: int = 1
    """How many times it was handed to a consumer (more than one: reclaimed)."""


class QueueUnavailable(Exception):
    """The queue's backend cannot be reached (Redis down): try again later."""


class PoliceQueue(Protocol):
    async def publish(self, fields: Mapping[str, str]) -> str:
        """Append an entry; its id. :class:`QueueUnavailable` when the backend is down."""
        ...

    async def read(
        self, consumer: str, *, count: int = 10, block_ms: int | None = None
    ) -> list[QueueEntry]:
        """Entries never delivered to the group, now held by ``consumer`` until it
        acknowledges them (``XREADGROUP GROUP g consumer COUNT n BLOCK ms STREAMS s >``).
        ``block_ms``: wait up to that long for one when there is none."""
        ...

    async def ack(self, ids: Sequence[str]) -> int:
        """Acknowledge entries (``XACK``); how many were pending."""
        ...

    async def claim_stale(
        self, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[QueueEntry]:
        """Entries read by some consumer but not acknowledged for ``min_idle_ms``, now
        held by ``consumer`` (``XAUTOCLAIM``)."""
        ...

    async def pending(self) -> int:
        """Entries delivered and not acknowledged."""
        ...
