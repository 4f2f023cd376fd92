"""The shared run loop on the real broker: exactly-once transform, DLQ, committed offsets."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from devtools import procs
from services.common import topics
from services.common.kafka import make_consumer, make_producer, producer_config
from services.common.runloop import RunLoop, per_record
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.transformer.compiler import load_mappings
from services.transformer.service import Transformer
from tests import ROOT

serde = default_serde()


def raw_item(tenant: str, ref: str, name: str | None) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "source_system": "siesa",
        "origin": {"company": "8585", "consulta": "API_v2_Items"},
        "key": ref,
        "row": {
            "f120_referencia": ref,
            "f120_descripcion": name,
            "f120_ind_estado": "1",
            "f120_codigo_barras": "7701234000011",
            "f120_id_grupo": "10",
        },
        "fingerprint": uuid.uuid4().hex,
        "op": "UPSERT",
        "sync_id": "s1",
        "extracted_at": 0,
        "trace_id": f"trace-{ref}",
    }


def read_all(kafka: KafkaSettings, topic: str, want: int, timeout: float = 30) -> list[Any]:
    consumer = make_consumer(kafka, group_id=f"reader-{uuid.uuid4().hex}")
    consumer.subscribe([kafka.topic(topic)])
    got: list[Any] = []

    def enough() -> bool:
        got.extend(m for m in consumer.consume(500, 0.5) if m.error() is None)
        return len(got) >= want

    try:
        procs.wait_until(enough, timeout=timeout, what=f"{want} records on {topic}")
        extra = consumer.consume(100, 1.0)  # nothing more may follow
        got.extend(m for m in extra if m.error() is None)
    finally:
        consumer.close()
    return got


@pytest.fixture
def running_transformer(kafka: KafkaSettings) -> Iterator[tuple[str, Stopper]]:
    mappings = load_mappings(ROOT / "mappings", {"siesa-items"})
    group = f"{kafka.topic_prefix}transformer"
    stopper = Stopper()
    loop = RunLoop(
        stage="transform",
        consumer=make_consumer(kafka, group_id=group),
        producer=make_producer(kafka, transactional_id=f"{group}-{uuid.uuid4().hex}"),
        topics=[kafka.topic(topics.RAW)],
        handler=per_record(
            Transformer(
                serde=serde,
                mappings={"acme": mappings["siesa-items"]},
                out_topic=kafka.topic(topics.CANONICAL),
            ).handle
        ),
        dlq_topic=kafka.topic(topics.DLQ),
        stopper=stopper,
        transactional=True,
    )
    thread = threading.Thread(target=loop.run)
    thread.start()
    try:
        yield group, stopper
    finally:
        stopper.stop()
        thread.join(30)
        assert not thread.is_alive(), "the run loop did not stop on request"


def test_transform_loop_maps_dead_letters_and_commits(
    kafka: KafkaSettings, running_transformer: tuple[str, Stopper]
) -> None:
    group, _ = running_transformer
    producer = Producer(producer_config(kafka))
    raw_topic = kafka.topic(topics.RAW)
    for i in range(40):
        value = serde.encode("RawItem", raw_item("acme", f"REF-{i:03d}", f"Producto {i} & #{i}"))
        producer.produce(raw_topic, key=f"acme/REF-{i:03d}", value=value)
    producer.produce(raw_topic, key=b"acme/GARBAGE", value=b"not avro at all")
    no_name = serde.encode("RawItem", raw_item("acme", "REF-NONAME", None))
    noname_trace = "0af7651916cd43dd8448eb211c80319c"  # a W3C trace id
    producer.produce(
        raw_topic, key=b"acme/REF-NONAME", value=no_name, headers=[("trace_id", noname_trace)]
    )
    producer.produce(
        raw_topic, key=b"ghost/REF-1", value=serde.encode("RawItem", raw_item("ghost", "R", "x"))
    )
    assert producer.flush(30) == 0

    canonical = read_all(kafka, topics.CANONICAL, 40)
    dead = read_all(kafka, topics.DLQ, 3)

    products = {m.key().decode(): serde.decode_as("CanonicalProduct", m.value()) for m in canonical}
    assert len(canonical) == 40
    assert products["acme/REF-007"]["name"] == "Producto 7 & #7"
    assert products["acme/REF-007"]["barcode_type"] == "EAN13"
    assert products["acme/REF-007"]["mapping_name"] == "siesa-items"
    by_key = {m.key(): m for m in dead}
    assert set(by_key) == {b"acme/GARBAGE", b"acme/REF-NONAME", b"ghost/REF-1"}
    assert by_key[b"acme/GARBAGE"].value() == b"not avro at all"  # the bytes, unchanged
    headers = {k: v.decode() for k, v in by_key[b"acme/REF-NONAME"].headers()}
    assert headers["error.stage"] == "transform"
    assert headers["error.class"] == "mapping"
    assert "f120_descripcion" in headers["error.message"]
    assert headers["error.attempts"] == "1"
    assert headers["source.topic"] == raw_topic
    assert headers["tenant"] == "acme"
    assert headers["trace_id"] == noname_trace
    assert {"source.partition", "source.offset", "failed_at"} <= headers.keys()
    assert {k: v.decode() for k, v in by_key[b"ghost/REF-1"].headers()}["error.class"] == (
        "unknown_tenant"
    )

    # Every input record is accounted for in the group's committed offsets.
    def committed_all() -> bool:
        probe = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
        try:
            parts = [TopicPartition(raw_topic, p) for p in range(kafka.partitions)]
            committed = probe.committed(parts, timeout=10)
            ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
        finally:
            probe.close()
        return all(max(c.offset, 0) == end for c, end in zip(committed, ends, strict=True))

    procs.wait_until(committed_all, timeout=30, what="offsets committed to the end")
