"""Token-bucket rate limits, per key, in this process.

Used for tracker-app devices: a phone reports every few seconds, and after a spell
offline sends what it buffered in a quick run; a device that keeps sending faster than
that is refused (429, with when to come back) before its fixes reach the monitor. With
several worker processes each keeps its own buckets, so the effective limit is at most
the number of workers times this one: a bound against floods, not an exact quota.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class RateLimiter:
    """Buckets of ``burst`` tokens refilled at ``rate`` tokens per second, one per key.

    At most ``max_keys`` buckets are kept; the longest unused are dropped first (a
    dropped bucket starts again full, which only ever errs on the side of letting a
    device through)."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (rate > 0 and burst >= 1 and max_keys >= 1):
            raise ValueError("rate must be positive, burst at least 1, max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket: ``0.0`` when granted, otherwise
        the seconds to wait until they would be (and nothing is taken). A cost above
        ``burst`` counts as ``burst`` (a large batch needs a full bucket, not more)."""
        now = self._clock()
        cost = min(max(cost, 0.0), self.burst)
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= cost:
            tokens -= cost
            wait = 0.0
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        """``wait`` seconds as a ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))
