"""Freshness: seconds from a change in Siesa to the target storing it, under a steady
stream of edits, with a 5 s poll interval.

Two tenants as in the demo: one into Kong (hybrid mode: a day filter each poll), one
into WMS (diff mode: the whole catalogue each poll). Each is seeded and fully synced
first; then EDITS_PER_MIN edits per tenant per minute for MINUTES minutes, each a new
name for an item not edited before. An edit's freshness is the target simulator's
`_stored_at` of that item minus the moment just before the bench sent the edit to the
Siesa simulator (both clocks are this machine's `time.time()`). Run once at SIZES[0]
items per tenant (the figures with goals: p50 <= 6 s, p99 <= 8 s) and once at each
further size (reported, no goal). The baseline of each figure is the poll interval.
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from devtools import procs
from devtools.bench import Figure, bench_stack
from devtools.stack import Stack

log = logging.getLogger("bench.freshness")

SIZES = [int(s) for s in os.environ.get("BENCH_FRESHNESS_SIZES", "5000 50000").split()]
MINUTES = float(os.environ.get("BENCH_FRESHNESS_MINUTES", "5"))
EDITS_PER_MIN = 100
POLL_S = 5.0
KONG_COMPANY, WMS_COMPANY = 101, 102


def _tenants(stack: Stack) -> list[dict[str, Any]]:
    kong = stack.kong_tenant("fresh-kong", KONG_COMPANY, poll_interval_s=POLL_S)
    kong["source"].update(mode="hybrid", change_date_column="f120_fecha_actualizacion")
    wms = stack.wms_tenant("fresh-wms", WMS_COMPANY, poll_interval_s=POLL_S)
    return [kong, wms]


def _held(stack: Stack, tenant: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = stack.held(tenant["target"]["type"])
    return {item["external_id"]: item for item in items}


def _wait_synced(stack: Stack, size: int) -> float:
    started = time.monotonic()

    def synced() -> bool:
        stack.check_alive()
        return all(len(_held(stack, t)) >= size for t in stack.tenants)

    procs.wait_until(synced, timeout=120 + size / 20, interval=1.0, what="the first full sync")
    return time.monotonic() - started


def _edit_stream(stack: Stack, size: int) -> dict[str, dict[str, tuple[str, float]]]:
    """EDITS_PER_MIN edits per tenant per minute, paced evenly, for MINUTES minutes:
    tenant -> external id -> (new name, time.time() just before the edit was sent)."""
    rng = random.Random(size)  # noqa: S311 - a reproducible choice of items, not a secret
    rows = {t["id"]: stack.siesa_items(t["source"]["company"]) for t in stack.tenants}
    for tenant_rows in rows.values():
        rng.shuffle(tenant_rows)
    edits: dict[str, dict[str, tuple[str, float]]] = {t["id"]: {} for t in stack.tenants}
    total = int(MINUTES * EDITS_PER_MIN)
    interval = 60.0 / EDITS_PER_MIN
    next_at = time.monotonic()
    for n in range(total):
        for tenant in stack.tenants:
            row = dict(rows[tenant["id"]][n])
            name = f"FRESHNESS EDIT {n:05d} {row['f120_descripcion'][:20]}".rstrip()
            row["f120_descripcion"] = name
            sent_at = time.time()
            stack.upsert_items(tenant["source"]["company"], [row])
            edits[tenant["id"]][row["f120_referencia"].strip()] = (name, sent_at)
        if n % EDITS_PER_MIN == EDITS_PER_MIN - 1:
            log.info("freshness %d: %d of %d edits per tenant sent", size, n + 1, total)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the load, not waiting
    return edits


def _latencies(
    stack: Stack, edits: dict[str, dict[str, tuple[str, float]]]
) -> dict[str, list[float]]:
    """Wait until every edit is stored; seconds from edit to store, per tenant."""
    found: dict[str, list[float]] = {}

    def all_stored() -> bool:
        stack.check_alive()
        for tenant in stack.tenants:
            held = _held(stack, tenant)
            want = edits[tenant["id"]]
            if any(held[sku]["name"] != name for sku, (name, _) in want.items()):
                return False
            found[tenant["id"]] = [held[sku]["_stored_at"] - at for sku, (_, at) in want.items()]
        return True

    procs.wait_until(all_stored, timeout=300, interval=2.0, what="every edit in its target")
    return found


def _percentile(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def _one_size(bootstrap: str, workdir: Path, size: int) -> list[Figure]:
    stack = bench_stack(bootstrap, workdir / f"size-{size}")
    stack.tenants = _tenants(stack)
    try:
        stack.start_simulators()
        for tenant in stack.tenants:
            stack.seed(tenant["source"]["company"], size, seed=size)
        stack.create_topics()
        stack.start_services()
        took = _wait_synced(stack, size)
        log.info("freshness %d: first sync of 2 x %d items took %.1fs", size, size, took)
        latencies = _latencies(stack, _edit_stream(stack, size))
    finally:
        stack.stop_all()
    figures: list[Figure] = []
    every = [s for values in latencies.values() for s in values]
    for tenant, values in latencies.items():
        log.info(
            "freshness %d, %s: %d edits, p50 %.2fs p95 %.2fs p99 %.2fs max %.2fs",
            size,
            tenant,
            len(values),
            _percentile(values, 50),
            _percentile(values, 95),
            _percentile(values, 99),
            max(values),
        )
    where = f"{size:,} items/tenant, Kong+WMS, {len(every)} edits, poll {POLL_S:g} s"
    for p in (50, 95, 99):
        figures.append(
            Figure(
                f"freshness_p{p} ({where})",
                _percentile(every, p),
                "s",
                "poll interval",
                POLL_S,
            )
        )
    return figures


def run(bootstrap: str, workdir: Path) -> list[Figure]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return [figure for size in SIZES for figure in _one_size(bootstrap, workdir, size)]
