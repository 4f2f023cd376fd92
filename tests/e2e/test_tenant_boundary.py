"""The trust boundary between tenants, end to end: a record whose key names one tenant and
whose value names another is dead-lettered (`tenant_mismatch`) by whichever stage reads
it, and reaches neither tenant's target, while both tenants' real items flow."""

from __future__ import annotations

import uuid

from devtools import procs
from devtools.canonical import canonical
from devtools.expected import mismatches
from devtools.stack import Stack
from services.common import topics
from services.common.kafka import make_producer, produce_all
from services.common.records import OutRecord
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.ops.dlq import dead_letters
from simulators.catalogue import generate_items

KONG_COMPANY = 8585
WMS_COMPANY = 8020


def forged_raw(tenant: str, item: str) -> dict[str, object]:
    """A RawItem of `tenant` as the extractor writes it (from a real catalogue row)."""
    row = {k: None if v is None else str(v) for k, v in generate_items(1, 1, 5)[0].items()}
    row["f120_referencia"] = item
    return {
        "tenant": tenant,
        "source_system": "siesa",
        "company": "8585",
        "consulta": "API_v2_Items",
        "key": item,
        "row": row,
        "fingerprint": "forged",
        "op": "UPSERT",
        "sync_id": "forged",
        "extracted_at": 1_700_000_000_000,
        "trace_id": uuid.uuid4().hex,
    }


def test_records_whose_key_and_value_name_different_tenants_reach_no_target(
    stack: Stack,
) -> None:
    stack.tenants = [
        stack.kong_tenant("acme", KONG_COMPANY),
        stack.wms_tenant("bodega", WMS_COMPANY),
    ]
    stack.start_simulators()
    stack.seed(KONG_COMPANY, 20, seed=21)
    stack.seed(WMS_COMPANY, 20, seed=22)
    stack.create_topics()
    stack.start_services()
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    serde = default_serde()
    # Anyone who can write the topics: a canonical record keyed to acme (Kong) whose
    # value says bodega (WMS), and a raw one keyed to bodega whose value says acme.
    forged = [
        OutRecord(
            kafka.topic(topics.CANONICAL),
            b"acme/FORGED-CANONICAL",
            serde.encode("CanonicalProduct", canonical("bodega", "FORGED-CANONICAL")),
        ),
        OutRecord(
            kafka.topic(topics.RAW),
            b"bodega/FORGED-RAW",
            serde.encode("RawItem", forged_raw("acme", "FORGED-RAW")),
        ),
    ]
    producer = make_producer(kafka)
    produce_all(producer, forged)
    assert producer.flush(30) == 0

    def dead_lettered() -> dict[bytes | None, tuple[str, str]]:
        stack.check_alive()
        return {d.key: (d.stage, d.error_class) for d in dead_letters(kafka)}

    procs.wait_until(
        lambda: len(dead_lettered()) == 2, timeout=120, interval=1.0, what="two dead letters"
    )
    assert dead_lettered() == {
        b"acme/FORGED-CANONICAL": ("load", "tenant_mismatch"),
        b"bodega/FORGED-RAW": ("transform", "tenant_mismatch"),
    }

    def synced() -> bool:
        stack.check_alive()
        return not any(
            mismatches(target, stack.siesa_items(company), stack.held(target))
            for target, company in (("kong", KONG_COMPANY), ("wms", WMS_COMPANY))
        )

    procs.wait_until(synced, timeout=120, interval=1.0, what="both targets == Siesa")
    held = {item["external_id"] for target in ("kong", "wms") for item in stack.held(target)}
    assert not {"FORGED-CANONICAL", "FORGED-RAW"} & held
