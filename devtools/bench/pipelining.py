"""Pipelining and memory: a first full sync of ITEMS items for one tenant into Kong
(simulator latency 0, no rate limit), against each stage alone, in one run.

1. Each stage alone, on its own topics: the extractor alone until its state counts
   every item extracted; then the transformer alone on the filled raw topic until its
   state counts every item transformed; then the loader alone on the filled canonical
   topic until Kong holds every item. Each is timed from its process's start.
2. The whole pipeline on fresh topics and an emptied Kong: all three started at once,
   timed until Kong holds every item.

`pipelining_ratio` = the whole pipeline's wall time / the slowest stage alone (1.0 =
the stages overlap perfectly). `rss_mb_<service>` = each service's peak RSS (the
kernel's high-water mark) in the whole-pipeline run; its baseline is the 200 MB goal.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from devtools import procs
from devtools.bench import Figure, bench_stack
from devtools.stack import SERVICES, Stack
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import read_states

log = logging.getLogger("bench.pipelining")

ITEMS = int(os.environ.get("BENCH_PIPELINING_ITEMS", "100000"))
COMPANY = 7
TENANT = "pipe"
RSS_GOAL_MB = 200.0


def _state_count(stack: Stack, writer: str, field: str) -> int:
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    states = read_states(kafka, default_serde())
    return sum(s[field] for s in states if s["tenant"] == TENANT and s["writer"] == writer)


def _kong_count(stack: Stack) -> int:
    return int(stack.sim_stats(stack.kong_url)["skus"])


def _timed(stack: Stack, names: tuple[str, ...], done: Callable[[], int]) -> float:
    """Start services `names`; seconds until `done()` counts every item."""
    started = time.monotonic()
    stack.start_services(names)
    shown = started

    def finished() -> bool:
        nonlocal shown
        stack.check_alive()
        count = done()
        now = time.monotonic()
        if now - shown >= 10:
            log.info("  %s: %d of %d (%.0fs)", "+".join(names), count, ITEMS, now - started)
            shown = now
        return count >= ITEMS

    procs.wait_until(finished, timeout=120 + ITEMS / 50, interval=0.5, what=f"{names} done")
    return time.monotonic() - started


def _peak_rss(stack: Stack, names: tuple[str, ...]) -> dict[str, float]:
    return {name: procs.memory_mb(stack.processes[name].pid)[1] for name in names}


def _stages_alone(stack: Stack) -> dict[str, float]:
    took: dict[str, float] = {}
    done = {
        "extractor": lambda: _state_count(stack, "extractor", "extracted"),
        "transformer": lambda: _state_count(stack, "transformer-transformer", "transformed"),
        "loader": lambda: _kong_count(stack),
    }
    for name in SERVICES:
        took[name] = _timed(stack, (name,), done[name])
        log.info(
            "%s alone: %d items in %.1fs (peak RSS %.0f MB)",
            name,
            ITEMS,
            took[name],
            _peak_rss(stack, (name,))[name],
        )
        stack.stop(name)
    return took


def run(bootstrap: str, workdir: Path) -> list[Figure]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    stack = bench_stack(bootstrap, workdir)
    stack.tenants = [stack.kong_tenant(TENANT, COMPANY, poll_interval_s=60)]
    try:
        stack.start_simulators()
        stack.seed(COMPANY, ITEMS, seed=3)
        stack.create_topics()
        alone = _stages_alone(stack)
        # The whole pipeline: fresh topics and groups, an empty Kong, the same catalogue.
        stack.topic_prefix = f"bench{uuid.uuid4().hex[:8]}."
        stack.create_topics()
        httpx.post(f"{stack.kong_url}/_admin/reset", timeout=30).raise_for_status()
        total = _timed(stack, SERVICES, lambda: _kong_count(stack))
        peaks = _peak_rss(stack, SERVICES)
    finally:
        stack.stop_all()
    slowest = max(alone, key=lambda name: alone[name])
    log.info(
        "pipeline: %d items in %.1fs; alone: %s; peak RSS %s",
        ITEMS,
        total,
        ", ".join(f"{n} {s:.1f}s" for n, s in alone.items()),
        ", ".join(f"{n} {mb:.0f} MB" for n, mb in peaks.items()),
    )
    figures = [
        Figure(
            f"pipelining_ratio ({ITEMS:,} items into Kong: full sync wall time)",
            total,
            "s",
            f"slowest stage alone ({slowest})",
            alone[slowest],
        )
    ]
    figures += [
        Figure(f"{name} alone ({ITEMS:,} items)", alone[name], "s", "whole pipeline", total)
        for name in SERVICES
    ]
    figures += [
        Figure(f"rss_mb_{name} (peak, {ITEMS:,}-item full sync)", mb, "MB", "goal", RSS_GOAL_MB)
        for name, mb in peaks.items()
    ]
    return figures
