"""The per-key token buckets behind the tracker apps' rate limit (a fake clock)."""

from __future__ import annotations

import pytest

from sigueme.api.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_refill_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)  # one token back in half a second
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 100  # a long pause refills to the burst, no more
    assert [limiter.take("a") for _ in range(4)][-1] > 0


def test_keys_are_independent_and_a_refusal_takes_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    assert limiter.take("a") == 0.0
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("a") == pytest.approx(1.0)  # the refusal did not dig deeper
    assert limiter.take("b") == 0.0


def test_a_batch_costs_its_size_up_to_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=10, clock=clock)
    assert limiter.take("a", 4) == 0.0
    assert limiter.take("a", 7) == pytest.approx(1.0)
    clock.now += 4
    assert limiter.take("a", 500) == 0.0  # a full bucket lets any batch through


def test_the_number_of_buckets_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=2, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.take(key) == 0.0
    # "a", the longest unused, was dropped and starts again full.
    assert limiter.take("a") == 0.0
    assert limiter.take("c") > 0


@pytest.mark.parametrize(("wait", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_retry_after(wait: float, header: str) -> None:
    assert RateLimiter.retry_after(wait) == header


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (1, 0.5), (-1, 5)])
def test_nonsense_limits_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(rate, burst)
