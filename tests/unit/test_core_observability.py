"""What the services tell the tools operators run: log lines that say which tenant and
record they are about, and the freshness of each confirmed change."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from services.common.logs import configure_logging
from services.common.metrics import observe_freshness
from services.common.runloop import per_record
from tests.unit.fakes import FakeMessage


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("INFO")
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)  # the configured handler, writing here instead of stderr
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_line_logged_while_handling_a_record_names_tenant_and_coordinates(
    json_logs: io.StringIO,
) -> None:
    def handle(msg: object) -> list[object]:
        logging.getLogger("services.test").info("mapping it")
        return []

    msg = FakeMessage(_topic="raw", _partition=3, _offset=41, _key=b"acme/REF-1")
    per_record(handle)([msg])  # type: ignore[arg-type]
    logging.getLogger("services.test").info("between records")

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    inside = next(line for line in lines if line["message"] == "mapping it")
    assert (inside["tenant"], inside["topic"], inside["partition"], inside["offset"]) == (
        "acme",
        "raw",
        3,
        41,
    )
    outside = next(line for line in lines if line["message"] == "between records")
    assert "tenant" not in outside
    assert "offset" not in outside


def freshness(tenant: str) -> tuple[float, float]:
    count = REGISTRY.get_sample_value("siesa_sync_freshness_seconds_count", {"tenant": tenant})
    total = REGISTRY.get_sample_value("siesa_sync_freshness_seconds_sum", {"tenant": tenant})
    return count or 0.0, total or 0.0


def test_freshness_counts_confirmed_changes_from_when_the_extractor_saw_them() -> None:
    seen_ms = 1_700_000_000_000
    fresh = FakeMessage(_headers=[("extracted_at", str(seen_ms).encode())])
    replayed = FakeMessage(_headers=[("extracted_at", str(seen_ms).encode()), ("replay", b"r1")])
    redriven = FakeMessage(_headers=[("redriven.from", b"dlq/0/7")])
    unmarked = FakeMessage(_headers=[])

    observe_freshness(fresh, "fresh-tenant", now=seen_ms / 1000 + 2.5)
    for msg in (replayed, redriven, unmarked):
        observe_freshness(msg, "fresh-tenant", now=seen_ms / 1000 + 900)

    assert freshness("fresh-tenant") == (1.0, 2.5)
    bucket = REGISTRY.get_sample_value(
        "siesa_sync_freshness_seconds_bucket", {"tenant": "fresh-tenant", "le": "4.0"}
    )
    assert bucket == 1.0
