"""The whole pipeline: Siesa simulator → extractor → transformer → loader → Kong simulator,
each a separate process, on the real broker."""

from __future__ import annotations

import json
from typing import Any

from devtools import procs
from devtools.stack import Stack
from tests.conftest import FIXTURES

COMPANY = 8585
KONG_SETTINGS = {"type_id": 1, "customer_id": 100}


def wait_for_kong(stack: Stack, want: int, timeout: float) -> list[dict[str, Any]]:
    skus: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal skus
        stack.check_alive()
        skus = stack.kong_skus()
        return len(skus) >= want

    procs.wait_until(enough, timeout=timeout, interval=0.5, what=f"Kong holding {want} SKUs")
    return skus


def expected_sku(row: dict[str, Any]) -> dict[str, Any]:
    """What Kong must hold for one Siesa row, written out independently of the mapping."""
    name = row["f120_descripcion"].rstrip(" ")
    commercial = (row["f120_descripcion_comercial"] or "").strip()
    referencia = row["f120_referencia"].strip()
    barcode = row["f120_codigo_barras"]
    unit = row["f120_unidad_medida"].strip()
    return {
        "external_id": referencia,
        "name": name,
        "display_name": commercial or name,
        "reference": referencia,
        "group_external_id": str(row["f120_id_grupo"]),
        "is_active": row["f120_ind_estado"] == 1,
        "ean": barcode if barcode and len(barcode) in (8, 13) else None,
        "upc": barcode if barcode and len(barcode) == 12 else None,
        "unit": {"UND": "UNIT", "UN": "UNIT"}.get(unit, unit),
        "weight_kg": row["f120_peso"],
        "volume_m3": row["f120_volumen"],
        **KONG_SETTINGS,
    }


def held(sku: dict[str, Any]) -> dict[str, Any]:
    """A stored Kong SKU, its properties flattened, for comparison with `expected_sku`."""
    properties = sku.get("properties") or {}
    return {**sku, **{k: properties.get(k) for k in ("unit", "weight_kg", "volume_m3")}}


def assert_kong_holds(skus: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    by_id = {s["external_id"]: held(s) for s in skus}
    assert len(by_id) == len(skus), "Kong holds duplicate external_ids"
    assert sorted(by_id) == sorted(e["external_id"] for e in expected)
    mismatches = [
        (e["external_id"], field, by_id[e["external_id"]].get(field), value)
        for e in expected
        for field, value in e.items()
        if by_id[e["external_id"]].get(field) != value
    ]
    assert not mismatches, f"{len(mismatches)} fields differ, first: {mismatches[:5]}"


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

    assert_kong_holds(skus, [expected_sku(r) for r in rows])
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
        now = {s["external_id"]: held(s) for s in stack.kong_skus()}
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
