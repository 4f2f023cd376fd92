"""Faults in the middle of a 10,000-item flow (20,000 with `SIESA_FULL_SIZE=1`), on real
processes: the broker stopped for 10 s and restarted; five `kill -9` of random services.
After each, the target holds exactly the Siesa catalogue (no item missing, none twice,
every field right), the DLQ holds nothing, and the services that were not killed on
purpose are still running.

Figures (when each fault happened, at what target count; how long until target ==
source after the last fault; total time) are printed: run with `-s` to see them.
`FAULTS_SEED=<n>` replays the kill test's random choices of a failed run.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import procs
from devtools.broker import LocalBroker
from devtools.stack import SERVICES, Stack
from tests.e2e.faults_support import (
    CONCURRENCY,
    KONG_COMPANY,
    POLL_INTERVAL_S,
    SETTLE_TIMEOUT_S,
    TOTAL,
    WMS_COMPANY,
    Flow,
    dlq_of,
)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test alone: restarting the session's would disturb the others."""
    home = tmp_path / "kafka"
    broker = LocalBroker(port=procs.free_port(), home=home, run_dir=home)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def test_broker_restart_mid_flow_loses_and_duplicates_nothing(
    own_broker: LocalBroker, stack: Stack
) -> None:
    # own_broker first: torn down after the stack, so the services stop on a live broker.
    stack.bootstrap = own_broker.bootstrap
    stack.tenants = [
        stack.kong_tenant(
            "acme", KONG_COMPANY, poll_interval_s=POLL_INTERVAL_S, concurrency=CONCURRENCY
        )
    ]
    stack.start_simulators()
    stack.set_faults(stack.kong_url)  # latency 0, no rate limit
    stack.seed(KONG_COMPANY, TOTAL, seed=61)
    stack.create_topics()
    flow = Flow(stack, {"kong": KONG_COMPANY})
    stack.start_services()
    flow.note("services started")

    flow.wait_held(TOTAL // 4, timeout=SETTLE_TIMEOUT_S, check=stack.check_alive)
    flow.note("broker stopping for 10 s")
    own_broker.restart(down_s=10)
    restarted = time.monotonic()
    flow.note("broker back")

    problems = flow.wait_exact(SETTLE_TIMEOUT_S, check=stack.check_alive)
    flow.note(f"target == source {time.monotonic() - restarted:.1f}s after the broker came back")
    flow.note(f"total {time.monotonic() - flow.started:.1f}s from the services' start")

    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"
    assert dlq_of(stack) == []
    stack.check_alive()  # every service rode out the outage


def test_five_random_kills_mid_flow_lose_and_duplicate_nothing(stack: Stack) -> None:
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1_000_000))
    print(f"[faults] FAULTS_SEED={seed}")  # so a failure can be replayed
    rng = random.Random(seed)  # noqa: S311 - reproducible test choices, not crypto
    per_tenant = TOTAL // 2
    stack.tenants = [
        stack.kong_tenant(
            "acme", KONG_COMPANY, poll_interval_s=POLL_INTERVAL_S, concurrency=CONCURRENCY
        ),
        stack.wms_tenant(
            "bodega", WMS_COMPANY, poll_interval_s=POLL_INTERVAL_S, concurrency=CONCURRENCY
        ),
    ]
    stack.start_simulators()
    stack.set_faults(stack.kong_url)
    stack.set_faults(stack.wms_url)
    stack.seed(KONG_COMPANY, per_tenant, seed=62)
    stack.seed(WMS_COMPANY, per_tenant, seed=63)
    stack.create_topics()
    flow = Flow(stack, {"kong": KONG_COMPANY, "wms": WMS_COMPANY})
    stack.start_services()
    flow.note("services started")

    # Five victims, each service at least once; five moments spread over the flow's
    # first 80 %, in order (the target counts at which each kill happens).
    victims = [*SERVICES, *rng.choices(SERVICES, k=5 - len(SERVICES))]
    rng.shuffle(victims)
    moments = sorted(rng.sample(range(TOTAL // 20, TOTAL * 8 // 10), k=len(victims)))
    print(f"[faults] plan: {list(zip(moments, victims, strict=True))}")

    for moment, victim in zip(moments, victims, strict=True):
        flow.wait_held(moment, timeout=SETTLE_TIMEOUT_S, check=stack.check_alive)
        stack.kill(victim)
        flow.note(f"kill -9 {victim}")
        pause = rng.uniform(0.0, 3.0)
        time.sleep(pause)  # the random pause before the restart is the fault's shape
        stack.restart(victim)
        flow.note(f"{victim} restarted after {pause:.1f}s")
    last_fault = time.monotonic()

    problems = flow.wait_exact(SETTLE_TIMEOUT_S, check=stack.check_alive)
    flow.note(f"target == source {time.monotonic() - last_fault:.1f}s after the last kill")
    flow.note(f"total {time.monotonic() - flow.started:.1f}s from the services' start")

    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"
    assert dlq_of(stack) == []
    stack.check_alive()
