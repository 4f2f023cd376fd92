"""The real transformer process on the real broker: records failing validation go to the
DLQ with a reason naming field and value, the rest of the batch goes on, and the mapping
name and version travel in each output record and its headers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from devtools import procs
from devtools.stack import Stack
from services.common import topics
from services.common.serde import default_serde
from services.common.settings import KafkaSettings

SERDE = default_serde()
BAD = {
    "BAD-WEIGHT": ({"f120_peso": "12,3,4"}, "field weight_kg: f120_peso='12,3,4': not a number"),
    "BAD-STATE": ({"f120_ind_estado": "quizas"}, "field is_active: f120_ind_estado='quizas'"),
    "BAD-DATE": (
        {"f120_fecha_actualizacion": "20261399"},
        "field attributes.updated_at: f120_fecha_actualizacion='20261399'",
    ),
}


def raw_item(ref: str, **columns: str) -> dict[str, Any]:
    row = {
        "f120_referencia": ref,
        "f120_descripcion": f"PRODUCTO {ref} & #1; -- Drop",
        "f120_codigo_barras": "ABC",  # dropped by the override's pattern, not a rejection
        "f120_unidad_medida": "KG",
        "f120_ind_estado": "1",
        "f120_peso": "1500",
        "f120_fecha_actualizacion": "20261120093000",
        "custom:color": "rojo",
        **columns,
    }
    return {
        "tenant": "acme",
        "source_system": "siesa",
        "origin": {"company": "8585", "consulta": "API_v2_Items"},
        "key": ref,
        "row": row,
        "fingerprint": uuid.uuid4().hex,
        "op": "UPSERT",
        "sync_id": "s1",
        "extracted_at": 0,
        "trace_id": f"trace-{ref}",
    }


def read(kafka: KafkaSettings, topic: str, want: int, process: procs.Process) -> list[Message]:
    name = kafka.topic(topic)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
        }
    )
    parts = consumer.list_topics(name, timeout=30).topics[name].partitions
    consumer.assign([TopicPartition(name, p, 0) for p in parts])
    got: list[Message] = []

    def enough() -> bool:
        if not process.alive():
            raise RuntimeError(f"transformer exited:\n{process.log_tail()}")
        got.extend(m for m in consumer.consume(500, 0.3) if m.error() is None)
        return len(got) >= want

    try:
        procs.wait_until(enough, timeout=120, what=f"{want} records on {topic}")
        got.extend(m for m in consumer.consume(100, 1.0) if m.error() is None)
    finally:
        consumer.close()
    return got


def test_failing_records_go_to_the_dlq_named_and_the_rest_go_on(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    stack = Stack(
        bootstrap=kafka.bootstrap_servers, run_dir=tmp_path, topic_prefix=kafka.topic_prefix
    )
    stack.tenants = [{**stack.kong_tenant("acme", 8585), "mapping": "example-tenant"}]
    stack.write_tenants()
    good = [raw_item(f"GOOD-{i:02d}") for i in range(20)]
    bad = [raw_item(ref, **columns) for ref, (columns, _) in BAD.items()]
    sent = {}
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    for item in [*good[:10], *bad, *good[10:]]:  # the bad ones amid one batch
        sent[item["key"]] = SERDE.encode("RawItem", item)
        producer.produce(
            kafka.topic(topics.RAW), key=f"acme/{item['key']}", value=sent[item["key"]]
        )
    assert producer.flush(30) == 0

    process = procs.start(
        "transformer",
        procs.python_module("services.transformer"),
        env=stack.env(),
        run_dir=tmp_path,
    )
    try:
        canonical = read(kafka, topics.CANONICAL, len(good), process)
        dead = read(kafka, topics.DLQ, len(bad), process)
    finally:
        process.stop()

    products = {
        m.key().decode(): (m, SERDE.decode_as("CanonicalProduct", m.value())) for m in canonical
    }
    assert sorted(products) == sorted(f"acme/{g['key']}" for g in good)
    message, product = products["acme/GOOD-07"]
    assert product["name"] == "PRODUCTO GOOD-07 & #1; -- Drop"
    assert (product["mapping_name"], product["mapping_version"]) == (
        "example-tenant",
        "1+siesa-items@2",
    )
    headers = {k: v.decode() for k, v in message.headers()}
    assert headers["mapping.name"] == "example-tenant"
    assert headers["mapping.version"] == "1+siesa-items@2"
    assert product["weight_kg"] == 1.5  # grams by the override's expression
    assert (product["unit"], product["barcode"], product["barcode_type"]) == (
        "KILOGRAM",
        None,
        "OTHER",
    )
    assert product["attributes"] == {
        "color": "rojo",
        "updated_at": "2026-11-20T09:30:00",
        "siesa_company": "8585",
    }
    assert len(dead) == len(bad)
    for letter in dead:
        ref = letter.key().decode().split("/", 1)[1]
        headers = {k: v.decode() for k, v in letter.headers()}
        assert headers["error.class"] == "mapping"
        assert headers["error.stage"] == "transform"
        assert BAD[ref][1] in headers["error.message"], headers["error.message"]
        assert headers["error.message"].startswith(f"tenant acme: item {ref}: ")
        assert headers["error.message"].endswith("[mapping example-tenant@1+siesa-items@2]")
        assert letter.value() == sent[ref]  # the failed record's bytes, unchanged
