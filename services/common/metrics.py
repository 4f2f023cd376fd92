"""The Prometheus metrics every service exports on `/metrics` (see health.py).

Defined once here so names and labels stay alike across services. Labels: ``stage``
is extract | transform | load; ``tenant`` is a tenant id; never a secret.
"""

from __future__ import annotations

import time

from confluent_kafka import Message
from prometheus_client import Counter, Gauge, Histogram

from services.common.records import header_value
from services.product import METRIC_NAMESPACE

RECORDS = Counter(
    f"{METRIC_NAMESPACE}_records",
    "Records by stage, tenant and outcome (in, out, failed, dead_lettered).",
    ["stage", "tenant", "outcome"],
)
CONSUMER_LAG = Gauge(
    f"{METRIC_NAMESPACE}_consumer_lag",
    "Records between the consumer's position and the partition's end.",
    ["stage", "topic", "partition"],
)
BATCH_SECONDS = Histogram(
    f"{METRIC_NAMESPACE}_batch_seconds",
    "Time to process one consumed batch, outputs and commit included.",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TARGET_CALLS = Counter(
    f"{METRIC_NAMESPACE}_target_calls",
    "HTTP calls to a tenant's target (or to a source) by status; 'error' for transport errors.",
    ["tenant", "target", "status"],
)
BREAKER_STATE = Gauge(
    f"{METRIC_NAMESPACE}_breaker_state",
    "A tenant target's circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["tenant", "target"],
)
POLL_SECONDS = Histogram(
    f"{METRIC_NAMESPACE}_poll_seconds",
    "Time of one extractor poll of a tenant (a filter query or a full scan).",
    ["tenant", "mode"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
TENANT_STATUS = Gauge(
    f"{METRIC_NAMESPACE}_tenant_failing",
    "1 while a tenant's sync is failed or degraded, else 0.",
    ["tenant", "stage"],
)

FRESHNESS = Histogram(
    f"{METRIC_NAMESPACE}_freshness_seconds",
    "From a change seen by the extractor to its confirmation by the tenant's target.",
    ["tenant"],
    buckets=(0.5, 1, 2, 4, 6, 8, 10, 15, 30, 60, 120, 300, 900, 3600),
)
ASSIGNED_PARTITIONS = Gauge(
    f"{METRIC_NAMESPACE}_assigned_partitions",
    "Partitions of its input topics this consumer holds now.",
    ["stage"],
)
CONSUMER_EVICTIONS = Counter(
    f"{METRIC_NAMESPACE}_consumer_evictions",
    "Times the consumer lost its partitions without a rebalance handing them over "
    "(session timed out, max.poll.interval.ms passed): the group went on without it.",
    ["stage"],
)

# The header a record carries from the extractor on: when its change was seen (epoch ms).
EXTRACTED_AT_HEADER = "extracted_at"

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def count_records(stage: str, tenant: str | None, outcome: str, n: int = 1) -> None:
    if n:
        RECORDS.labels(stage=stage, tenant=tenant or "unknown", outcome=outcome).inc(n)


def observe_freshness(msg: Message, tenant: str, now: float | None = None) -> None:
    """A record confirmed by its target: the seconds since the extractor saw its change
    (its ``extracted_at`` header). A replayed or redriven record is an old change sent
    again on purpose, and one without the header predates it: neither is observed."""
    if header_value(msg, "replay") is not None or header_value(msg, "redriven.from"):
        return
    seen = header_value(msg, EXTRACTED_AT_HEADER)
    try:
        seen_s = int(seen or "") / 1000
    except ValueError:
        return
    elapsed = (time.time() if now is None else now) - seen_s
    FRESHNESS.labels(tenant=tenant).observe(max(0.0, elapsed))
