"""W3C trace context end to end (issue 16): each product read from Siesa is one trace,
and its trace id is the same in the RawItem (value and headers), the canonical record,
the `traceparent` of the target call the Kong simulator logged, and, for a product
whose mapping fails, its dead letter's headers and the transformer's log line about it.
Real processes, the real broker, real Avro."""

from __future__ import annotations

import json
from typing import Any

import httpx

from devtools import procs
from devtools.stack import Stack
from services.common import topics, tracing
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from simulators.catalogue import generate_items
from tests.e2e.extractor_support import Record, read_topic
from tests.e2e.loading import dead_letters

COMPANY = 8585
SERDE = default_serde()


def requests_of(url: str, trace_id: str | None = None) -> list[dict[str, Any]]:
    """A simulator's request log (`GET /_admin/requests`), those of one trace if given."""
    params = {"trace_id": trace_id} if trace_id is not None else {}
    response = httpx.get(f"{url}/_admin/requests", params=params, timeout=30)
    response.raise_for_status()
    logged: list[dict[str, Any]] = response.json()
    return logged


def by_key(records: list[Record]) -> dict[str, Record]:
    return {(r.key or b"").decode(): r for r in records}


def trace_id_in(record: Record) -> str:
    """The trace id a record's `traceparent` header names; its `trace_id` header agrees."""
    parent = tracing.parse(record.headers[tracing.TRACEPARENT])
    assert parent is not None, record.headers
    assert record.headers[tracing.TRACE_ID].decode() == parent.trace_id
    return parent.trace_id


def test_a_products_trace_id_is_the_same_from_the_siesa_read_to_kong_and_the_dlq(
    stack: Stack, kafka: KafkaSettings
) -> None:
    good = generate_items(COMPANY, 3, seed=31)
    nameless = {**generate_items(COMPANY, 1, seed=32, start_rowid=4)[0], "f120_descripcion": " "}
    stack.tenants = [stack.kong_tenant("acme", COMPANY)]
    stack.start_simulators()
    stack.upsert_items(COMPANY, [*good, nameless])
    stack.create_topics()
    stack.start_services()
    good_keys = [f"acme/{row['f120_referencia'].strip()}" for row in good]
    bad_key = f"acme/{nameless['f120_referencia'].strip()}"

    letters: dict[str, dict[str, str]] = {}

    def arrived() -> bool:
        stack.check_alive()
        letters.update({d["key"]: d["headers"] for d in dead_letters(kafka)})
        return len(stack.kong_skus()) == len(good) and bad_key in letters

    procs.wait_until(arrived, timeout=120, interval=0.5, what="3 in Kong, 1 dead letter")

    raw = by_key(read_topic(kafka, topics.RAW))
    canonical = by_key(read_topic(kafka, topics.CANONICAL))
    assert sorted(raw) == sorted([*good_keys, bad_key])
    assert sorted(canonical) == sorted(good_keys)
    traces: dict[str, str] = {}
    for key, record in raw.items():
        trace_id = trace_id_in(record)
        assert tracing.is_trace_id(trace_id)
        assert SERDE.decode_as("RawItem", record.value)["trace_id"] == trace_id
        traces[key] = trace_id
    assert len(set(traces.values())) == len(raw), "each product read is a trace of its own"

    for key in good_keys:
        trace_id = traces[key]
        record = canonical[key]
        assert trace_id_in(record) == trace_id
        assert SERDE.decode_as("CanonicalProduct", record.value)["trace_id"] == trace_id
        # Each step is a span of its own: the transformer's is not the extractor's.
        assert record.headers[tracing.TRACEPARENT] != raw[key].headers[tracing.TRACEPARENT]
        calls = requests_of(stack.kong_url, trace_id)
        writes = [c for c in calls if c["route"].startswith("/inventory/skus/")]
        assert writes, f"no Kong call of {key}'s trace: {calls}"
        assert all(c["status"] < 300 for c in writes), writes
        assert all(c["traceparent"].startswith(f"00-{trace_id}-") for c in calls)

    letter = letters[bad_key]
    assert letter["error.class"] == "mapping"
    assert letter[tracing.TRACE_ID] == traces[bad_key]
    parent = tracing.parse(letter[tracing.TRACEPARENT])
    assert parent is not None
    assert parent.trace_id == traces[bad_key]
    assert requests_of(stack.kong_url, traces[bad_key]) == []

    # The transformer's JSON log line about the dead letter names the product's trace.
    log = stack.processes["transformer"].log_path.read_text().splitlines()
    lines = [json.loads(line) for line in log if line.startswith("{")]
    said = [line for line in lines if line["message"].startswith("dead-lettered")]
    assert [(line["tenant"], line["trace_id"]) for line in said] == [("acme", traces[bad_key])]

    # The scan's page requests to Siesa carry the scan's trace: its id is the sync id.
    sync_id = SERDE.decode_as("RawItem", raw[bad_key].value)["sync_id"]
    pages = [r for r in requests_of(stack.siesa_url) if r["route"].startswith("/api/")]
    assert pages, "no Siesa request logged"
    assert {r["trace_id"] for r in pages} >= {sync_id}
