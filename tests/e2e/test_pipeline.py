"""The whole pipeline: Siesa simulator → extractor → transformer → loader → Kong and WMS
simulators, each a separate process, on the real broker; the big run on its secured
listener, every service as its own principal."""

from __future__ import annotations

import json
from typing import Any

from devtools import procs
from devtools.broker import LocalBroker
from devtools.expected import expected_sku, held_sku, mismatches
from devtools.stack import Stack
from tests.conftest import FIXTURES
from tests.kafka_support import group_lags, secure

COMPANY = 8585
WMS_COMPANY = 8020
GROUPS = (
    "siesa-sync-transformer",
    "siesa-sync-loader",
    "siesa-sync-extractor-commands",
    "siesa-sync-extractor",
)


def wait_for_kong(stack: Stack, want: int, timeout: float) -> list[dict[str, Any]]:
    skus: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal skus
        stack.check_alive()
        skus = stack.kong_skus()
        return len(skus) >= want

    procs.wait_until(enough, timeout=timeout, interval=0.5, what=f"Kong holding {want} SKUs")
    return skus


def assert_kong_holds(skus: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    by_id = {s["external_id"]: held_sku(s) for s in skus}
    assert len(by_id) == len(skus), "Kong holds duplicate external_ids"
    assert sorted(by_id) == sorted(e["external_id"] for e in expected)
    mismatched = [
        (e["external_id"], field, by_id[e["external_id"]].get(field), value)
        for e in expected
        for field, value in e.items()
        if by_id[e["external_id"]].get(field) != value
    ]
    assert not mismatched, f"{len(mismatched)} fields differ, first: {mismatched[:5]}"


def test_golden_page_reaches_kong_verbatim(stack: Stack) -> None:
    page = json.loads((FIXTURES / "siesa-items-page.json").read_text())
    expected = json.loads((FIXTURES / "expected-kong.json").read_text())["skus"]
    stack.tenants = [stack.kong_tenant("golden", COMPANY)]
    stack.start_simulators()
    stack.upsert_items(COMPANY, page["detalle"]["Table"], keep_dates=True)
    stack.create_topics()
    stack.start_services()

    skus = wait_for_kong(stack, len(expected), timeout=120)

    assert_kong_holds(skus, expected)
    names = {s["name"] for s in skus}
    assert 'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML' in names
    assert "TUBO PVC 20x30 #2 - SELECT" in names


def test_1000_items_land_in_kong_and_wms_on_a_secured_cluster_with_lag_0_after(
    stack: Stack, secured_broker: LocalBroker
) -> None:
    """SASL_SSL, SCRAM-SHA-512, every service and the CLI as its own principal with the
    least-privilege ACLs of `siesa-sync acls`; then Kafka's own tool shows lag 0."""
    secure(stack, secured_broker)
    stack.tenants = [stack.kong_tenant("acme", COMPANY), stack.wms_tenant("bodega", WMS_COMPANY)]
    stack.start_simulators()
    stack.seed(COMPANY, 1000, seed=7)
    stack.seed(WMS_COMPANY, 1000, seed=8)
    rows = stack.siesa_items(COMPANY)
    assert len(rows) == 1000
    assert len(stack.siesa_items(WMS_COMPANY)) == 1000
    stack.create_topics()  # as the operator
    stack.start_services()

    skus = wait_for_kong(stack, 1000, timeout=300)

    problems = mismatches("kong", rows, skus)
    assert not problems, f"{len(problems)} differences, first: {problems[:5]}"
    wait_for_wms_to_equal_siesa(stack)
    # A change in Siesa reaches Kong: rename one item, deactivate another.
    renamed, deactivated = dict(rows[10]), dict(rows[20])
    renamed["f120_descripcion"] = 'NUEVO NOMBRE & "COMILLAS" -- 20x30; Drop'
    renamed["f120_descripcion_comercial"] = None
    deactivated["f120_ind_estado"] = 0
    stack.upsert_items(COMPANY, [renamed, deactivated])
    want = {renamed["f120_referencia"].strip(): expected_sku(renamed)}
    want[deactivated["f120_referencia"].strip()] = expected_sku(deactivated)

    def changed() -> bool:
        stack.check_alive()
        now = {s["external_id"]: held_sku(s) for s in stack.kong_skus()}
        return all(all(now[k].get(f) == v for f, v in e.items()) for k, e in want.items())

    procs.wait_until(changed, timeout=120, interval=0.5, what="the two changes in Kong")
    assert len(stack.kong_skus()) == 1000
    # An item deleted in Siesa is inactivated in Kong, never deleted.
    gone = next(r for r in rows[30:] if r["f120_ind_estado"] == 1)["f120_referencia"].strip()
    stack.delete_item(COMPANY, gone)

    def inactivated() -> bool:
        stack.check_alive()
        return {s["external_id"]: s for s in stack.kong_skus()}[gone]["is_active"] is False

    procs.wait_until(inactivated, timeout=120, interval=0.5, what=f"{gone} inactive in Kong")
    assert len(stack.kong_skus()) == 1000
    # The same in the WMS: a rename and a deletion (inactive, never deleted).
    wms_rows = stack.siesa_items(WMS_COMPANY)
    wms_renamed = dict(wms_rows[5])
    wms_renamed["f120_descripcion"] = "PRODUCTO RENOMBRADO EN SIESA"
    stack.upsert_items(WMS_COMPANY, [wms_renamed])
    wms_gone = wms_rows[40]["f120_referencia"].strip()
    stack.delete_item(WMS_COMPANY, wms_gone)
    wait_for_wms_to_equal_siesa(stack, deleted={wms_gone})
    assert len(stack.wms_products()) == 1000
    # Idle now: Kafka's own kafka-consumer-groups shows lag 0 on every partition of every
    # group of the pipeline (the trailing transaction markers are committed past).
    output = wait_for_lag_0(secured_broker, stack.topic_prefix)
    print(f"[lag] kafka-consumer-groups --describe --all-groups (this test's groups):\n{output}")
    # SIGTERM: each service finishes the batch in hand, commits and exits cleanly.
    assert {name: stack.stop(name) for name in ("extractor", "transformer", "loader")} == {
        "extractor": 0,
        "transformer": 0,
        "loader": 0,
    }


def wait_for_wms_to_equal_siesa(stack: Stack, deleted: set[str] | None = None) -> None:
    problems: list[str] = []

    def equal() -> bool:
        nonlocal problems
        stack.check_alive()
        held = stack.wms_products()
        problems = mismatches("wms", stack.siesa_items(WMS_COMPANY), held, deleted or set())
        return not problems

    try:
        procs.wait_until(equal, timeout=300, interval=1.0, what="the WMS holding Siesa's items")
    except TimeoutError:
        raise AssertionError(f"{len(problems)} differences, first: {problems[:5]}") from None


def wait_for_lag_0(broker: LocalBroker, topic_prefix: str) -> str:
    """Until every partition of the three groups shows lag 0; the tool's output."""
    groups = {f"{topic_prefix}{name}" for name in GROUPS}
    output, rows = "", []

    def zero() -> bool:
        nonlocal output, rows
        output, rows = group_lags(broker, topic_prefix)
        return {r.group for r in rows} == groups and all(r.lag == 0 for r in rows)

    try:
        procs.wait_until(zero, timeout=60, interval=2.0, what="lag 0 in kafka-consumer-groups")
    except TimeoutError:
        raise AssertionError(f"lag is not 0 everywhere:\n{output}") from None
    return output
