"""Helpers of the loader's e2e tests: feed CanonicalProducts straight into the canonical
topic (no extractor or transformer needed), read the DLQ and the sync state, wait for a
target simulator to hold what it should."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from devtools import procs
from devtools.canonical import canonical, feed
from devtools.stack import Stack
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import read_states
from services.ops import dlq

SERDE = default_serde()


def dead_letters(kafka: KafkaSettings) -> list[dict[str, Any]]:
    """Every record on the DLQ: key and headers (decoded)."""
    return [{"key": (d.key or b"").decode(), "headers": d.headers} for d in dlq.dead_letters(kafka)]


def loader_states(kafka: KafkaSettings, tenant: str) -> list[dict[str, Any]]:
    return [
        s
        for s in read_states(kafka, SERDE)
        if s["tenant"] == tenant and s["writer"].startswith("loader-")
    ]


def wait_for_count(
    stack: Stack, url: str, field: str, want: int, timeout: float, what: str = ""
) -> float:
    """Wait until the simulator at `url` holds `want` items (`field` of its stats: `skus`
    or `products`); returns the seconds waited."""
    started = time.monotonic()

    def enough() -> bool:
        stack.check_alive()
        return int(stack.sim_stats(url)[field]) >= want

    procs.wait_until(enough, timeout=timeout, interval=0.25, what=what or f"{want} {field}")
    return time.monotonic() - started


def wait_until_held(
    fetch: Callable[[], list[dict[str, Any]]],
    expected: dict[str, dict[str, Any]],
    stack: Stack,
    timeout: float,
) -> dict[str, dict[str, Any]]:
    """Wait until the target holds every expected field of every expected external id."""
    held: dict[str, dict[str, Any]] = {}

    def arrived() -> bool:
        nonlocal held
        stack.check_alive()
        held = {item["external_id"]: item for item in fetch()}
        return all(
            k in held and all(held[k].get(f) == v for f, v in e.items())
            for k, e in expected.items()
        )

    procs.wait_until(arrived, timeout=timeout, interval=0.5, what=f"{len(expected)} products")
    return held


def requests_by(stats: dict[str, Any], status: int | None = None, route: str = "") -> int:
    return sum(
        r["count"]
        for r in stats["requests"]
        if (status is None or r["status"] == status) and r["route"].startswith(route)
    )


__all__ = [
    "canonical",
    "dead_letters",
    "feed",
    "loader_states",
    "wait_for_count",
    "wait_until_held",
]
