"""The per-tenant circuit breaker: opens after a run of passing failures, waits the
cool-down or the target's longer Retry-After, lets one probe through, logs transitions."""

from __future__ import annotations

import logging

import pytest

from services.common.errors import RetriableError
from services.loader.breaker import Breaker, BreakerOpen, BreakerState


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_failures_in_a_row_and_probes_after_the_cooldown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = Breaker("acme", failures_to_open=3, cooldown_s=5, clock=clock)
    down = RetriableError("HTTP 503")
    breaker.failed(down)
    breaker.failed(down)
    breaker.succeeded()  # the run is broken: counting starts again
    breaker.failed(down)
    breaker.failed(down)
    assert breaker.state is BreakerState.CLOSED
    with caplog.at_level(logging.INFO):
        breaker.failed(down)

    assert breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        breaker.check()
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.check()  # the probe may go
    with caplog.at_level(logging.INFO):
        breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    transitions = [(r.tenant, r.breaker) for r in caplog.records if hasattr(r, "breaker")]  # type: ignore[attr-defined]
    assert transitions == [("acme", "open"), ("acme", "closed")]
    assert breaker.snapshot()["opened"] == 1


def test_a_failed_probe_opens_it_again_for_the_targets_retry_after() -> None:
    clock = Clock()
    breaker = Breaker("acme", failures_to_open=1, cooldown_s=5, clock=clock)
    breaker.failed(RetriableError("HTTP 503"))
    clock.now += 5

    breaker.failed(RetriableError("HTTP 503", retry_after=20))

    assert breaker.state is BreakerState.OPEN
    clock.now += 19
    assert breaker.state is BreakerState.OPEN
    clock.now += 1
    assert breaker.state is BreakerState.HALF_OPEN


def test_calls_refused_by_the_breaker_itself_do_not_count() -> None:
    breaker = Breaker("acme", failures_to_open=1, cooldown_s=5, clock=Clock())
    breaker.failed(BreakerOpen("paused"))
    assert breaker.state is BreakerState.CLOSED


def test_each_failed_probe_doubles_the_cooldown_up_to_its_cap() -> None:
    clock = Clock()
    breaker = Breaker("acme", failures_to_open=1, cooldown_s=2, clock=clock, max_cooldown_s=10)
    waits = []
    breaker.failed(RetriableError("HTTP 503"))
    for _ in range(5):
        opened_at = clock.now
        while breaker.state is BreakerState.OPEN:
            clock.now += 0.5
        waits.append(clock.now - opened_at)
        breaker.failed(RetriableError("HTTP 503"))  # the probe fails

    assert waits == [2, 4, 8, 10, 10]
    # An answer resets it: the next opening waits the base cool-down again.
    clock.now += 10
    breaker.succeeded()
    breaker.failed(RetriableError("HTTP 503"))
    assert breaker.snapshot()["retry_in_s"] == 2


def test_refused_credentials_open_it_at_once() -> None:
    breaker = Breaker("acme", failures_to_open=5, cooldown_s=5, clock=Clock())
    breaker.failed(RetriableError("HTTP 401 credentials refused"), at_once=True)
    assert breaker.state is BreakerState.OPEN
