"""Sync state on the compacted `sync.state.v1`: one `SyncState` per tenant and writer.

Writers (the extractor, each loader) put their own record, keyed ``<tenant>/<writer>``,
so they never overwrite each other; readers merge them per tenant. `read_compacted`
reads any compacted topic to its end (latest value per key), for state restored at
start-up.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.common.errors import RetriableError
from services.common.kafka import make_consumer
from services.common.records import OutRecord
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.topics import STATE

SCHEMA = "SyncState"


def state_key(tenant: str, writer: str) -> bytes:
    return f"{tenant}/{writer}".encode()


def new_state(tenant: str, writer: str, **fields: Any) -> dict[str, Any]:
    """A SyncState dict with every field at its default, overridden by ``fields``."""
    state: dict[str, Any] = {
        "tenant": tenant,
        "writer": writer,
        "status": "idle",
        "cursor": None,
        "last_extract_at": None,
        "last_load_at": None,
        "extracted": 0,
        "changed": 0,
        "transformed": 0,
        "loaded": 0,
        "failed": 0,
        "dead_lettered": 0,
        "last_error": None,
        "updated_at": datetime.now(UTC),
    }
    state.update(fields)
    return state


def state_record(kafka: KafkaSettings, serde: Serde, state: dict[str, Any]) -> OutRecord:
    """The record that stores ``state`` (stamped ``updated_at`` now)."""
    value = serde.encode(SCHEMA, {**state, "updated_at": datetime.now(UTC)})
    return OutRecord(kafka.topic(STATE), state_key(state["tenant"], state["writer"]), value)


def read_compacted(kafka: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[bytes, bytes]:
    """The latest value of every key of ``topic`` (a full topic name), committed records
    only, read from the beginning to the end as it is now; tombstones remove keys."""
    consumer = make_consumer(kafka, group_id=f"siesa-sync-reader-{uuid.uuid4().hex}")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise RetriableError(f"cannot read topic {topic}: {found and found.error}")
        deadline = time.monotonic() + timeout
        ends: dict[int, int] = {}
        for partition in found.partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, partition), deadline)
            if high > low:
                ends[partition] = high
        latest: dict[bytes, bytes] = {}
        if not ends:
            return latest
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        while ends:
            if time.monotonic() > deadline:
                raise RetriableError(f"timed out reading {topic} to its end")
            msg = consumer.poll(0.5)
            error = msg.error() if msg is not None else None
            if error is not None and error.code() != KafkaError._PARTITION_EOF:
                raise RetriableError(f"cannot read {topic}: {error.str()}")
            if msg is not None and error is None:
                key = msg.key() or b""
                value = msg.value()
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        return latest
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """(low, high) of one partition; in read_committed mode high is the last stable
    offset. Retried until ``deadline`` (a new topic has no leader for a moment)."""
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=5)
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise RetriableError(f"cannot read the end of {tp.topic}: {exc}") from exc
            time.sleep(0.2)
        else:
            return int(low), int(high)


def read_states(kafka: KafkaSettings, serde: Serde, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every stored SyncState (one per tenant and writer), sorted by tenant, writer."""
    raw = read_compacted(kafka, kafka.topic(STATE), timeout)
    states = [serde.decode_as(SCHEMA, value) for value in raw.values()]
    return sorted(states, key=lambda s: (s["tenant"], s["writer"]))
