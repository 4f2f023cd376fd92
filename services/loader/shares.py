"""Each loader's share of a tenant's limits, so that the limits hold for the whole group.

A tenant's `rate_limit_rps` and `concurrency` are the group's, not each loader's. No
coordinator is needed: Kafka already divides the work. The tenant's records are spread
over the canonical topic's partitions by key (`<tenant>/<sku>`), and the group assigns
each partition to one loader, so a loader takes of each limit the share of the
partitions it holds (assigned / total), updated at every assignment and revocation:

- rate: `rate_limit_rps * held / total`. The shares of all loaders add up to the limit
  exactly (cooperative rebalancing revokes a partition before it is assigned again, so
  they never add up to more). Under a backlog on every partition the group sends the
  limit; when some loaders have nothing of the tenant to write (a skew of keys, a
  backlog on some partitions only) the group stays below it, never above.
- concurrency: the tenant's `concurrency` slots are dealt over the partitions (each gets
  `c // total`, and `c % total` of them, chosen by the tenant so that not every tenant
  favours the same partitions, one more); a loader takes the slots of its partitions.
  The shares add up to `c` exactly when `c` is at least the partition count. Below it,
  some partitions carry no slot, and a loader holding only such partitions still takes
  1 (else it could write nothing): the group may then have `c` plus one call per such
  loader in flight (at most `c + loaders - 1`, and never more than the partition count;
  e.g. c=2 over 6 partitions, 3 loaders of 2 partitions each: up to 4). That is where
  the concurrency cannot hold within 10 %: small `c`, more than one loader.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Iterable

from services.common.ratelimit import RateLimiter


def slots(tenant: str, concurrency: int, partition: int, total: int) -> int:
    """Partition `partition`'s slots of `tenant`'s `concurrency` (they add up to it)."""
    base, extra = divmod(concurrency, total)
    start = zlib.crc32(tenant.encode()) % total
    return base + (1 if (partition - start) % total < extra else 0)


def concurrency_share(tenant: str, concurrency: int, held: Iterable[int], total: int) -> int:
    """The calls `tenant` may have in flight in a loader holding partitions `held` of
    `total` (at least 1)."""
    return max(1, sum(slots(tenant, concurrency, p, total) for p in set(held)))


def limiter_for(rate: float) -> RateLimiter:
    """A strict limiter of `rate` calls a second that keeps its fraction (33.3/s is 33
    calls in 0.99 s, not 33 in 1 s): at most `max(1, floor(rate))` calls per window."""
    limit = max(1, math.floor(rate))
    return RateLimiter(limit, limit / rate)


class GroupRate:
    """A tenant's `rate_limit_rps`, of which this loader takes `share` (0-1]. Handed to
    the tenant's target session as its limiter."""

    def __init__(self, rate: float, share: float = 1.0) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self.share = 1.0
        self._limiter = limiter_for(rate)
        self.reshare(share)

    @property
    def rps(self) -> float:
        """The calls a second this loader may send now."""
        return self.rate * self.share

    def reshare(self, share: float) -> None:
        """Take `share` (0-1] of the rate from now on."""
        if not 0 < share <= 1:
            raise ValueError(f"a share of a rate limit is in (0, 1], not {share}")
        with self._lock:
            if share != self.share:
                self.share = share
                # A new window: for one window after a change the old one's calls are
                # not counted (at most one window's worth early, once per rebalance).
                self._limiter = limiter_for(self.rate * share)

    def acquire(self) -> float:
        with self._lock:
            limiter = self._limiter
        return limiter.acquire()
