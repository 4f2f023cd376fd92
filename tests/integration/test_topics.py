"""`siesa-sync topics create` on the real broker: configs per design.md, safe to repeat."""

from __future__ import annotations

from confluent_kafka.admin import ConfigResource

from services.common import topics
from services.common.kafka import make_admin
from services.common.settings import KafkaSettings
from services.common.topics import create_topics


def test_topics_are_created_once_with_their_configs(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)

    first = create_topics(kafka)
    second = create_topics(kafka)

    names = [kafka.topic(spec.name) for spec in topics.SPECS]
    assert first == dict.fromkeys(names, "created")
    assert second == dict.fromkeys(names, "exists")
    admin = make_admin(kafka)
    metadata = admin.list_topics(timeout=10)
    assert all(len(metadata.topics[n].partitions) == 6 for n in names)
    resources = [ConfigResource("topic", n) for n in names]
    configs = {r.name: f.result(10) for r, f in admin.describe_configs(resources).items()}
    policy = {n: configs[n]["cleanup.policy"].value for n in names}
    assert policy[kafka.topic(topics.STATE)] == "compact"
    assert policy[kafka.topic(topics.RAW)] == "delete"
    assert configs[kafka.topic(topics.DLQ)]["retention.ms"].value == str(30 * 24 * 3600 * 1000)
