"""Loader throughput against the Kong simulator, each figure against a raw httpx loop
making the same calls at the same concurrency, in the same run:

1. 20 ms simulator latency, no rate limit: loader products/s vs the raw loop's, the
   best of three alternating rounds each (one round swings by half on a busy machine).
2. The simulator limited to 100 requests/s (429 + Retry-After), the tenant's rate limit
   set to 100/s: requests/s answered, and the share answered 429, vs the raw loop
   (which waits out each 429's Retry-After and tries again).
3. Calls per product, counted by the simulator, for 20,000 new products and for 20,000
   updates of them after a loader restart (ids read back from loader.target-ids.v1),
   against the floor of one call per product.

The loader makes one call per product it never wrote (a create), so the raw loop does
too: one POST per product (before, both looked each product up first).

The loader runs as a real process on the real broker, fed CanonicalProducts directly.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from devtools import procs
from devtools.bench import Figure, bench_stack
from devtools.canonical import canonical, feed
from devtools.stack import Stack
from services.common.settings import KafkaSettings

log = logging.getLogger("bench.loader")

PRODUCTS = 2_000
ROUNDS = 3  # of the unlimited run: the best time of each side is compared
LIMITED_PRODUCTS = 1_000
COUNTED_PRODUCTS = 20_000
CONCURRENCY = 8
LATENCY_MS = 20
LIMIT_RPS = 100
SETTINGS = {"type_id": 1, "customer_id": 100}


def _wait_skus(stack: Stack, want: int, timeout: float = 300) -> None:
    def enough() -> bool:
        stack.check_alive()
        return int(stack.sim_stats(stack.kong_url)["skus"]) >= want

    procs.wait_until(enough, timeout=timeout, interval=0.1, what=f"Kong holding {want} SKUs")


def _loader_run(stack: Stack, prefix: str, count: int) -> float:
    """Feed `count` products to a running loader; seconds until Kong holds them all."""
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    held = int(stack.sim_stats(stack.kong_url)["skus"])
    tenant = stack.tenants[0]["id"]
    products = [canonical(tenant, f"{prefix}-{i:05d}", "BENCH") for i in range(count)]
    started = time.monotonic()
    feed(kafka, products)
    _wait_skus(stack, held + count)
    return time.monotonic() - started


def _raw_loop(stack: Stack, prefix: str, count: int) -> tuple[float, int]:
    """The same calls as the loader's Kong adapter for new products (log in; one POST per
    product), from CONCURRENCY threads on one httpx client; a 429 waits out its
    Retry-After. Returns (seconds, 429s met)."""
    creds = stack.credentials
    throttled = 0
    lock = threading.Lock()
    with httpx.Client(
        base_url=stack.kong_url,
        timeout=30,
        limits=httpx.Limits(max_connections=CONCURRENCY * 2),
    ) as client:
        token = client.post(
            "/auth/token/login/",
            json={"username": creds.kong_user, "password": creds.kong_password},
        ).json()["auth_token"]
        headers = {"Authorization": f"Token {token}"}

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            nonlocal throttled
            while True:
                response = client.request(method, path, headers=headers, **kwargs)
                if response.status_code != 429:
                    return response
                with lock:
                    throttled += 1
                time.sleep(float(response.headers.get("Retry-After", "1")))

        def upsert(i: int) -> None:
            sku = f"{prefix}-{i:05d}"
            body = {"external_id": sku, "name": f"BENCH {sku}", **SETTINGS, "is_active": True}
            call("POST", "/inventory/skus/", json=body).raise_for_status()

        started = time.monotonic()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(upsert, range(count)))
        return time.monotonic() - started, throttled


def _stack(bootstrap: str, workdir: Path, name: str, **target: Any) -> Stack:
    stack = bench_stack(bootstrap, workdir / name)
    stack.tenants = [
        stack.kong_tenant(name, 1, concurrency=CONCURRENCY, settings=SETTINGS, **target)
    ]
    return stack


def _start(stack: Stack, **faults: Any) -> None:
    stack.start_simulators()
    stack.set_faults(stack.kong_url, **faults)
    stack.create_topics()
    stack.start_loader(max_in_flight=str(CONCURRENCY * 2))
    _loader_run(stack, "warm", 1)  # the loader has joined its group and logged in


def _unlimited(bootstrap: str, workdir: Path) -> list[Figure]:
    stack = _stack(bootstrap, workdir, "fast")
    try:
        _start(stack, latency_ms=LATENCY_MS)
        raws, loaders = [], []
        for n in range(ROUNDS):  # alternating, so a burst of load elsewhere hits both
            raws.append(_raw_loop(stack, f"raw{n}", PRODUCTS)[0])
            loaders.append(_loader_run(stack, f"fast{n}", PRODUCTS))
    finally:
        stack.stop_all()
    raw_s, loader_s = min(raws), min(loaders)
    log.info(
        "unlimited, %d products a round: loader %s s, raw loop %s s; the best of each kept",
        PRODUCTS,
        ", ".join(f"{t:.1f}" for t in loaders),
        ", ".join(f"{t:.1f}" for t in raws),
    )
    return [
        Figure(
            f"loader products/s (Kong sim {LATENCY_MS} ms, concurrency {CONCURRENCY})",
            PRODUCTS / loader_s,
            "products/s",
            "raw httpx loop, same calls and concurrency",
            PRODUCTS / raw_s,
        )
    ]


def _limited(bootstrap: str, workdir: Path) -> list[Figure]:
    stack = _stack(bootstrap, workdir, "limited", rate_limit_rps=LIMIT_RPS)
    try:
        _start(stack, latency_ms=LATENCY_MS, rate_limit_rps=LIMIT_RPS)
        raw_s, raw_429 = _raw_loop(stack, "raw", LIMITED_PRODUCTS)
        before = stack.sim_stats(stack.kong_url)
        loader_s = _loader_run(stack, "limited", LIMITED_PRODUCTS)
        after = stack.sim_stats(stack.kong_url)
    finally:
        stack.stop_all()
    total = sum(r["count"] for r in after["requests"]) - sum(r["count"] for r in before["requests"])
    loader_429 = after["served_429"] - before["served_429"]
    raw_total = LIMITED_PRODUCTS + raw_429
    log.info(
        "limited: loader %d requests (%d 429) in %.1fs; raw %d requests (%d 429) in %.1fs",
        total,
        loader_429,
        loader_s,
        raw_total,
        raw_429,
        raw_s,
    )
    return [
        Figure(
            f"loader requests/s answered (Kong sim limited to {LIMIT_RPS}/s)",
            (total - loader_429) / loader_s,
            "requests/s",
            "raw httpx loop honouring Retry-After, same calls and concurrency",
            (raw_total - raw_429) / raw_s,
        ),
        Figure(
            f"loader share of requests answered 429 (limit {LIMIT_RPS}/s)",
            100.0 * loader_429 / total,
            "%",
            "raw httpx loop honouring Retry-After",
            100.0 * raw_429 / raw_total,
        ),
    ]


def _requests(stack: Stack) -> dict[tuple[str, int], int]:
    """Requests served by the Kong simulator so far, by (method, status)."""
    served: dict[tuple[str, int], int] = {}
    for r in stack.sim_stats(stack.kong_url)["requests"]:
        served[r["method"], r["status"]] = served.get((r["method"], r["status"]), 0) + r["count"]
    return served


def _counted_run(stack: Stack, version: str) -> float:
    """Feed COUNTED_PRODUCTS versions to the running loader; wait until each is written
    (created or updated); calls per product, every request the simulator served."""
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    tenant = stack.tenants[0]["id"]
    before = _requests(stack)
    feed(
        kafka,
        [canonical(tenant, f"C-{i:05d}", f"{version} {i}") for i in range(COUNTED_PRODUCTS)],
    )

    def written() -> bool:
        stack.check_alive()
        now = _requests(stack)
        done = sum(now.get(k, 0) - before.get(k, 0) for k in (("POST", 201), ("PATCH", 200)))
        return done >= COUNTED_PRODUCTS

    procs.wait_until(written, timeout=600, interval=0.5, what=f"{version}: products written")
    names = {s["external_id"]: s["name"] for s in stack.kong_skus()}
    wrong = [i for i in range(COUNTED_PRODUCTS) if names.get(f"C-{i:05d}") != f"{version} {i}"]
    if wrong:
        raise RuntimeError(f"{version}: {len(wrong)} products not as sent, e.g. C-{wrong[0]:05d}")
    after = _requests(stack)
    return sum(after.values()) - sum(before.values())


def _calls(bootstrap: str, workdir: Path) -> list[Figure]:
    stack = _stack(bootstrap, workdir, "calls")
    try:
        stack.start_simulators()
        stack.create_topics()
        stack.start_loader(max_in_flight=str(CONCURRENCY * 2), instance_id="bench")
        new = _counted_run(stack, "NEW")
        stack.stop("loader")
        stack.start_loader(max_in_flight=str(CONCURRENCY * 2), instance_id="bench")
        updated = _counted_run(stack, "UPDATED")
    finally:
        stack.stop_all()
    log.info("calls: %d for %d new products, %d for their updates", new, COUNTED_PRODUCTS, updated)
    floor = "one call per product"
    return [
        Figure("loader_calls_per_new_product", new / COUNTED_PRODUCTS, "calls", floor, 1.0),
        Figure(
            "loader_calls_per_update_after_restart",
            updated / COUNTED_PRODUCTS,
            "calls",
            floor,
            1.0,
        ),
    ]


def run(bootstrap: str, workdir: Path) -> list[Figure]:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no log line per call in the loop
    return (
        _unlimited(bootstrap, workdir) + _limited(bootstrap, workdir) + _calls(bootstrap, workdir)
    )
