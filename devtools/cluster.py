"""A local KRaft cluster of one or three brokers from the release jars (`make kafka-up`,
the test fixtures): every node is broker and controller, the quorum is static, nodes
share one cluster id and, when secured, one set of certificates and SCRAM users.

`make kafka-up BROKERS=3` listens on 9092, 9094 and 9096 (controllers beside them:
9093, 9095, 9097); `SECURE=1` makes the client listeners SASL_SSL with SCRAM-SHA-512,
creates one user per service and the operator, and applies the pipeline's ACLs
(`siesa-sync acls`) for `KAFKA_TOPIC_PREFIX`.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from devtools import procs
from devtools.broker import HEAP, LocalBroker, new_cluster_id
from devtools.broker_security import ADMIN, BrokerSecurity
from services.common.settings import KafkaSettings
from services.ops import acls

log = logging.getLogger(__name__)

NODE_NAMES = ("kafka-1", "kafka-2", "kafka-3")
NODE_HEAP = os.environ.get("KAFKA_LOCAL_NODE_HEAP", "512m")


@dataclass
class LocalCluster:
    """`len(ports)` nodes; controller ports beside each (`controller_ports`) or free."""

    ports: list[int]
    home: Path
    run_dir: Path
    controller_ports: list[int] = field(default_factory=list)
    security: BrokerSecurity | None = None
    open_ports: list[int] = field(default_factory=list)
    retention_check_ms: int = 60_000
    nodes: list[LocalBroker] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def open_bootstrap(self) -> str:
        return ",".join(node.open_bootstrap for node in self.nodes)

    def start(self, timeout: float = 120.0) -> str:
        size = len(self.ports)
        controllers = self.controller_ports or [procs.free_port() for _ in self.ports]
        voters = ",".join(f"{i + 1}@127.0.0.1:{port}" for i, port in enumerate(controllers))
        cluster_id = new_cluster_id()
        self.nodes = [
            LocalBroker(
                port=port,
                controller_port=controllers[i],
                home=self.home / f"node{i + 1}",
                name=NODE_NAMES[i] if size > 1 else "kafka",
                run_dir=self.run_dir,
                node_id=i + 1,
                voters=voters if size > 1 else "",
                cluster_id=cluster_id,
                cluster_size=size,
                heap=NODE_HEAP if size > 1 else HEAP,
                security=self.security,
                open_port=self.open_ports[i] if self.open_ports else 0,
                retention_check_ms=self.retention_check_ms,
            )
            for i, port in enumerate(self.ports)
        ]
        try:
            # A node answers once the quorum is up, so all are launched (formatted and
            # started, side by side) before any is waited for.
            self._each(lambda node: node.launch())
            self._each(lambda node: node.wait(timeout))
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def stop(self) -> None:
        """Stop every node at once: one by one, the last ones would wait for a quorum
        that is already gone."""
        self._each(lambda node: node.stop())

    def _each(self, action: Callable[[LocalBroker], None]) -> None:
        with ThreadPoolExecutor(max(1, len(self.nodes))) as pool:
            for future in [pool.submit(action, node) for node in self.nodes]:
                future.result()

    def node(self, node_id: int) -> LocalBroker:
        return self.nodes[node_id - 1]

    def leader_of_most(self, topics: list[str]) -> int:
        """The id of the broker leading the most partitions of `topics`."""
        admin = AdminClient(self.nodes[0].admin_config())
        metadata = admin.list_topics(timeout=30)
        leaders = Counter(
            partition.leader
            for name in topics
            for partition in metadata.topics[name].partitions.values()
        )
        return leaders.most_common(1)[0][0]


def up(port: int = 9092, *, secure: bool = False, brokers: int = 1) -> LocalCluster:
    """`make kafka-up`: start the cluster, leave it running, say how to connect."""
    security = BrokerSecurity(procs.RUN_DIR / "kafka-security") if secure else None
    cluster = LocalCluster(
        ports=[port + 2 * i for i in range(brokers)],
        controller_ports=[port + 2 * i + 1 for i in range(brokers)] if brokers > 1 else [],
        home=procs.RUN_DIR / ("kafka" if brokers == 1 else "kafka-cluster"),
        run_dir=procs.RUN_DIR,
        security=security,
    )
    cluster.start()
    pids = ", ".join(str(n.process.pid) for n in cluster.nodes if n.process)
    log.info("Kafka up on %s (pids %s)", cluster.bootstrap, pids)
    if security is None:
        return cluster
    admin = KafkaSettings.model_validate(
        {
            **_settings(security.client_env(ADMIN, cluster.bootstrap)),
            "topic_prefix": os.environ.get("KAFKA_TOPIC_PREFIX", ""),
        }
    )
    created = acls.apply(admin, acls.plan(admin))
    log.info(
        "ACLs: %d created for topic prefix %r (siesa-sync acls lists them)",
        created,
        admin.topic_prefix,
    )
    for user in [ADMIN, *acls.PRINCIPALS.values()]:
        env_file = security.home / f"{user}.env"
        env_file.write_text(
            "".join(f"{k}={v}\n" for k, v in security.client_env(user, cluster.bootstrap).items())
        )
        log.info("  connect as %-22s set -a; . %s; set +a", user, env_file)
    return cluster


def _settings(env: dict[str, str]) -> dict[str, str]:
    """`KAFKA_X` variables as KafkaSettings fields."""
    return {name.removeprefix("KAFKA_").lower(): value for name, value in env.items()}
