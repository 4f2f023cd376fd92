"""CanonicalProducts made up for tests and benchmarks, fed straight into the canonical
topic (no extractor or transformer needed)."""

from __future__ import annotations

import uuid
from typing import Any

from services.common import topics
from services.common.kafka import make_producer, produce_all
from services.common.records import OutRecord
from services.common.serde import default_serde
from services.common.settings import KafkaSettings


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
    serde = default_serde()
    topic = kafka.topic(topics.CANONICAL)
    producer = make_producer(kafka)
    produce_all(
        producer,
        (
            OutRecord(
                topic,
                f"{p['tenant']}/{p['sku']}".encode(),
                serde.encode("CanonicalProduct", p),
            )
            for p in products
        ),
    )
    if producer.flush(60) != 0:
        raise RuntimeError("not every product reached the broker")
