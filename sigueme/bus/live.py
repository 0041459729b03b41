"""The live bus: trip updates from the workers that ingest fixes to everyone watching.

One interface, :class:`LiveBus`, two implementations (as encode/broadcaster does it):

- :class:`LocalLiveBus`: in process. ``publish`` hands the update to every matching
  subscription's queue at once. The embedded default (one worker).
- :class:`RedisLiveBus`: Redis pub/sub, so an update published by one worker reaches
  watchers connected to any other. Each update goes to the trip's channel
  (:func:`trip_channel`, ``sigueme:trip:{id}``) and to :data:`TRIPS_CHANNEL`
  (``sigueme:trips``) for all-trips subscriptions, as JSON ``{"trip_id": ..., "data":
  {...}}``. A worker subscribes (one connection) to the channels its watchers need.

Promises to the publisher (the path of a fix): ``publish`` never blocks on a watcher or
on Redis and never raises. Subscriptions have bounded queues (:data:`QUEUE_SIZE`): one
that overflows is dropped (its ``get`` raises :class:`SubscriberTooSlow`) instead of
slowing anyone down. Redis publishing runs in a background task from a bounded outbox:
a Redis that is down or slow costs updates (logged once, counted in
``sigueme_live_publish_failures_total``), never a fix, which is stored and acknowledged
already. Live updates are best-effort by design: a watcher that missed some gets the
next one, and a fresh snapshot when it resubscribes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, Self

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 1_000
"""Updates a subscription may hold unread before it is dropped."""
TRIPS_CHANNEL: Final = "sigueme:trips"
"""The Redis channel of every trip's updates (all-trips subscriptions)."""
OUTBOX_SIZE: Final = 10_000
"""Updates a Redis bus holds for publishing; past that (Redis down or slow) the oldest
are dropped and counted."""
PUBLISH_BATCH: Final = 500
"""Most updates sent to Redis in one pipeline."""


def trip_channel(trip_id: str) -> str:
    """The Redis channel of one trip's updates."""
    return f"sigueme:trip:{trip_id}"


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Update:
    """One trip update as delivered: the trip and its JSON object (a GeoJSON Feature).

    Shared by every subscription it is delivered to: treat ``data`` as read-only.
    ``text`` (the JSON) is made once, on first use, whoever asks."""

    __slots__ = ("_text", "data", "trip_id")

    def __init__(self, trip_id: str, data: Mapping[str, Any], text: str | None = None) -> None:
        self.trip_id = trip_id
        self.data = data
        self._text = text

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = _dumps(self.data)
        return self._text

    def __repr__(self) -> str:
        return f"Update({self.trip_id!r}, {dict(self.data)!r})"


class LiveMetrics:
    """Counters of a bus, in ``registry`` (the app's) or in none."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.published = Counter(
            "sigueme_live_published",
            "Trip updates published on the live bus.",
            registry=registry,
        )
        self.publish_failures = Counter(
            "sigueme_live_publish_failures",
            "Trip updates lost before reaching the live bus (Redis down or too slow); "
            "their fixes were stored and acknowledged all the same.",
            registry=registry,
        )
        self.subscribers_dropped = Counter(
            "sigueme_live_subscribers_dropped",
            "Live subscriptions dropped because their queue overflowed (a slow watcher).",
            registry=registry,
        )


class SubscriberTooSlow(Exception):
    """The subscription's queue overflowed: it was dropped and gets nothing more."""


class SubscriptionClosed(Exception):
    """The subscription was closed."""


class Subscription:
    """One subscriber's inbox: updates of some trips, or of all trips, in the order they
    arrived, at most ``maxsize`` unread. Made by :meth:`LiveBus.subscribe`; change what
    it follows with :meth:`add`, :meth:`remove` and :meth:`follow_all`; close it (or use
    it as an async context manager) when done."""

    def __init__(self, fanout: _Fanout, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._fanout = fanout
        self.maxsize = maxsize
        self.trip_ids: frozenset[str] = frozenset()
        self.all_trips = False
        self._items: deque[Update] = deque()
        self._wakeup = asyncio.Event()
        self.dropped = asyncio.Event()
        """Set when the queue overflowed: the subscriber is too slow."""
        self.closed = False

    # -- the publisher's side (never blocks) -------------------------------------------

    def offer(self, update: Update) -> bool:
        """Queue ``update``; ``False`` if it was not (closed, or dropped: when the queue
        is full the subscription is dropped and its queue emptied)."""
        if self.closed or self.dropped.is_set():
            return False
        if len(self._items) >= self.maxsize:
            self._items.clear()
            self.dropped.set()
            self._wakeup.set()
            self._fanout.metrics.subscribers_dropped.inc()
            return False
        self._items.append(update)
        self._wakeup.set()
        return True

    # -- the subscriber's side ----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    async def get(self) -> Update:
        """The next update, waiting for one. :class:`SubscriberTooSlow` once dropped,
        :class:`SubscriptionClosed` once closed."""
        while True:
            if self.dropped.is_set():
                raise SubscriberTooSlow
            if self._items:
                return self._items.popleft()
            if self.closed:
                raise SubscriptionClosed
            self._wakeup.clear()
            await self._wakeup.wait()

    def get_nowait(self) -> Update | None:
        """The next update if one is queued (:class:`SubscriberTooSlow` once dropped)."""
        if self.dropped.is_set():
            raise SubscriberTooSlow
        return self._items.popleft() if self._items else None

    async def add(self, trip_ids: Iterable[str]) -> None:
        """Follow ``trip_ids`` too."""
        await self._fanout.change(self, self.trip_ids | frozenset(trip_ids), self.all_trips)

    async def remove(self, trip_ids: Iterable[str]) -> None:
        """Stop following ``trip_ids`` (updates already queued stay)."""
        await self._fanout.change(self, self.trip_ids - frozenset(trip_ids), self.all_trips)

    async def follow_all(self, value: bool = True) -> None:
        """Follow every trip's updates (or stop, and keep only :attr:`trip_ids`)."""
        await self._fanout.change(self, self.trip_ids, value)

    async def close(self) -> None:
        if not self.closed:
            await self._fanout.change(self, frozenset(), False)
            self.closed = True
            self._wakeup.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class LiveBus(Protocol):
    """Publish trip updates; subscribe to some trips' updates or to all of them."""

    metrics: LiveMetrics

    async def publish(self, trip_id: str, data: Mapping[str, Any]) -> None:
        """Send ``data`` (a JSON object: a GeoJSON Feature) to the trip's subscribers.
        Never blocks on them, never raises."""
        ...

    async def subscribe(
        self, trip_ids: Iterable[str] = (), *, all_trips: bool = False, maxsize: int = QUEUE_SIZE
    ) -> Subscription:
        """A subscription to the updates of ``trip_ids`` (or of every trip), from now on."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Fanout:
    """Who in this process follows what, and delivery to them."""

    def __init__(self, metrics: LiveMetrics | None) -> None:
        self.metrics = metrics if metrics is not None else LiveMetrics()
        self._by_trip: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()

    async def subscribe(
        self, trip_ids: Iterable[str] = (), *, all_trips: bool = False, maxsize: int = QUEUE_SIZE
    ) -> Subscription:
        sub = Subscription(self, maxsize)
        await self.change(sub, frozenset(trip_ids), all_trips)
        return sub

    async def change(self, sub: Subscription, trip_ids: frozenset[str], all_trips: bool) -> None:
        if sub.closed:
            raise SubscriptionClosed
        added, removed = trip_ids - sub.trip_ids, sub.trip_ids - trip_ids
        opened: list[str] = []
        closed: list[str] = []
        for trip_id in added:
            subs = self._by_trip.setdefault(trip_id, set())
            if not subs:
                opened.append(trip_channel(trip_id))
            subs.add(sub)
        for trip_id in removed:
            subs = self._by_trip.get(trip_id, set())
            subs.discard(sub)
            if not subs:
                self._by_trip.pop(trip_id, None)
                closed.append(trip_channel(trip_id))
        if all_trips and not sub.all_trips:
            if not self._all:
                opened.append(TRIPS_CHANNEL)
            self._all.add(sub)
        elif not all_trips and sub.all_trips:
            self._all.discard(sub)
            if not self._all:
                closed.append(TRIPS_CHANNEL)
        sub.trip_ids, sub.all_trips = trip_ids, all_trips
        if closed:
            await self._unwatch(closed)
        if opened:
            await self._watch(opened)

    def channels(self) -> list[str]:
        """The Redis channels this process needs."""
        wanted = [trip_channel(t) for t in self._by_trip]
        if self._all:
            wanted.append(TRIPS_CHANNEL)
        return wanted

    def deliver(self, update: Update) -> None:
        """To every subscription of the trip or of all trips, once each."""
        subs = self._by_trip.get(update.trip_id)
        for sub in tuple(self._all):
            sub.offer(update)
        if subs:
            for sub in tuple(subs):
                if not sub.all_trips:
                    sub.offer(update)

    def deliver_trip_channel(self, update: Update) -> None:
        """An update that came on the trip's own channel: to those not following all
        trips (they get it from :data:`TRIPS_CHANNEL`)."""
        for sub in tuple(self._by_trip.get(update.trip_id, ())):
            if not sub.all_trips:
                sub.offer(update)

    def deliver_all_channel(self, update: Update) -> None:
        for sub in tuple(self._all):
            sub.offer(update)

    async def _watch(self, channels: list[str]) -> None:
        """Hook: the process now needs ``channels``."""

    async def _unwatch(self, channels: list[str]) -> None:
        """Hook: the process no longer needs ``channels``."""


class LocalLiveBus(_Fanout):
    """The in-process bus: one worker, no Redis."""

    def __init__(self, *, metrics: LiveMetrics | None = None) -> None:
        super().__init__(metrics)

    async def publish(self, trip_id: str, data: Mapping[str, Any]) -> None:
        self.deliver(Update(trip_id, data))
        self.metrics.published.inc()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


_REDIS_ERRORS: Final = (Exception,)
"""What a Redis call may raise when the server is down or the connection broke
(redis-py's ``RedisError``, ``OSError``, timeouts, ``RuntimeError`` from a pub/sub
whose connection never opened). The bus survives them all: it is best-effort."""


class RedisLiveBus(_Fanout):
    """Redis pub/sub across workers. Use it as an async context manager: entering
    starts the publisher and the reader (one pub/sub connection), leaving stops them."""

    def __init__(
        self,
        redis: Redis,
        *,
        metrics: LiveMetrics | None = None,
        outbox_size: int = OUTBOX_SIZE,
        timeout_s: float = 2.0,
        retry_s: float = 1.0,
    ) -> None:
        super().__init__(metrics)
        self._redis = redis
        self._outbox: deque[tuple[str, Mapping[str, Any]]] = deque()
        self._outbox_size = outbox_size
        self._pending = asyncio.Event()
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._pubsub: PubSub = redis.pubsub()
        self._resubscribe = False
        self._has_channels = asyncio.Event()
        self._confirmed: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._publish_failing = False
        self._read_failing = False

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, trip_id: str, data: Mapping[str, Any]) -> None:
        if len(self._outbox) >= self._outbox_size:
            self._outbox.popleft()
            self.metrics.publish_failures.inc()
        self._outbox.append((trip_id, data))
        self._pending.set()

    async def _publish_forever(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            while self._outbox:
                n = min(len(self._outbox), PUBLISH_BATCH)
                batch = [self._outbox.popleft() for _ in range(n)]
                try:
                    await self._send(batch)
                except asyncio.CancelledError:
                    raise
                except _REDIS_ERRORS:
                    lost = len(batch) + len(self._outbox)
                    self._outbox.clear()
                    self.metrics.publish_failures.inc(lost)
                    if not self._publish_failing:
                        self._publish_failing = True
                        log.warning(
                            "live bus: cannot publish to Redis; live updates are lost until "
                            "it is back (fixes are stored all the same)",
                            exc_info=True,
                        )
                    await asyncio.sleep(self._retry_s)
                    continue
                self.metrics.published.inc(len(batch))
                if self._publish_failing:
                    self._publish_failing = False
                    log.warning("live bus: publishing to Redis again")

    async def _send(self, batch: list[tuple[str, Mapping[str, Any]]]) -> None:
        async with asyncio.timeout(self._timeout_s):
            pipe = self._redis.pipeline(transaction=False)
            for trip_id, data in batch:
                payload = _dumps({"trip_id": trip_id, "data": data})
                pipe.publish(trip_channel(trip_id), payload)
                pipe.publish(TRIPS_CHANNEL, payload)
            await pipe.execute()

    # -- subscribing ----------------------------------------------------------------------

    async def _watch(self, channels: list[str]) -> None:
        confirmations = [self._confirmed.setdefault(c, asyncio.Event()) for c in channels]
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._pubsub.subscribe(*channels)
        except _REDIS_ERRORS:
            # The reader finds the connection broken too, reconnects and subscribes to
            # every channel wanted then: this subscription is remembered.
            self._resubscribe = True
            self._has_channels.set()
            return
        self._has_channels.set()
        # Updates published once Redis has confirmed reach us: wait for the reader to
        # see the confirmations (not for ever: a Redis gone meanwhile must not hang us).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._timeout_s):
                for event in confirmations:
                    await event.wait()

    async def _unwatch(self, channels: list[str]) -> None:
        for channel in channels:
            self._confirmed.pop(channel, None)
        with contextlib.suppress(*_REDIS_ERRORS):
            async with asyncio.timeout(self._timeout_s):
                await self._pubsub.unsubscribe(*channels)

    async def _read_forever(self) -> None:
        while True:
            if not self.channels():
                self._has_channels.clear()
                await self._has_channels.wait()
                continue
            try:
                if self._resubscribe:
                    self._resubscribe = False
                    await self._pubsub.subscribe(*self.channels())
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS:
                if not self._read_failing:
                    self._read_failing = True
                    log.warning(
                        "live bus: Redis subscription lost; watchers get no updates until "
                        "it is back",
                        exc_info=True,
                    )
                await self._reset_pubsub()
                await asyncio.sleep(self._retry_s)
                continue
            if self._read_failing:
                self._read_failing = False
                log.warning("live bus: Redis subscription back")
            if message is not None:
                self._handle(message)

    async def _reset_pubsub(self) -> None:
        old, self._pubsub = self._pubsub, self._redis.pubsub()
        self._resubscribe = True
        with contextlib.suppress(*_REDIS_ERRORS):
            await old.aclose()  # type: ignore[no-untyped-call]

    def _handle(self, message: Mapping[str, Any]) -> None:
        channel = _text(message.get("channel"))
        kind = message.get("type")
        if kind == "subscribe":
            event = self._confirmed.get(channel)
            if event is not None:
                event.set()
            return
        if kind != "message":
            return
        try:
            envelope = json.loads(_text(message.get("data")))
            update = Update(str(envelope["trip_id"]), dict(envelope["data"]))
        except (ValueError, TypeError, KeyError):
            log.warning("live bus: unreadable message on %s ignored", channel)
            return
        if channel == TRIPS_CHANNEL:
            self.deliver_all_channel(update)
        elif channel == trip_channel(update.trip_id):
            self.deliver_trip_channel(update)

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._tasks = [
            asyncio.create_task(self._publish_forever(), name="live-bus-publish"),
            asyncio.create_task(self._read_forever(), name="live-bus-read"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Publish what is queued (briefly: a Redis that is down must not hold shutdown).
        if self._outbox and not self._publish_failing:
            with contextlib.suppress(*_REDIS_ERRORS):
                batch = list(self._outbox)
                self._outbox.clear()
                await self._send(batch)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(*_REDIS_ERRORS):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
