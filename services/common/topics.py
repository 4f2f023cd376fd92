"""The project's topics and their configs (design.md), created idempotently, and
existing ones checked against what they should be.

Replication follows the cluster: `KAFKA_REPLICATION_FACTOR` (default min(3, brokers))
and `min.insync.replicas` (`KAFKA_MIN_INSYNC_REPLICAS`, default 2 from replication 3,
else 1), so a single-node broker works as it is and three brokers survive one lost.
Retention of each delete-policy topic is a setting (`KAFKA_<TOPIC>_RETENTION_MS`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at run time, missing from the stubs' __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from services.common.errors import ConfigError, RetriableError
from services.common.kafka import make_admin
from services.common.settings import DAY_MS, KafkaSettings
from services.product import FINGERPRINTS_TOPIC, RAW_TOPIC

log = logging.getLogger(__name__)

RAW = RAW_TOPIC
CANONICAL = "products.canonical.v1"
DLQ = "products.dlq.v1"
STATE = "sync.state.v1"
COMMANDS = "sync.commands.v1"
DLQ_REDRIVEN = "products.dlq.redriven.v1"  # markers of redriven dead letters
# The extractor's fingerprints, written in the same transactions as the rows, read back
# at start-up.
FINGERPRINTS = FINGERPRINTS_TOPIC
AUDIT = "ops.audit.v1"  # who did what (console or CLI), kept a year
# The tenants as last applied (`siesa-sync tenants apply`), keyed by tenant id, each on
# the partition `tenant_feed.partition_of` gives it: the extractors' group spreads
# tenants by these partitions (services/common/tenant_feed.py).
TENANTS = "sync.tenants.v1"
# The target's id of each product, keyed <tenant>/<sku> like the canonical topic (so, with
# the same partition count, a canonical partition's ids are on the same partition here).
TARGET_IDS = "loader.target-ids.v1"

# Each consuming stage's input: the only topics replay and redrive ever write to.
INPUTS = {"transform": RAW, "load": CANONICAL}

COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


SPECS = (
    TopicSpec(RAW, {"cleanup.policy": "delete"}),
    TopicSpec(CANONICAL, {"cleanup.policy": "delete"}),
    TopicSpec(DLQ, {"cleanup.policy": "delete"}),
    TopicSpec(STATE, {**COMPACTED, "segment.ms": str(3600 * 1000)}),
    TopicSpec(COMMANDS, {"cleanup.policy": "delete"}),
    TopicSpec(DLQ_REDRIVEN, COMPACTED),
    TopicSpec(FINGERPRINTS, {**COMPACTED, "segment.ms": str(3600 * 1000)}),
    TopicSpec(AUDIT, {"cleanup.policy": "delete", "retention.ms": str(365 * DAY_MS)}),
    TopicSpec(TARGET_IDS, {**COMPACTED, "segment.ms": str(3600 * 1000)}),
    TopicSpec(TENANTS, COMPACTED),
)


def layout(kafka: KafkaSettings, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `brokers`."""
    replicas = kafka.replication_factor or min(3, brokers)
    min_isr = kafka.min_insync_replicas or (2 if replicas >= 3 else 1)
    if replicas > brokers:
        raise ConfigError(
            f"setting KAFKA_REPLICATION_FACTOR: {replicas}, but the cluster has {brokers} "
            f"broker{'s' if brokers > 1 else ''}"
        )
    if min_isr > replicas:
        raise ConfigError(
            f"setting KAFKA_MIN_INSYNC_REPLICAS: {min_isr} is more than the replication "
            f"factor ({replicas}): no write could ever succeed"
        )
    return replicas, min_isr


def configs(kafka: KafkaSettings, min_isr: int) -> dict[str, dict[str, str]]:
    """Every topic's config (full name -> config), retention from the settings."""
    retention = {
        RAW: kafka.raw_retention_ms,
        CANONICAL: kafka.canonical_retention_ms,
        DLQ: kafka.dlq_retention_ms,
        COMMANDS: kafka.commands_retention_ms,
    }
    wanted = {}
    for spec in SPECS:
        config = {**spec.config, "min.insync.replicas": str(min_isr)}
        if spec.name in retention:
            config["retention.ms"] = str(retention[spec.name])
        wanted[kafka.topic(spec.name)] = config
    return wanted


def create_topics(
    kafka: KafkaSettings, timeout: float = 30.0, *, alter: bool = False
) -> dict[str, str]:
    """Create every topic that is missing and check those that exist: returns
    {topic: "created" | "exists" | "differs: ..." | "altered: ..."}. With `alter`,
    configs that differ are set to what they should be (partitions and replication
    are only reported: changing them moves data, a person's decision)."""
    admin = make_admin(kafka)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise RetriableError(f"cannot reach the cluster: {exc.args[0].str()}") from exc
    replicas, min_isr = layout(kafka, len(metadata.brokers))
    wanted = configs(kafka, min_isr)
    outcome: dict[str, str] = {}
    missing = [name for name in wanted if name not in metadata.topics]
    new = [NewTopic(n, kafka.partitions, replicas, config=wanted[n]) for n in missing]
    for name, future in (admin.create_topics(new, request_timeout=timeout) if new else {}).items():
        try:
            future.result(timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RetriableError(f"could not create topic {name}: {error.str()}") from exc
            outcome[name] = "exists"  # made meanwhile by someone else
    existing = [name for name in wanted if name not in missing]
    found = _configs(admin, existing, timeout)
    for name in existing:
        partitions = metadata.topics[name].partitions
        shape = []
        if len(partitions) != kafka.partitions:
            shape.append(f"{len(partitions)} partitions (settings: {kafka.partitions})")
        replication = min(len(p.replicas) for p in partitions.values())
        if replication != replicas:
            shape.append(f"replication factor {replication} (settings: {replicas})")
        drift = {k: v for k, v in wanted[name].items() if found[name].get(k) != v}
        said = [f"{k} is {found[name].get(k)} (settings: {v})" for k, v in drift.items()]
        if alter and drift:
            _alter(admin, name, drift, timeout)
            outcome[name] = "altered: " + "; ".join(said + shape)
        elif said or shape:
            outcome[name] = "differs: " + "; ".join(said + shape)
        else:
            outcome[name] = "exists"
    for name in wanted:
        log.info("topic %s %s", name, outcome[name])
    return {name: outcome[name] for name in wanted}


def _configs(admin: AdminClient, names: list[str], timeout: float) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource("topic", name) for name in names]
    found = {}
    for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
        try:
            entries = future.result(timeout)
        except KafkaException as exc:
            raise RetriableError(
                f"cannot read the configs of {resource.name}: {exc.args[0].str()}"
            ) from exc
        found[resource.name] = {k: str(e.value) for k, e in entries.items()}
    return found


def _alter(admin: AdminClient, name: str, config: dict[str, str], timeout: float) -> None:
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in config.items()
    ]
    resource = ConfigResource("topic", name, incremental_configs=entries)
    for future in admin.incremental_alter_configs([resource], request_timeout=timeout).values():
        try:
            future.result(timeout)
        except KafkaException as exc:
            raise RetriableError(f"cannot alter {name}: {exc.args[0].str()}") from exc
