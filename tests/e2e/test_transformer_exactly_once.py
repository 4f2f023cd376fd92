"""Exactly once through a crash: a real transformer process is killed with SIGKILL while
20,000 raw items flow through it, then restarted; the canonical topic, read committed,
holds each input exactly once."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from devtools import procs
from devtools.stack import Stack
from services.common import topics
from services.common.serde import default_serde
from services.common.settings import KafkaSettings

TOTAL = 20_000
HALF = TOTAL // 2
SERDE = default_serde()


def raw_item(i: int) -> dict[str, Any]:
    ref = f"SKU-{i:05d}"
    return {
        "tenant": "acme",
        "source_system": "siesa",
        "origin": {"company": "8585", "consulta": "API_v2_Items"},
        "key": ref,
        "row": {
            "f120_referencia": ref,
            "f120_descripcion": f'PRODUCTO {i} & "CO" #{i}',
            "f120_descripcion_comercial": None,
            "f120_id_grupo": str(i % 50),
            "f120_codigo_barras": "7701234000011",
            "f120_unidad_medida": "UND",
            "f120_ind_estado": "1",
            "f120_peso": "1,5",
            "f120_volumen": None,
        },
        "fingerprint": uuid.uuid4().hex,
        "op": "UPSERT",
        "sync_id": "kill-9",
        "extracted_at": 0,
        "trace_id": f"trace-{i}",
    }


def feed(kafka: KafkaSettings, numbers: range) -> None:
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
    for i in numbers:
        item = raw_item(i)
        producer.produce(
            kafka.topic(topics.RAW), key=f"acme/{item['key']}", value=SERDE.encode("RawItem", item)
        )
        producer.poll(0)
    assert producer.flush(60) == 0


class Reader:
    """Everything on a topic from the start, at one isolation level, read incrementally."""

    def __init__(self, kafka: KafkaSettings, topic: str, isolation: str) -> None:
        self.topic = kafka.topic(topic)
        self.keys: Counter[bytes] = Counter()
        self.consumer = Consumer(
            {
                "bootstrap.servers": kafka.bootstrap_servers,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "isolation.level": isolation,
                "enable.auto.commit": False,
            }
        )
        parts = self.consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in parts])

    def count(self) -> int:
        """What has arrived so far (one fetch: a check mid-flow must not wait for the end)."""
        batch = self.consumer.consume(1000, 0.1)
        self.keys.update(m.key() for m in batch if m.error() is None)
        return sum(self.keys.values())

    def drain(self) -> int:
        while batch := self.consumer.consume(2000, 1.0):
            self.keys.update(m.key() for m in batch if m.error() is None)
        return sum(self.keys.values())

    def close(self) -> None:
        self.consumer.close()


def lag(kafka: KafkaSettings, group: str) -> int:
    raw = kafka.topic(topics.RAW)
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    try:
        parts = consumer.list_topics(raw, timeout=30).topics[raw].partitions
        committed = consumer.committed([TopicPartition(raw, p) for p in parts], 30)
        return sum(
            consumer.get_watermark_offsets(TopicPartition(raw, tp.partition), 30)[1]
            - max(tp.offset, 0)
            for tp in committed
        )
    finally:
        consumer.close()


@pytest.fixture
def readers(kafka: KafkaSettings) -> Iterator[dict[str, Reader]]:
    made = {
        "canonical": Reader(kafka, topics.CANONICAL, "read_committed"),
        "uncommitted": Reader(kafka, topics.CANONICAL, "read_uncommitted"),
        "dlq": Reader(kafka, topics.DLQ, "read_committed"),
    }
    yield made
    for reader in made.values():
        reader.close()


def test_kill_9_mid_flow_then_restart_leaves_each_record_exactly_once(
    kafka: KafkaSettings, tmp_path: Path, readers: dict[str, Reader]
) -> None:
    stack = Stack(
        bootstrap=kafka.bootstrap_servers, run_dir=tmp_path, topic_prefix=kafka.topic_prefix
    )
    stack.tenants = [stack.kong_tenant("acme", 8585)]
    stack.write_tenants()
    env = {
        **stack.env(),
        # One stable transactional id: the restarted instance fences the killed one and
        # aborts its open transaction at once.
        "TRANSFORMER_INSTANCE_ID": "kill-9-test",
        "TRANSFORMER_BATCH_SIZE": "200",
    }
    canonical = readers["canonical"]
    started: list[procs.Process] = []

    def start() -> procs.Process:
        process = procs.start(
            f"transformer-{len(started)}",
            procs.python_module("services.transformer"),
            env=env,
            run_dir=tmp_path,
        )
        started.append(process)
        return process

    def progress(process: procs.Process, want: int) -> bool:
        if not process.alive():
            raise RuntimeError(f"transformer exited:\n{process.log_tail()}")
        return canonical.count() >= want

    def in_a_transaction(process: procs.Process) -> bool:
        """Best moment for the kill: records written but not yet committed (a read
        uncommitted sees more); failing that, well into the flow."""
        committed = canonical.count()
        if not process.alive():
            raise RuntimeError(f"transformer exited:\n{process.log_tail()}")
        return (readers["uncommitted"].count() > committed >= 500) or committed >= 4000

    try:
        feed(kafka, range(HALF))
        first = start()
        procs.wait_until(
            lambda: in_a_transaction(first), timeout=120, interval=0.02, what="records flowing"
        )
        first.kill()  # SIGKILL mid-flow: a transaction is (most likely) open
        at_kill = canonical.drain()
        feed(kafka, range(HALF, TOTAL))
        second = start()
        procs.wait_until(lambda: progress(second, TOTAL), timeout=300, what=f"{TOTAL} records")
        group = f"{kafka.topic_prefix}siesa-sync-transformer"
        procs.wait_until(lambda: lag(kafka, group) == 0, timeout=60, what="offsets committed")
    finally:
        for process in started:
            process.stop()

    total = canonical.drain()
    duplicates = {k: n for k, n in canonical.keys.items() if n > 1}
    print(  # figures for the report (pytest -s)
        f"\nkilled at {at_kill} committed; canonical read_committed {total} records, "
        f"{len(canonical.keys)} keys, {len(duplicates)} duplicated; read_uncommitted "
        f"{readers['uncommitted'].drain()} (aborted writes included)"
    )
    assert at_kill < TOTAL
    assert not duplicates, list(duplicates.items())[:5]
    assert set(canonical.keys) == {f"acme/SKU-{i:05d}".encode() for i in range(TOTAL)}
    assert total == TOTAL
    assert readers["dlq"].drain() == 0
