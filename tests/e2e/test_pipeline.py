"""The whole pipeline: Siesa simulator → extractor → transformer → loader → Kong simulator,
each a separate process, on the real broker."""

from __future__ import annotations

import json
from typing import Any

from devtools import procs
from devtools.expected import expected_sku, held_sku, mismatches
from devtools.stack import Stack
from tests.conftest import FIXTURES

COMPANY = 8585


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


def test_seeded_catalogue_of_1000_items_lands_in_kong_mapped(stack: Stack) -> None:
    stack.tenants = [stack.kong_tenant("acme", COMPANY)]
    stack.start_simulators()
    stack.seed(COMPANY, 1000, seed=7)
    rows = stack.siesa_items(COMPANY)
    assert len(rows) == 1000
    stack.create_topics()
    stack.start_services()

    skus = wait_for_kong(stack, 1000, timeout=300)

    problems = mismatches("kong", rows, skus)
    assert not problems, f"{len(problems)} differences, first: {problems[:5]}"
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
    # SIGTERM: each service finishes the batch in hand, commits and exits cleanly.
    assert {name: stack.stop(name) for name in ("extractor", "transformer", "loader")} == {
        "extractor": 0,
        "transformer": 0,
        "loader": 0,
    }
