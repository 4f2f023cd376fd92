"""Records written by the first release (tests/fixtures/records-v1.json: RawItem and
CanonicalProduct v1, encoded by its own code) left on the topics at an upgrade: today's
transformer and loader take them through to Kong, every field right."""

from __future__ import annotations

import json

from devtools.expected import expected_sku, held_sku
from devtools.stack import Stack
from services.common import topics
from services.common.kafka import make_producer, produce_all
from services.common.records import OutRecord
from services.common.settings import KafkaSettings
from tests.conftest import FIXTURES
from tests.e2e.loading import wait_until_held

RECORDS = json.loads((FIXTURES / "records-v1.json").read_text())


def put(kafka: KafkaSettings, topic: str, records: list[dict[str, str]]) -> None:
    producer = make_producer(kafka)
    produce_all(
        producer,
        (
            OutRecord(kafka.topic(topic), r["key"].encode(), bytes.fromhex(r["hex"]))
            for r in records
        ),
    )
    assert producer.flush(60) == 0


def test_old_raw_and_canonical_records_reach_kong(stack: Stack, kafka: KafkaSettings) -> None:
    raw_expected = json.loads((FIXTURES / "expected-kong.json").read_text())["skus"]
    expected = {e["external_id"]: e for e in raw_expected}
    expected |= {r["f120_referencia"].strip(): expected_sku(r) for r in RECORDS["rows"]}
    stack.tenants = [stack.kong_tenant("golden", 8585)]
    stack.start_simulators()
    put(kafka, topics.RAW, RECORDS["raw"])
    put(kafka, topics.CANONICAL, RECORDS["canonical"])
    stack.start_services(("transformer", "loader"))

    held = wait_until_held(
        lambda: [held_sku(s) for s in stack.kong_skus()], expected, stack, timeout=120
    )

    assert sorted(held) == sorted(expected)  # the 7 products, none twice, nothing else
    assert len(stack.kong_skus()) == len(expected)
