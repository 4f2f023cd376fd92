"""A sliding-window rate limit: at most `limit` calls in any `window_s` seconds.

Used for the extractor's per-tenant request budget to its source and the loader's rate
limit per tenant target. A sliding window (not a token bucket) is strict: no window of
``window_s`` seconds, wherever it starts, ever holds more than ``limit`` calls.
`reserve` books a slot and says how long to wait for it, so threads (`acquire`) and
asyncio (``await asyncio.sleep(limiter.reserve())``) share one implementation.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# Slots are spaced a hair over the window, so a window's two ends never both count.
MARGIN_S = 0.001


class RateLimiter:
    def __init__(
        self,
        limit: int,
        window_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque()
        self._lock = threading.Lock()

    @classmethod
    def per_second(cls, rate: float) -> RateLimiter:
        """``rate`` calls a second, counted over 1 s (fractions over a longer window)."""
        if rate >= 1:
            return cls(int(rate), 1.0)
        return cls(1, 1.0 / rate)

    def reserve(self) -> float:
        """Book the next free slot; the seconds to wait before using it (0 = now)."""
        with self._lock:
            now = self._clock()
            while self._slots and self._slots[0] <= now - self.window_s - MARGIN_S:
                self._slots.popleft()
            slot = now
            if len(self._slots) >= self.limit:
                slot = max(now, self._slots[-self.limit] + self.window_s + MARGIN_S)
            self._slots.append(slot)
            return slot - now

    def acquire(self) -> float:
        """Wait for a slot (blocking this thread); returns the seconds waited."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
