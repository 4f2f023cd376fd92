"""A circuit breaker per tenant target: after a run of passing failures the tenant's work
waits (its records stay parked in the loader) instead of hammering a target that is down,
and one record probes the target when the cool-down is over. Each probe that fails
doubles the cool-down, up to `max_cooldown_s`; an answer resets it. A failure that says
the tenant itself is refused (its credentials) opens the breaker at once.

Transitions are logged as JSON lines with `tenant` and `breaker` (the state), and the
state is readable from code (`Breaker.state`, `Breaker.snapshot()`) for metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from services.common.errors import RetriableError

log = logging.getLogger(__name__)

MAX_COOLDOWN_S = 300.0  # the default cap, and the most a target's Retry-After is waited


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused until the cool-down is over
    HALF_OPEN = "half_open"  # the cool-down is over: one record may probe the target


class BreakerOpen(RetriableError):
    """The tenant's breaker is open: the call was not made."""

    error_class = "breaker_open"


class Breaker:
    def __init__(
        self,
        tenant: str,
        failures_to_open: int = 5,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_cooldown_s: float = MAX_COOLDOWN_S,
    ) -> None:
        self.tenant = tenant
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self.max_cooldown_s = max(cooldown_s, max_cooldown_s)
        self._opens_in_row = 0  # opened again by failed probes, since the last answer
        self._clock = clock
        self._lock = threading.Lock()
        self._open = False
        self._failures = 0
        self._retry_at = 0.0
        self.opened_count = 0
        self.last_error: str | None = None

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if not self._open:
            return BreakerState.CLOSED
        return BreakerState.HALF_OPEN if self._clock() >= self._retry_at else BreakerState.OPEN

    def check(self) -> None:
        """Raise BreakerOpen while the breaker refuses calls (open, cool-down not over)."""
        with self._lock:
            if self._state() is BreakerState.OPEN:
                raise BreakerOpen(
                    f"tenant {self.tenant}: target paused by its circuit breaker "
                    f"({self.last_error})",
                    tenant=self.tenant,
                    retry_after=max(0.0, self._retry_at - self._clock()),
                )

    def succeeded(self) -> None:
        with self._lock:
            self._failures = 0
            self._opens_in_row = 0
            if self._open:
                self._open = False
                self._log(BreakerState.CLOSED, "target answers again")

    def failed(self, error: RetriableError, *, at_once: bool = False) -> None:
        """A record failed for a passing reason (after the call's own retries); `at_once`:
        a reason no other record can escape (refused credentials) opens it now."""
        if isinstance(error, BreakerOpen):
            return
        with self._lock:
            self._failures += 1
            self.last_error = error.message
            half_open = self._open and self._clock() >= self._retry_at
            due = at_once or self._failures >= self.failures_to_open
            if half_open or (not self._open and due):
                self._opens_in_row += 1
                grown = self.cooldown_s * 2 ** min(self._opens_in_row - 1, 30)
                cooldown = min(grown, self.max_cooldown_s)
                wait = max(cooldown, min(error.retry_after or 0.0, MAX_COOLDOWN_S))
                self._retry_at = self._clock() + wait
                if not self._open:
                    self.opened_count += 1
                self._open = True
                self._log(BreakerState.OPEN, f"{error.message}; next try in {wait:.1f}s")

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tenant": self.tenant,
                "state": str(self._state()),
                "failures_in_row": self._failures,
                "opened": self.opened_count,
                "opens_in_row": self._opens_in_row,
                "retry_in_s": round(max(0.0, self._retry_at - self._clock()), 3)
                if self._open
                else 0.0,
                "last_error": self.last_error,
            }

    def _log(self, state: BreakerState, why: str) -> None:
        level = logging.WARNING if state is BreakerState.OPEN else logging.INFO
        log.log(
            level,
            "tenant %s: circuit breaker %s: %s",
            self.tenant,
            state,
            why,
            extra={"tenant": self.tenant, "breaker": str(state)},
        )
