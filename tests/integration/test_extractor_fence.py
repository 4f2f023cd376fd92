"""A zombie extractor instance can't commit (services/extractor/commit.py, KIP-447): its
transactions carry its group membership, and once the group has handed its partitions
to another member, the broker refuses them and the rows in them never become visible.

Each member lives in a child process of its own (tests/integration/member_process.py):
closing the member put out of the group can hang in confluent-kafka's rebalance callback
while it holds the GIL, which no thread of this process could wait out (it hung CI runs
here for 8 and 13 minutes); a child's close that has not ended in 30 s is killed."""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from services.common import topics
from services.common.errors import RetriableError
from services.common.kafka import make_producer
from services.common.records import OutRecord
from services.common.settings import KafkaSettings
from services.extractor.commit import Transactions
from tests.e2e.extractor_support import read_topic
from tests.integration.member_process import Assigned, MemberProcess


class Membership:
    """The fence of a real member of the group, as it stood when it was assigned."""

    def __init__(self, assigned: Assigned, topic: str) -> None:
        self._offsets = [TopicPartition(topic, partition, 0) for partition in assigned.partitions]
        self._metadata = assigned.metadata

    def offsets(self) -> list[TopicPartition]:
        return self._offsets

    def metadata(self) -> Any:
        return self._metadata

    epoch = 0

    def wait_changed(self, epoch: int, timeout: float) -> bool:
        return False  # the test says when the membership changes


def member(kafka: KafkaSettings, group: str, topic: str) -> MemberProcess:
    # A member that does not poll for 7 s is put out (max.poll.interval.ms), as one whose
    # process stalls is when its heartbeats stop (session.timeout.ms).
    settings: dict[str, Any] = {
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 7000,
    }
    return MemberProcess(kafka, group, topic, **settings)


def row(kafka: KafkaSettings, n: int) -> list[OutRecord]:
    return [OutRecord(kafka.topic(topics.RAW), f"acme/K{n}".encode(), f"row {n}".encode())]


def test_a_member_put_out_of_the_group_cannot_commit_rows(kafka: KafkaSettings) -> None:
    topic, group = kafka.topic(topics.TENANTS), f"{kafka.topic_prefix}extractors"
    with contextlib.ExitStack() as members:
        # Closed last, in at most 30 s each (MemberProcess.close), whatever happens here.
        first = members.enter_context(member(kafka, group, topic))
        partitions = first.partitions(timeout=30)
        fence = Membership(first.wait_assigned(partitions), topic)  # then it polls no more
        producer = make_producer(
            kafka, transactional_id=f"{kafka.topic_prefix}extractor-{uuid.uuid4().hex}"
        )
        transactions = Transactions(producer, fence=fence)
        try:
            transactions.submit(row(kafka, 1), lambda: None, None).result(60)  # a member: fine

            # The first member stalls (no poll) past its session: the second takes it all.
            second = members.enter_context(member(kafka, group, topic))
            stalled_at = time.monotonic()
            taken = second.wait_assigned(partitions, timeout=90)
            assert time.monotonic() - stalled_at < 60

            with pytest.raises(RetriableError, match="transaction aborted"):
                transactions.submit(row(kafka, 2), lambda: None, None).result(60)
            # The new member's transactions go through.
            transactions.fence = Membership(taken, topic)
            transactions.submit(row(kafka, 3), lambda: None, None).result(60)
        finally:
            transactions.close()

    keys = [r.key for r in read_topic(kafka, topics.RAW)]
    assert sorted(keys) == [b"acme/K1", b"acme/K3"]  # K2 never visible
