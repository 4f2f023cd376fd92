"""Reading a topic as a finite range, for tools and start-up restores: from given
offsets (or the beginning, or a time) to the end as it is when the scan starts.

Committed records only (read_committed), no consumer group offsets touched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from services.common.errors import RetriableError
from services.common.kafka import make_consumer
from services.common.settings import KafkaSettings
from services.product import NAME

Offsets = dict[int, int]  # partition -> offset


def reader_group_prefix(kafka: KafkaSettings) -> str:
    """What the throwaway groups of scans start with (one ACL on a secured cluster)."""
    return f"{kafka.topic_prefix}{NAME}-reader-"


def reader(kafka: KafkaSettings) -> Consumer:
    """A consumer for scans: a throwaway group that never commits."""
    return make_consumer(kafka, group_id=f"{reader_group_prefix(kafka)}{uuid.uuid4().hex}")


def partitions(consumer: Consumer, topic: str, timeout: float = 30.0) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise RetriableError(f"cannot read topic {topic}: {found and found.error}")
    return sorted(found.partitions)


def watermarks(
    consumer: Consumer, topic: str, partition: int, timeout: float = 30.0
) -> tuple[int, int]:
    """(low, high) of one partition; in read_committed mode high is the last stable
    offset. Retried until ``timeout`` (a new topic has no leader for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise RetriableError(f"cannot read the end of {topic}: {exc}") from exc
            time.sleep(0.2)
        else:
            return int(low), int(high)


def end_offsets(consumer: Consumer, topic: str, timeout: float = 30.0) -> Offsets:
    return {p: watermarks(consumer, topic, p, timeout)[1] for p in partitions(consumer, topic)}


def offsets_at(consumer: Consumer, topic: str, at_ms: int, timeout: float = 30.0) -> Offsets:
    """Per partition, the first offset whose timestamp is >= ``at_ms`` (the end if none)."""
    query = [TopicPartition(topic, p, at_ms) for p in partitions(consumer, topic)]
    found = consumer.offsets_for_times(query, timeout=timeout)
    ends = end_offsets(consumer, topic, timeout)
    return {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition] for tp in found}


def scan(
    consumer: Consumer,
    topic: str,
    start: Offsets | None = None,
    end: Offsets | None = None,
    timeout: float = 60.0,
) -> Iterator[Message]:
    """Every committed record of ``topic`` from ``start`` (default: the beginning) up to
    ``end`` (default: the end when the scan starts), partition by partition interleaved.
    Raises RetriableError if the range cannot be read within ``timeout``."""
    end = end if end is not None else end_offsets(consumer, topic)
    begin = start if start is not None else dict.fromkeys(end, OFFSET_BEGINNING)
    todo = {p: e for p, e in end.items() if e > max(begin.get(p, 0), 0)}
    if not todo:
        return
    consumer.assign([TopicPartition(topic, p, begin.get(p, OFFSET_BEGINNING)) for p in todo])
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() > deadline:
            raise RetriableError(f"timed out reading {topic} to offsets {end}")
        msg = consumer.poll(0.5)
        error = msg.error() if msg is not None else None
        if error is not None and error.code() != KafkaError._PARTITION_EOF:
            raise RetriableError(f"cannot read {topic}: {error.str()}")
        if msg is not None and error is None:
            partition, offset = msg.partition() or 0, msg.offset() or 0
            if partition in todo and offset < todo[partition]:
                yield msg
        # Positions pass transaction markers too, so they reach the end offsets.
        for tp in consumer.position([TopicPartition(topic, p) for p in list(todo)]):
            if tp.offset >= todo[tp.partition]:
                del todo[tp.partition]
                consumer.incremental_unassign([TopicPartition(topic, tp.partition)])
