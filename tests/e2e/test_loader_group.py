"""A tenant's limits hold for the whole group of loaders (issue 17): three loader
processes on the real broker write one tenant, limited to 100 requests/s and 6 calls at
once, into the real Kong simulator, with a backlog that outlasts the test. Counted on
the simulator's side (its request log, `GET /_admin/requests`), over a window once the
group has settled (all 6 partitions held, every loader holding some and writing, as
their metrics say): 85-105 requests/s; then the same over a window after one loader is
`kill -9`ed and the group has settled again without it. Never more than 6 requests at
once, from the first loader's start to the end (the simulator's peak). Windows of 60 s
(the issue's) with `SIESA_FULL_SIZE=1`, 45 s in make test.

Figures are printed: run with `-s` to see them.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import httpx

from devtools import procs
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from tests.e2e.loading import canonical, dead_letters, feed, wait_for_count

COMPANY = 8030
RATE = 100  # requests/s, for the group
CONCURRENCY = 6  # calls at once, for the group
# The issue's 60 s windows with SIESA_FULL_SIZE=1 (the test then takes about 3 min);
# make test counts over 45 s each (about 2.5 min; 30 s windows let a few slow seconds
# of a loaded machine weigh too much: 86-87 requests/s seen, 93-99 over 60 s).
WINDOW_S = 60.0 if os.environ.get("SIESA_FULL_SIZE") else 45.0
# Kong: one request per new product (and a login per loader), so this outlasts
# 100/s over both windows, the settling and the kill.
BACKLOG = 20_000
LOADERS = ("loader-1", "loader-2", "loader-3")


def metric(port: int, name: str) -> float:
    """The sum of a loader's /metrics samples called `name` (0 before it serves them)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return 0.0
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )


def settled(stack: Stack, ports: dict[str, int]) -> None:
    """Wait until the group has settled: all 6 partitions held, every loader in `ports`
    holding some (their /metrics say), and every one of them writing (its count of
    target calls grew since the last look: a loader just given partitions first reads
    them)."""
    held: dict[str, float] = {}
    calls = dict.fromkeys(ports, -1.0)
    writing: set[str] = set()

    def all_held_and_writing() -> bool:
        nonlocal held, writing
        stack.check_alive()
        held = {
            n: metric(p, 'siesa_sync_assigned_partitions{stage="load"}') for n, p in ports.items()
        }
        now = {n: metric(p, "siesa_sync_target_calls_total") for n, p in ports.items()}
        writing = {n for n in ports if calls[n] >= 0 and now[n] > calls[n]}
        calls.update(now)
        return sum(held.values()) == 6 and all(held.values()) and writing == set(ports)

    procs.wait_until(
        all_held_and_writing,
        timeout=90,
        interval=1.0,
        what=f"the group settled (partitions {held}, writing {sorted(writing)})",
    )


def window(stack: Stack) -> tuple[float, Counter[int]]:
    """Count Kong's API requests over WINDOW_S seconds from now: their rate, and how
    many each second saw."""
    start = time.time()

    def over() -> bool:
        stack.check_alive()
        return time.time() >= start + WINDOW_S

    procs.wait_until(over, timeout=WINDOW_S + 30, interval=0.5, what="the window's end")
    log = httpx.get(f"{stack.kong_url}/_admin/requests", timeout=30).json()
    seconds = Counter(int(r["at"] - start) for r in log if start <= r["at"] < start + WINDOW_S)
    return sum(seconds.values()) / WINDOW_S, seconds


def test_a_tenants_limits_hold_for_three_loaders_and_after_one_is_killed(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [
        stack.kong_tenant("limited", COMPANY, rate_limit_rps=RATE, concurrency=CONCURRENCY)
    ]
    stack.start_simulators()
    began = time.monotonic()
    feed(kafka, [canonical("limited", f"L-{i:05d}") for i in range(BACKLOG)])
    print(f"fed {BACKLOG} in {time.monotonic() - began:.1f}s")
    ports = {name: procs.free_port() for name in LOADERS}
    for n, name in enumerate(LOADERS, 1):
        stack.start_loader(name, INSTANCE_ID=f"group-{n}", HEALTH_PORT=str(ports[name]))
    settled(stack, ports)
    print(f"3 loaders settled {time.monotonic() - began:.0f}s after the feed began")

    three, seconds3 = window(stack)
    stack.kill("loader-2")  # kill -9
    del ports["loader-2"]
    killed_at = time.monotonic()
    settled(stack, ports)  # its partitions moved to the other two (session timeout)
    took = time.monotonic() - killed_at
    two, seconds2 = window(stack)
    stats = stack.sim_stats(stack.kong_url)
    held, peak = int(stats["skus"]), int(stats["peak_concurrency"])
    print(
        f"group limits over {WINDOW_S:.0f}s windows: 3 loaders {three:.1f} requests/s "
        f"(seconds {min(seconds3.values())}-{max(seconds3.values())}); after kill -9 of one "
        f"(settled in {took:.0f}s) 2 "
        f"loaders {two:.1f} requests/s (seconds {min(seconds2.values())}-"
        f"{max(seconds2.values())}); peak {peak} requests at once over the whole run; "
        f"{held}/{BACKLOG} products written; each second of the windows: "
        f"{[seconds3[i] for i in range(int(WINDOW_S))]}, "
        f"{[seconds2[i] for i in range(int(WINDOW_S))]}"
    )

    assert held < BACKLOG  # the backlog lasted: every window ran at the limit, if it could
    assert 85 <= three <= 105
    assert 85 <= two <= 105
    assert peak <= CONCURRENCY  # from the first loader's start, through both windows
    assert dead_letters(kafka) == []
    # Nothing lost: the rest of the backlog lands too (at the limit: not waited for in
    # full here; the kill's nothing-lost case is test_loader.py's).
    wait_for_count(stack, stack.kong_url, "skus", held + 100, timeout=30)
