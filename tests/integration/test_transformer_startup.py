"""A mapping file with three mistakes stops the real transformer process before it
consumes anything, listing all three with file and field."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml
from confluent_kafka import OFFSET_INVALID, Consumer, Producer, TopicPartition

from devtools.stack import Stack
from services.common import topics
from services.common.settings import KafkaSettings
from tests import ROOT

BROKEN = """\
    # Three mistakes: a field CanonicalProduct lacks, an unknown conversion, a hostile
    # expression.
    name: broken
    version: "1"
    extends: siesa-items
    fields:
      colour: {source: f120_color}
      weight_kg: {source: f120_peso, convert: kilos}
      display_name: {source: f120_descripcion, expr: "__import__('os').system('id')"}
    """


def test_a_mapping_with_three_mistakes_stops_the_service_before_it_consumes(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "siesa-items.yaml").write_text((ROOT / "mappings" / "siesa-items.yaml").read_text())
    broken = mappings / "broken.yaml"
    broken.write_text(textwrap.dedent(BROKEN))
    stack = Stack(bootstrap=kafka.bootstrap_servers)
    tenant = {**stack.kong_tenant("acme", 8585), "mapping": "broken"}
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": [tenant]}))
    raw_topic = kafka.topic(topics.RAW)
    producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})
    producer.produce(raw_topic, key=b"acme/x", value=b"waiting to be consumed")
    assert producer.flush(30) == 0

    done = subprocess.run(
        [sys.executable, "-m", "services.transformer"],
        env={
            **os.environ,
            **stack.credentials.tenant_env("acme"),
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "TRANSFORMER_TENANTS_FILE": str(tenants_file),
            "TRANSFORMER_MAPPINGS_DIR": str(mappings),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "3 configuration problems" in output, output
    assert f"{broken}: field colour: not a CanonicalProduct field" in output
    assert f"{broken}: field weight_kg: convert: 'kilos' is not one of" in output
    assert f"{broken}: field display_name: expr " in output
    assert "unknown name '__import__'" in output
    # Nothing consumed: the group never committed an offset, nothing was produced.
    group = f"{kafka.topic_prefix}siesa-sync-transformer"
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap_servers, "group.id": group})
    try:
        partitions = consumer.list_topics(raw_topic, timeout=30).topics[raw_topic].partitions
        committed = consumer.committed([TopicPartition(raw_topic, p) for p in partitions], 30)
        assert [tp.offset for tp in committed] == [OFFSET_INVALID] * len(partitions)
        canonical = kafka.topic(topics.CANONICAL)
        for p in range(len(partitions)):
            assert consumer.get_watermark_offsets(TopicPartition(canonical, p), 30) == (0, 0)
    finally:
        consumer.close()
