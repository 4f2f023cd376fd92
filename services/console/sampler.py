"""What the console takes from the services' /metrics: each tenant's breaker state and
freshness histogram, sampled every ``interval_s`` and kept for an hour.

The topics hold when a change was seen (the RawItem's ``extracted_at``) but not when
its target confirmed it: that moment exists only in the loaders, as the
``freshness_seconds`` histogram. Its buckets are cumulative since each loader started,
so the last hour's p50/p99 are read, as Prometheus' ``histogram_quantile`` does, from
the difference between the newest sample and the oldest one of the hour; until two
samples exist, from the loaders' whole life (and said so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.product import METRIC_NAMESPACE

log = logging.getLogger(__name__)

FRESHNESS = f"{METRIC_NAMESPACE}_freshness_seconds"
BREAKER = f"{METRIC_NAMESPACE}_breaker_state"
BREAKER_NAMES = {0: "closed", 1: "half-open", 2: "open"}

Buckets = dict[float, float]  # upper bound (le) -> cumulative count


@dataclass(frozen=True)
class Sample:
    at: float
    freshness: dict[str, Buckets] = field(default_factory=dict)  # by tenant, summed
    breakers: dict[str, int] = field(default_factory=dict)  # by tenant, worst
    unreachable: tuple[str, ...] = ()


@dataclass(frozen=True)
class Freshness:
    p50: float | None
    p99: float | None
    confirmed: int
    window_s: float | None  # None: since the loaders started


def parse(text: str, into: Sample) -> None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            tenant = s.labels.get("tenant", "")
            if family.name == FRESHNESS and s.name.endswith("_bucket"):
                buckets = into.freshness.setdefault(tenant, {})
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif family.name == BREAKER:
                into.breakers[tenant] = max(into.breakers.get(tenant, 0), int(s.value))


def quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile on cumulative ``buckets`` (linear within one)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower  # past the last finite bound: the best known is that bound
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def difference(newer: Buckets, older: Buckets) -> Buckets:
    """Counts between two samples; a loader restart (a count going down) starts over."""
    delta = {le: newer[le] - older.get(le, 0.0) for le in newer}
    return newer if any(v < 0 for v in delta.values()) else delta


class Sampler:
    def __init__(
        self,
        urls: list[str],
        interval_s: float = 15.0,
        keep_s: float = 3600.0,
        fetch: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.urls = urls
        self.interval_s = interval_s
        self.keep_s = keep_s
        self.fetch = fetch or _fetch
        self.clock = clock
        self.samples: deque[Sample] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> Sample:
        found = Sample(self.clock())
        missing = []
        for url in self.urls:
            try:
                parse(self.fetch(url), found)
            except (httpx.HTTPError, ValueError) as exc:
                missing.append(url)
                log.debug("metrics of %s unreadable: %s", url, exc)
        found = Sample(found.at, found.freshness, found.breakers, tuple(missing))
        with self._lock:
            self.samples.append(found)
            while self.samples and self.samples[0].at < found.at - self.keep_s:
                self.samples.popleft()
        return found

    def start(self) -> Sampler:
        def loop() -> None:
            while not self._stop.wait(self.interval_s):
                self.sample()

        self.sample()
        self._thread = threading.Thread(target=loop, name="metrics-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _window(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def breaker(self, tenant: str) -> str | None:
        window = self._window()
        if not window or tenant not in window[-1].breakers:
            return None
        return BREAKER_NAMES.get(window[-1].breakers[tenant], "unknown")

    def unreachable(self) -> tuple[str, ...]:
        window = self._window()
        return window[-1].unreachable if window else tuple(self.urls)

    def freshness(self, tenant: str) -> Freshness | None:
        window = [s for s in self._window() if tenant in s.freshness]
        if not window:
            return None
        newest = window[-1]
        if len(window) == 1:
            buckets, span = newest.freshness[tenant], None
        else:
            oldest = window[0]
            buckets = difference(newest.freshness[tenant], oldest.freshness[tenant])
            span = newest.at - oldest.at
        return Freshness(
            quantile(0.5, buckets),
            quantile(0.99, buckets),
            int(max(buckets.values(), default=0)),
            span,
        )

    def series(self, tenant: str, step_s: float = 300.0) -> list[tuple[float, Freshness]]:
        """(end time, freshness of the interval) for consecutive intervals of ~step_s."""
        window = [s for s in self._window() if tenant in s.freshness]
        points: list[tuple[float, Freshness]] = []
        if not window:
            return points
        start = window[0]
        for sample in window[1:]:
            if sample.at - start.at < step_s and sample is not window[-1]:
                continue
            buckets = difference(sample.freshness[tenant], start.freshness[tenant])
            points.append(
                (
                    sample.at,
                    Freshness(
                        quantile(0.5, buckets),
                        quantile(0.99, buckets),
                        int(max(buckets.values(), default=0)),
                        sample.at - start.at,
                    ),
                )
            )
            start = sample
        return points


def _fetch(url: str) -> str:
    response = httpx.get(url, timeout=3.0)
    response.raise_for_status()
    return response.text
