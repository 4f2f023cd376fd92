"""Helpers of the loader's e2e tests: feed CanonicalProducts straight into the canonical
topic (no extractor or transformer needed), read the DLQ and the sync state, wait for a
target simulator to hold what it should."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from devtools import procs
from devtools.stack import Stack
from services.common import topics
from services.common.kafka import make_producer
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import read_states

SERDE = default_serde()


def canonical(tenant: str, sku: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "sku": sku,
        "name": name or f"PRODUCT {sku}",
        "display_name": None,
        "reference": sku,
        "group_code": "10",
        "barcode": None,
        "barcode_type": None,
        "unit": "UNIT",
        "is_active": True,
        "weight_kg": 0.5,
        "volume_m3": None,
        "attributes": {},
        "op": "UPSERT",
        "mapping_name": "siesa-items",
        "mapping_version": "1",
        "sync_id": "sync-e2e",
        "trace_id": uuid.uuid4().hex,
        "source_fingerprint": "f",
        **fields,
    }


def feed(kafka: KafkaSettings, products: list[dict[str, Any]]) -> None:
    """Produce `products` in this order to the canonical topic, keyed `<tenant>/<sku>`."""
    producer = make_producer(kafka)
    topic = kafka.topic(topics.CANONICAL)
    for product in products:
        value = SERDE.encode("CanonicalProduct", product)
        key = f"{product['tenant']}/{product['sku']}".encode()
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "not every product reached the broker"


def dead_letters(kafka: KafkaSettings, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every record on the DLQ: key and headers (decoded)."""
    topic = kafka.topic(topics.DLQ)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"dlq-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        found: list[dict[str, Any]] = []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or (msg.error() and msg.error().code() == KafkaError._PARTITION_EOF):
                continue
            assert msg.error() is None, msg.error()
            headers = {k: (v or b"").decode() for k, v in msg.headers() or []}
            found.append({"key": (msg.key() or b"").decode(), "headers": headers})
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        assert not ends, "timed out reading the DLQ"
        return found
    finally:
        consumer.close()


def loader_states(kafka: KafkaSettings, tenant: str) -> list[dict[str, Any]]:
    return [
        s
        for s in read_states(kafka, SERDE)
        if s["tenant"] == tenant and s["writer"].startswith("loader-")
    ]


def wait_for_count(
    stack: Stack, url: str, field: str, want: int, timeout: float, what: str = ""
) -> float:
    """Wait until the simulator at `url` holds `want` items (`field` of its stats: `skus`
    or `products`); returns the seconds waited."""
    started = time.monotonic()

    def enough() -> bool:
        stack.check_alive()
        return int(stack.sim_stats(url)[field]) >= want

    procs.wait_until(enough, timeout=timeout, interval=0.25, what=what or f"{want} {field}")
    return time.monotonic() - started


def wait_until_held(
    fetch: Callable[[], list[dict[str, Any]]],
    expected: dict[str, dict[str, Any]],
    stack: Stack,
    timeout: float,
) -> dict[str, dict[str, Any]]:
    """Wait until the target holds every expected field of every expected external id."""
    held: dict[str, dict[str, Any]] = {}

    def arrived() -> bool:
        nonlocal held
        stack.check_alive()
        held = {item["external_id"]: item for item in fetch()}
        return all(
            k in held and all(held[k].get(f) == v for f, v in e.items())
            for k, e in expected.items()
        )

    procs.wait_until(arrived, timeout=timeout, interval=0.5, what=f"{len(expected)} products")
    return held


def requests_by(stats: dict[str, Any], status: int | None = None, route: str = "") -> int:
    return sum(
        r["count"]
        for r in stats["requests"]
        if (status is None or r["status"] == status) and r["route"].startswith(route)
    )
