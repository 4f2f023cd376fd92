"""Transformer throughput through Kafka against a raw loop on the same broker.

N RawItems (rows like the fixture page) are put on a fresh raw topic; then a real
transformer process maps them to a fresh canonical topic: once with the default
mapping, once with one whose fields also run patterns and expressions (`SANDBOXED`),
which is what the sandbox's bounds (watchdog, sizes, regex timeouts) cost. In the same
run, the raw loop (devtools/bench/rawloop.py: the same RunLoop, consume → fastavro
decode → encode → produce, no mapping) does the same, once in transactions like the
transformer and once without. Each rate is output records over the span of their broker
timestamps (first to last record read back with read_committed), so process start-up
and the group join are not counted. Three rounds, alternating; each figure is the
median of its rounds.
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from devtools import procs
from devtools.bench import Figure
from devtools.stack import Stack
from services.common import topics
from services.common.serde import default_serde
from services.common.settings import ROOT, KafkaSettings
from services.common.topics import create_topics
from services.extractor import rows

log = logging.getLogger("bench.transformer")
COUNT = 20_000
ROUNDS = 3
BATCH = 500
PAGE = ROOT / "tests" / "fixtures" / "siesa-items-page.json"
# The default mapping plus two patterns and two expressions; it rejects no bench row.
SANDBOXED = """\
name: bench-sandboxed
extends: siesa-items
fields:
  sku:
    source: f120_referencia
    required: true
    pattern: "[A-Z0-9][A-Z0-9-]{0,49}"
  barcode:
    source: f120_codigo_barras
    pattern: "\\\\d{8}|\\\\d{12,13}"
    on_mismatch: "null"
  display_name:
    source: [f120_descripcion_comercial, f120_descripcion]
    expr: "collapse(value) if value else value"
  weight_kg:
    source: f120_peso
    convert: decimal
    expr: "round(value / 1000, 6) if value is not None else None"
"""


def raw_items(count: int) -> list[tuple[str, bytes]]:
    serde = default_serde()
    page = json.loads(PAGE.read_text())["detalle"]["Table"]
    out = []
    for i in range(count):
        source = {**page[i % len(page)], "f120_referencia": f"BENCH-{i:06d}"}
        row = rows.normalize(source)
        item: dict[str, Any] = {
            "tenant": "bench",
            "source_system": "siesa",
            "company": "8585",
            "consulta": "API_v2_Items",
            "key": row["f120_referencia"],
            "row": row,
            "fingerprint": rows.fingerprint(row),
            "op": "UPSERT",
            "sync_id": "bench",
            "extracted_at": 0,
            "trace_id": uuid.uuid4().hex,
        }
        out.append((f"bench/{item['key']}", serde.encode("RawItem", item)))
    return out


def fill(kafka: KafkaSettings, items: list[tuple[str, bytes]]) -> None:
    create_topics(kafka)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers, "linger.ms": 20})
    for key, value in items:
        while True:
            try:
                producer.produce(kafka.topic(topics.RAW), key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("could not put the bench input on the broker")


def rate_of_output(kafka: KafkaSettings, count: int, process: procs.Process) -> float:
    """Records/s of what `process` writes to the canonical topic (read_committed)."""
    topic = kafka.topic(topics.CANONICAL)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": f"bench-reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
        }
    )
    parts = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    stamps: list[int] = []

    def done() -> bool:
        if not process.alive():
            raise RuntimeError(f"{process.name} exited:\n{process.log_tail()}")
        batch = consumer.consume(5000, 0.2)
        stamps.extend(m.timestamp()[1] for m in batch if m.error() is None)
        return len(stamps) >= count

    try:
        procs.wait_until(done, timeout=600, what=f"{count} records from {process.name}")
    finally:
        consumer.close()
    span_s = (max(stamps) - min(stamps)) / 1000
    return (len(stamps) - 1) / span_s if span_s > 0 else 0.0


def measure(
    bootstrap: str, workdir: Path, name: str, argv: list[str], env: dict[str, str]
) -> float:
    kafka = KafkaSettings(
        bootstrap_servers=bootstrap, topic_prefix=f"bench-{name}-{uuid.uuid4().hex[:6]}."
    )
    fill(kafka, raw_items(COUNT))
    full_env = {
        **env,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    process = procs.start(name, argv, env=full_env, run_dir=workdir)
    try:
        rate = rate_of_output(kafka, COUNT, process)
    finally:
        process.stop()
    log.info("%s: %.0f records/s", name, rate)
    return rate


def run(bootstrap: str, workdir: Path) -> list[Figure]:
    stack = Stack(bootstrap=bootstrap, run_dir=workdir)
    stack.tenants = [stack.kong_tenant("bench", 8585)]
    stack.write_tenants()
    sandboxed = Stack(bootstrap=bootstrap, run_dir=workdir / "sandboxed")
    sandboxed.tenants = [{**sandboxed.kong_tenant("bench", 8585), "mapping": "bench-sandboxed"}]
    sandboxed.write_tenants()
    mappings = workdir / "mappings"
    shutil.copytree(ROOT / "mappings", mappings, dirs_exist_ok=True)
    (mappings / "bench-sandboxed.yaml").write_text(SANDBOXED)
    batch = {"TRANSFORMER_BATCH_SIZE": str(BATCH), "RAWLOOP_BATCH_SIZE": str(BATCH)}
    contenders = {
        "transformer": (
            procs.python_module("services.transformer"),
            {**stack.env(), **batch, "TRANSFORMER_LOG_LEVEL": "WARNING"},
        ),
        "transformer-sandboxed": (
            procs.python_module("services.transformer"),
            {
                **sandboxed.env(),
                **batch,
                "TRANSFORMER_LOG_LEVEL": "WARNING",
                "TRANSFORMER_MAPPINGS_DIR": str(mappings),
            },
        ),
        "rawloop-tx": (
            procs.python_module("devtools.bench.rawloop"),
            {**batch, "RAWLOOP_TRANSACTIONAL": "1"},
        ),
        "rawloop-plain": (
            procs.python_module("devtools.bench.rawloop"),
            {**batch, "RAWLOOP_TRANSACTIONAL": "0"},
        ),
    }
    # Rounds alternate the contenders, and each figure is the median of its rounds, so
    # a burst of load from elsewhere on the machine does not land on one of them only.
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for round_no in range(ROUNDS):
        for name, (argv, env) in contenders.items():
            rates[name].append(measure(bootstrap, workdir, f"{name}-{round_no}", argv, env))
    transformer, sandboxed_rate, raw_tx, raw_plain = (
        statistics.median(rates[n]) for n in contenders
    )
    log.info("rounds: %s", {n: [round(r) for r in rs] for n, rs in rates.items()})
    return [
        Figure(
            "transformer (vs raw loop, transactional)",
            transformer,
            "records/s",
            "raw loop: consume→decode→encode→produce, transactional",
            raw_tx,
        ),
        Figure(
            "transformer (vs raw loop, no transactions)",
            transformer,
            "records/s",
            "raw loop: consume→decode→encode→produce, at least once",
            raw_plain,
        ),
        Figure(
            "transformer, patterns and expressions (vs raw loop, transactional)",
            sandboxed_rate,
            "records/s",
            "raw loop: consume→decode→encode→produce, transactional",
            raw_tx,
        ),
    ]
