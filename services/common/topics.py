"""The project's topics and their configs (design.md), created idempotently."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]  # exported at run time, missing from the stubs' __all__

from services.common.errors import RetriableError
from services.common.kafka import make_admin
from services.common.settings import KafkaSettings
from services.product import FINGERPRINTS_TOPIC, RAW_TOPIC

log = logging.getLogger(__name__)

DAY_MS = 24 * 3600 * 1000

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
# The target's id of each product, keyed <tenant>/<sku> like the canonical topic (so, with
# the same partition count, a canonical partition's ids are on the same partition here).
TARGET_IDS = "loader.target-ids.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


SPECS = (
    TopicSpec(RAW, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}),
    TopicSpec(CANONICAL, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}),
    TopicSpec(DLQ, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
    TopicSpec(
        STATE,
        {
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": "0.1",
            "segment.ms": str(3600 * 1000),
        },
    ),
    TopicSpec(COMMANDS, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}),
    TopicSpec(DLQ_REDRIVEN, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}),
    TopicSpec(
        FINGERPRINTS,
        {
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": "0.1",
            "segment.ms": str(3600 * 1000),
        },
    ),
    TopicSpec(AUDIT, {"cleanup.policy": "delete", "retention.ms": str(365 * DAY_MS)}),
    TopicSpec(
        TARGET_IDS,
        {
            "cleanup.policy": "compact",
            "min.cleanable.dirty.ratio": "0.1",
            "segment.ms": str(3600 * 1000),
        },
    ),
)


def create_topics(kafka: KafkaSettings, timeout: float = 30.0) -> dict[str, str]:
    """Create every topic that is missing; returns {topic: "created" | "exists"}."""
    admin = make_admin(kafka)
    new = [
        NewTopic(
            kafka.topic(spec.name),
            num_partitions=kafka.partitions,
            replication_factor=kafka.replication_factor,
            config=spec.config,
        )
        for spec in SPECS
    ]
    outcome: dict[str, str] = {}
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RetriableError(f"could not create topic {name}: {error.str()}") from exc
            outcome[name] = "exists"
        log.info("topic %s %s", name, outcome[name])
    return outcome
