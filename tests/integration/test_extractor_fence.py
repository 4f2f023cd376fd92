"""A zombie extractor instance can't commit (services/extractor/commit.py, KIP-447): its
transactions carry its group membership, and once the group has handed its partitions
to another member, the broker refuses them and the rows in them never become visible."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from devtools import procs
from services.common import topics
from services.common.errors import RetriableError
from services.common.kafka import make_consumer, make_producer
from services.common.records import OutRecord
from services.common.settings import KafkaSettings
from services.extractor.commit import Transactions
from tests.e2e.extractor_support import read_topic


class Membership:
    """The fence of a real consumer in the group, as it stands when taken."""

    def __init__(self, consumer: Consumer, topic: str) -> None:
        self._offsets = [TopicPartition(topic, tp.partition, 0) for tp in consumer.assignment()]
        self._metadata = consumer.consumer_group_metadata()

    def offsets(self) -> list[TopicPartition]:
        return self._offsets

    def metadata(self) -> Any:
        return self._metadata

    epoch = 0

    def wait_changed(self, epoch: int, timeout: float) -> bool:
        return False  # the test says when the membership changes


def member(kafka: KafkaSettings, group: str, topic: str) -> Consumer:
    # A member that does not poll for 7 s is put out (max.poll.interval.ms), as one whose
    # process stalls is when its heartbeats stop (session.timeout.ms).
    settings: dict[str, Any] = {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 7000,
    }
    consumer = make_consumer(kafka, group_id=group, **settings)
    consumer.subscribe([topic])
    return consumer


def wait_assigned(consumer: Consumer, partitions: int, timeout: float = 60.0) -> None:
    def assigned() -> bool:
        consumer.poll(0.2)
        return len(consumer.assignment()) == partitions

    procs.wait_until(assigned, timeout=timeout, interval=0.0, what=f"{partitions} partitions")


def close_zombie(consumer: Consumer, timeout: float = 30.0) -> None:
    """Close a member put out of its group, waiting at most `timeout`: librdkafka's
    close of such a member can wait forever on a rebalance it will never be part of (it
    hung a CI run here once); the test's outcome does not depend on it."""
    closing = threading.Thread(target=consumer.close, name="zombie-close", daemon=True)
    closing.start()
    closing.join(timeout)


def row(kafka: KafkaSettings, n: int) -> list[OutRecord]:
    return [OutRecord(kafka.topic(topics.RAW), f"acme/K{n}".encode(), f"row {n}".encode())]


def test_a_member_put_out_of_the_group_cannot_commit_rows(kafka: KafkaSettings) -> None:
    topic, group = kafka.topic(topics.TENANTS), f"{kafka.topic_prefix}extractors"
    first = member(kafka, group, topic)
    partitions = len(first.list_topics(topic, timeout=30).topics[topic].partitions)
    wait_assigned(first, partitions)
    producer = make_producer(
        kafka, transactional_id=f"{kafka.topic_prefix}extractor-{uuid.uuid4().hex}"
    )
    fence = Membership(first, topic)
    transactions = Transactions(producer, fence=fence)
    try:
        transactions.submit(row(kafka, 1), lambda: None, None).result(60)  # a member: fine

        # The first member stalls (no poll) past its session: the second takes it all.
        second = member(kafka, group, topic)
        stalled_at = time.monotonic()
        wait_assigned(second, partitions, timeout=90)
        assert time.monotonic() - stalled_at < 60

        with pytest.raises(RetriableError, match="transaction aborted"):
            transactions.submit(row(kafka, 2), lambda: None, None).result(60)
        # The new member's transactions go through.
        transactions.fence = Membership(second, topic)
        transactions.submit(row(kafka, 3), lambda: None, None).result(60)
    finally:
        transactions.close()
        second.close()
        close_zombie(first)

    keys = [r.key for r in read_topic(kafka, topics.RAW)]
    assert sorted(keys) == [b"acme/K1", b"acme/K3"]  # K2 never visible
