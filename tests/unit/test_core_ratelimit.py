"""The sliding-window rate limit, on a fake clock."""

from __future__ import annotations

import random

import pytest

from services.common.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_calls_within_the_limit_do_not_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(5, 1.0, clock, clock.sleep)
    assert [limiter.acquire() for _ in range(5)] == [0, 0, 0, 0, 0]
    assert limiter.acquire() == pytest.approx(1.0, abs=0.01)


def test_no_window_ever_holds_more_than_the_limit() -> None:
    clock = Clock()
    limiter = RateLimiter(60, 60.0, clock, clock.sleep)
    rng = random.Random(3)  # noqa: S311 - test data
    times = []
    for _ in range(400):
        clock.sleep(rng.choice([0, 0, 0.01, 0.5, 3]))
        limiter.acquire()
        times.append(clock.now)
    for i, start in enumerate(times):
        in_window = [t for t in times[i:] if t <= start + 60.0]
        assert len(in_window) <= 60


def test_reserve_books_slots_for_concurrent_callers_in_order() -> None:
    clock = Clock()
    limiter = RateLimiter(2, 1.0, clock)
    waits = [limiter.reserve() for _ in range(6)]
    assert waits == pytest.approx([0, 0, 1.001, 1.001, 2.002, 2.002])


def test_per_second_handles_fractional_rates() -> None:
    limiter = RateLimiter.per_second(0.5)
    assert (limiter.limit, limiter.window_s) == (1, 2.0)
    assert RateLimiter.per_second(100).limit == 100


def test_a_senseless_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        RateLimiter(0)
