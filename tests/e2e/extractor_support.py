"""What the extractor e2e tests read back: committed records of a topic, the tenant's
state, the Siesa simulator's request log; and tenant entries for the stack."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from devtools import procs
from devtools.stack import Stack
from services.common import topics
from services.common.kafka import make_consumer
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import read_states

SERDE = default_serde()


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(kafka: KafkaSettings, name: str, timeout: float = 60.0) -> list[Record]:
    """Every committed record of topic `name` (a short name), from the beginning to the
    end as it is now (read_committed: the last stable offset)."""
    topic = kafka.topic(name)
    consumer = make_consumer(kafka, group_id=f"test-reader-{uuid.uuid4().hex}")
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        for partition in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            if high > low:
                ends[partition] = high
        out: list[Record] = []
        if not ends:
            return out
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends:
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for msg in consumer.consume(1000, 0.5):
                error = msg.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error.str()
                    continue
                out.append(Record(msg.key(), msg.value(), dict(msg.headers() or [])))
            for tp in consumer.position([TopicPartition(topic, p) for p in list(ends)]):
                if tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        return out
    finally:
        consumer.close()


def raw_items(kafka: KafkaSettings, tenant: str) -> list[dict[str, Any]]:
    """The tenant's committed RawItems, decoded."""
    return [
        SERDE.decode_as("RawItem", r.value)
        for r in read_topic(kafka, topics.RAW)
        if r.key is not None and r.key.startswith(f"{tenant}/".encode())
    ]


def state_of(kafka: KafkaSettings, tenant: str) -> dict[str, Any] | None:
    for state in read_states(kafka, SERDE):
        if state["tenant"] == tenant and state["writer"] == "extractor":
            return state
    return None


def wait_state(
    stack: Stack, kafka: KafkaSettings, tenant: str, what: str, check: Any, timeout: float
) -> dict[str, Any]:
    """Wait until the tenant's extractor state satisfies `check`; returns it."""
    found: dict[str, Any] = {}

    def holds() -> bool:
        stack.check_alive()
        state = state_of(kafka, tenant)
        if state is not None and check(state):
            found.update(state)
            return True
        return False

    procs.wait_until(holds, timeout=timeout, interval=0.5, what=f"{tenant}: {what}")
    return found


def wait_scan_after(
    stack: Stack, kafka: KafkaSettings, tenant: str, after: datetime | None, timeout: float
) -> dict[str, Any]:
    """Wait for a scan of the tenant that ended after `after` (any, when None)."""

    def ended(state: dict[str, Any]) -> bool:
        end = state.get("last_scan_ended_at")
        return end is not None and (after is None or end > after)

    return wait_state(stack, kafka, tenant, f"a scan ended after {after}", ended, timeout)


def consultas(stack: Stack, company: int) -> list[tuple[float, int, bool]]:
    """(seconds since the simulator started, status, filtered) of each consulta request."""
    log = stack.siesa_stats()["consultas"].get(str(company), [])
    return [(float(t), int(status), bool(filtered)) for t, status, filtered in log]


def siesa_tenant(stack: Stack, tenant: str, company: int, **siesa: Any) -> dict[str, Any]:
    """A tenant reading `company` from the simulator, with its Siesa source's settings
    overridden."""
    entry = stack.kong_tenant(tenant, company)
    entry["source"].update(siesa)
    return entry


def start_extractor(stack: Stack, kafka: KafkaSettings) -> None:
    stack.start_services(("extractor",))


class Tail:
    """A reader of a topic's new committed records, from the moment it is built."""

    def __init__(self, kafka: KafkaSettings, name: str) -> None:
        topic = kafka.topic(name)
        self.consumer = make_consumer(kafka, group_id=f"test-tail-{uuid.uuid4().hex}")
        partitions = self.consumer.list_topics(topic, timeout=30).topics[topic].partitions
        ends = {}
        for p in partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
            ends[p] = high
        self.consumer.assign([TopicPartition(topic, p, ends[p]) for p in partitions])

    def wait_for(self, predicate: Any, timeout: float) -> list[Record]:
        """Records until one matches `predicate` (TimeoutError after `timeout`)."""
        seen: list[Record] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(100, 0.1):
                if msg.error() is None:
                    seen.append(Record(msg.key(), msg.value(), dict(msg.headers() or [])))
                    if predicate(seen[-1]):
                        return seen
        raise TimeoutError(f"no matching record in {timeout}s")

    def close(self) -> None:
        self.consumer.close()
