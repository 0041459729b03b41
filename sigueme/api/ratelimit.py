"""Token-bucket rate limits: one bucket (:class:`TokenBucket`, the websockets' limits
per connection), or one per key in this process (:class:`RateLimiter`).

The keyed limiter is used for tracker-app devices: a phone reports every few seconds,
and after a spell offline sends what it buffered in a quick run; a device that keeps
sending faster than that is refused (429, with when to come back) before its fixes
reach the monitor. With several worker processes each keeps its own buckets, so the
effective limit is at most the number of workers times this one: a bound against
floods, not an exact quota.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst
        self.stamp = self.clock()

    def take(self, n: float = 1.0) -> float:
        """Take ``n`` tokens: 0.0 if they were there, else the seconds until they will
        be (and nothing is taken)."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


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
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def take(self, key: Hashable, cost: float = 1.0) -> float:
        """Take ``cost`` tokens from ``key``'s bucket: ``0.0`` when granted, otherwise
        the seconds to wait until they would be (and nothing is taken). A cost above
        ``burst`` counts as ``burst`` (a large batch needs a full bucket, not more)."""
        # A new bucket starts full, as a dropped one does.
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self._clock)
        wait = bucket.take(min(max(cost, 0.0), self.burst))
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait: float) -> str:
        """``wait`` seconds as a ``Retry-After`` header value (whole seconds, at least 1)."""
        return str(max(1, math.ceil(wait)))
