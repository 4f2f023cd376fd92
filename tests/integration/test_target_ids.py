"""Target ids on the real broker: what a loader keeps on loader.target-ids.v1 is read back
for exactly the canonical partitions it is given (the same keys land on the same
partition numbers of both topics), tombstones forget, ids of another target instance
are ignored, and a missing topic costs calls, not correctness."""

from __future__ import annotations

from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from devtools.canonical import canonical, feed
from services.common import health, topics
from services.common.kafka import make_admin, make_producer, produce_all
from services.common.scan import reader, scan
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.loader.ids import TargetIds

SERDE = default_serde()
KONG = "kong http://kong.test"


def canonical_partitions(kafka: KafkaSettings) -> dict[str, int]:
    """sku -> the canonical partition its records are on."""
    consumer = reader(kafka)
    try:
        return {
            canonical_sku(msg.key()): msg.partition() or 0
            for msg in scan(consumer, kafka.topic(topics.CANONICAL))
        }
    finally:
        consumer.close()


def canonical_sku(key: bytes | None) -> str:
    return (key or b"").decode().split("/", 1)[1]


def test_ids_come_back_for_the_assigned_partitions_only(kafka: KafkaSettings) -> None:
    skus = [f"S-{i:03d}" for i in range(120)]
    feed(kafka, [canonical("acme", sku) for sku in skus])
    partition_of = canonical_partitions(kafka)
    assert len(set(partition_of.values())) == 6  # spread over every partition
    writer = TargetIds(kafka, SERDE, {"acme": KONG})
    records = [writer.learned("acme", sku, partition_of[sku], f"id-{sku}") for sku in skus]
    records.append(writer.learned("acme", "S-000", partition_of["S-000"], None))  # tombstone
    producer = make_producer(kafka)
    produce_all(producer, [r for r in records if r is not None])
    assert producer.flush(30) == 0

    reader_ids = TargetIds(kafka, SERDE, {"acme": KONG})
    topic = kafka.topic(topics.CANONICAL)
    reader_ids.assigned([TopicPartition(topic, 0), TopicPartition(topic, 1)])

    mine = {sku for sku, p in partition_of.items() if p in (0, 1) and sku != "S-000"}
    assert {sku for sku in skus if reader_ids.known("acme", sku)} == mine
    assert all(reader_ids.known("acme", sku) == f"id-{sku}" for sku in mine)

    reader_ids.revoked([TopicPartition(topic, 1)])
    assert {sku for sku in skus if reader_ids.known("acme", sku)} == {
        sku for sku in mine if partition_of[sku] == 0
    }


def test_an_id_kept_for_another_target_instance_is_not_used(kafka: KafkaSettings) -> None:
    feed(kafka, [canonical("acme", "ONE")])
    partition = canonical_partitions(kafka)["ONE"]
    old = TargetIds(kafka, SERDE, {"acme": "kong http://old-kong.test"})
    producer = make_producer(kafka)
    produce_all(producer, [old.learned("acme", "ONE", partition, "7")])  # type: ignore[list-item]
    assert producer.flush(30) == 0

    now = TargetIds(kafka, SERDE, {"acme": KONG})  # the tenant moved to another Kong
    now.assigned([TopicPartition(kafka.topic(topics.CANONICAL), partition)])

    assert now.known("acme", "ONE") is None
    assert now.ignored == 1


def test_without_the_ids_topic_ids_are_only_kept_in_memory(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    name = kafka.topic(topics.CANONICAL)  # this topic only: created before the ids topic was
    admin = make_admin(kafka)
    for future in admin.create_topics([NewTopic(name, 6, 1)]).values():
        future.result(30)
    ids = TargetIds(kafka, SERDE, {"acme": KONG})

    ids.assigned([TopicPartition(kafka.topic(topics.CANONICAL), 0)])

    assert not ids.persist
    assert ids.learned("acme", "ONE", 0, "7") is None  # nothing to write to
    assert ids.known("acme", "ONE") == "7"
    problems = health.current().problems
    assert any("loader.target-ids.v1 does not exist" in p for p in problems.values())
    health.current().resolve("target-ids")
