"""Fan-out between the workers that receive fixes and the watchers who follow trips.

:mod:`sigueme.bus.live` is the live bus: trip updates published once, delivered to
every subscription that wants them, in process or across workers through Redis.
"""

from sigueme.bus.live import (
    QUEUE_SIZE,
    TRIPS_CHANNEL,
    LiveBus,
    LiveMetrics,
    LocalLiveBus,
    RedisLiveBus,
    SubscriberTooSlow,
    Subscription,
    Update,
    trip_channel,
)

__all__ = [
    "QUEUE_SIZE",
    "TRIPS_CHANNEL",
    "LiveBus",
    "LiveMetrics",
    "LocalLiveBus",
    "RedisLiveBus",
    "SubscriberTooSlow",
    "Subscription",
    "Update",
    "trip_channel",
]
