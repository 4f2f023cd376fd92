"""The loader as real processes against the Kong and WMS simulators, fed through the
real broker: the WMS golden page through the whole pipeline, order under quick
successive changes, a permanent refusal dead-lettered alone, scale-out with a killed
loader."""

from __future__ import annotations

import json
import os
from typing import Any

from devtools import procs
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from tests.conftest import FIXTURES
from tests.e2e.loading import (
    canonical,
    dead_letters,
    feed,
    loader_states,
    wait_for_count,
    wait_until_held,
)

COMPANY = 8020
# The three loaders' backlog: 10,000 products in make test, 20,000 with SIESA_FULL_SIZE=1
# (the kill comes at 4,000 either way, mid-run).
BACKLOG = 20_000 if os.environ.get("SIESA_FULL_SIZE") == "1" else 10_000


def test_golden_page_reaches_wms_verbatim(stack: Stack) -> None:
    page = json.loads((FIXTURES / "siesa-items-page.json").read_text())
    expected = json.loads((FIXTURES / "expected-wms.json").read_text())["products"]
    stack.tenants = [stack.wms_tenant("golden-wms", COMPANY)]
    stack.start_simulators()
    stack.upsert_items(COMPANY, page["detalle"]["Table"], keep_dates=True)
    stack.create_topics()
    stack.start_services()

    held = wait_until_held(
        stack.wms_products, {e["external_id"]: e for e in expected}, stack, timeout=120
    )

    assert sorted(held) == sorted(e["external_id"] for e in expected)
    assert held["TUB-PVC-2030"]["name"] == "TUBO PVC 20x30 #2 - SELECT"
    assert held["CAM-OXF-001"]["properties"]["weigth"] == 0.35  # the WMS's own spelling


def test_the_newest_of_five_quick_changes_wins_for_500_items(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [stack.kong_tenant("order", COMPANY)]
    stack.start_simulators()
    stack.start_loader()
    # Five versions of each of 500 items, interleaved as quick successive changes.
    feed(
        kafka,
        [
            canonical("order", f"IT-{i:03d}", f"ITEM {i} v{v}", is_active=v % 2 == 1)
            for v in range(1, 6)
            for i in range(500)
        ],
    )

    held = wait_until_held(
        stack.kong_skus,
        {f"IT-{i:03d}": {"name": f"ITEM {i} v5", "is_active": True} for i in range(500)},
        stack,
        timeout=180,
    )

    assert len(held) == 500
    assert len(stack.kong_skus()) == 500  # no duplicates


def test_a_permanently_refused_product_alone_goes_to_the_dlq(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [stack.wms_tenant("refuse", COMPANY)]
    stack.start_simulators()
    stack.set_faults(stack.wms_url, reject_external_ids=["P-042"], reject_message="blocked SKU")
    stack.start_loader()
    feed(kafka, [canonical("refuse", f"P-{i:03d}") for i in range(200)])

    wait_for_count(stack, stack.wms_url, "products", 199, timeout=120)

    def one_dead_letter() -> bool:
        stack.check_alive()
        return len(dead_letters(kafka)) >= 1

    procs.wait_until(one_dead_letter, timeout=60, what="the refused product in the DLQ")
    (letter,) = dead_letters(kafka)
    assert letter["key"] == "refuse/P-042"
    headers = letter["headers"]
    assert headers["error.class"] == "target_rejected"
    assert headers["error.stage"] == "load"
    assert headers["tenant"] == "refuse"
    assert "HTTP 400" in headers["error.message"]
    assert "blocked SKU (P-042)" in headers["error.message"]  # the target's own message
    held = {p["external_id"] for p in stack.wms_products()}
    assert held == {f"P-{i:03d}" for i in range(200)} - {"P-042"}
    # Secrets never reach the DLQ headers.
    secrets = (stack.credentials.wms_password, stack.credentials.kong_password)
    assert not any(s in v for s in secrets for v in headers.values())

    def counted() -> bool:
        states = loader_states(kafka, "refuse")
        return sum(s["loaded"] for s in states) >= 199 and sum(s["failed"] for s in states) == 1

    procs.wait_until(counted, timeout=30, what="loaded 199 / failed 1 in sync.state.v1")


def test_three_loaders_share_a_backlog_of_products_and_survive_a_kill(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [stack.kong_tenant("scale", COMPANY)]
    stack.start_simulators()
    for n in (1, 2, 3):
        stack.start_loader(f"loader-{n}", instance_id=f"e2e-{n}")
    products = [canonical("scale", f"S-{i:05d}", f"SCALED {i}") for i in range(BACKLOG)]
    feed(kafka, products)

    wait_for_count(stack, stack.kong_url, "skus", 4_000, timeout=180)
    stack.processes.pop("loader-2").kill()  # kill -9 mid-run
    stack.start_loader("loader-4", instance_id="e2e-4")
    wait_for_count(stack, stack.kong_url, "skus", BACKLOG, timeout=400)

    skus = stack.kong_skus()
    held: dict[str, Any] = {s["external_id"]: s["name"] for s in skus}
    assert len(held) == len(skus) == BACKLOG
    assert held == {p["sku"]: p["name"] for p in products}

    def all_counted() -> bool:
        return sum(s["loaded"] for s in loader_states(kafka, "scale")) >= BACKLOG

    procs.wait_until(all_counted, timeout=60, what="the loaders' counts in sync.state.v1")
    writers = {s["writer"] for s in loader_states(kafka, "scale")}
    assert {"loader-e2e-1", "loader-e2e-3", "loader-e2e-4"} <= writers
