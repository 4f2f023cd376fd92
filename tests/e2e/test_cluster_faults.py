"""A three-broker KRaft cluster: `kill -9` of the broker leading the most partitions in
the middle of a 10,000-item flow (20,000 with `SIESA_FULL_SIZE=1`), restarted 20 s
later. Topics are replicated three times with min.insync.replicas 2 and every producer
uses acks=all with idempotence, so the target ends holding exactly the source, nothing
is dead-lettered and no service exits. Run with `-s` to see when the fault hit and how
long the target took to settle.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from devtools import procs
from devtools.cluster import LocalCluster
from devtools.stack import Stack
from services.common import topics
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

DOWN_S = 20.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """Three brokers of this test alone, on free ports."""
    home = tmp_path / "cluster"
    cluster = LocalCluster(ports=[procs.free_port() for _ in range(3)], home=home, run_dir=home)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_kill_9_of_the_leading_broker_mid_flow_loses_and_duplicates_nothing(
    cluster: LocalCluster, stack: Stack
) -> None:
    # cluster first: torn down after the stack, so the services stop on a live cluster.
    stack.bootstrap = cluster.bootstrap
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
    stack.seed(KONG_COMPANY, TOTAL // 2, seed=71)
    stack.seed(WMS_COMPANY, TOTAL // 2, seed=72)
    stack.create_topics()
    names = [stack.topic_prefix + spec.name for spec in topics.SPECS]
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    metadata = admin.list_topics(timeout=30)
    assert {len(p.replicas) for n in names for p in metadata.topics[n].partitions.values()} == {3}
    configs = admin.describe_configs([ConfigResource("topic", n) for n in names])
    assert {f.result(30)["min.insync.replicas"].value for f in configs.values()} == {"2"}
    flow = Flow(stack, {"kong": KONG_COMPANY, "wms": WMS_COMPANY})
    stack.start_services()
    flow.note("services started")

    flow.wait_held(TOTAL // 4, timeout=SETTLE_TIMEOUT_S, check=stack.check_alive)
    victim = cluster.leader_of_most(names)
    node = cluster.node(victim)
    assert node.process is not None
    node.process.kill()
    flow.note(f"kill -9 broker {victim} (leading the most partitions)")
    time.sleep(DOWN_S)  # the outage itself: its length is the point
    node.start(keep_data=True)
    restarted = time.monotonic()
    flow.note(f"broker {victim} back after {DOWN_S:.0f}s")

    problems = flow.wait_exact(SETTLE_TIMEOUT_S, check=stack.check_alive)
    flow.note(f"target == source {time.monotonic() - restarted:.1f}s after the broker came back")
    flow.note(f"total {time.monotonic() - flow.started:.1f}s from the services' start")

    assert not problems, f"{len(problems)} differences, first: {problems[:10]}"
    assert dlq_of(stack) == []
    stack.check_alive()  # no service exited
