"""The Prometheus metrics every service exports on `/metrics` (see health.py).

Defined once here so names and labels stay alike across services. Labels: ``stage``
is extract | transform | load; ``tenant`` is a tenant id; never a secret.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}


def count_records(stage: str, tenant: str | None, outcome: str, n: int = 1) -> None:
    if n:
        RECORDS.labels(stage=stage, tenant=tenant or "unknown", outcome=outcome).inc(n)
