"""What a target must hold for a Siesa catalogue, written out independently of the
mapping (the `siesa-items` mapping's rules, by hand), and the check "target == source".

The e2e tests, the fault tests, the soak and the benchmarks use it alike.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

KONG_SETTINGS = {"type_id": 1, "customer_id": 100}
UNITS = {"UND": "UNIT", "UN": "UNIT"}


def _common(row: dict[str, Any]) -> dict[str, Any]:
    name = row["f120_descripcion"].rstrip(" ")
    commercial = (row["f120_descripcion_comercial"] or "").strip()
    unit = row["f120_unidad_medida"].strip()
    return {
        "referencia": row["f120_referencia"].strip(),
        "name": name,
        "display_name": commercial or name,
        "active": row["f120_ind_estado"] == 1,
        "barcode": row["f120_codigo_barras"],
        "unit": UNITS.get(unit, unit),
    }


def expected_sku(row: dict[str, Any]) -> dict[str, Any]:
    """What Kong must hold for one Siesa row."""
    c = _common(row)
    barcode = c["barcode"]
    return {
        "external_id": c["referencia"],
        "name": c["name"],
        "display_name": c["display_name"],
        "reference": c["referencia"],
        "group_external_id": str(row["f120_id_grupo"]),
        "is_active": c["active"],
        "ean": barcode if barcode and len(barcode) in (8, 13) else None,
        "upc": barcode if barcode and len(barcode) == 12 else None,
        "unit": c["unit"],
        "weight_kg": row["f120_peso"],
        "volume_m3": row["f120_volumen"],
        **KONG_SETTINGS,
    }


def expected_wms_product(row: dict[str, Any]) -> dict[str, Any]:
    """What the WMS must hold for one Siesa row (the fields every row decides)."""
    c = _common(row)
    return {
        "external_id": c["referencia"],
        "name": c["name"],
        "display_name": c["display_name"],
        "reference_id": c["referencia"],
        "status": "ACTIVE" if c["active"] else "INACTIVE",
        "inventory_unit": c["unit"],
        "barcode": c["barcode"] or None,
    }


def held_sku(sku: dict[str, Any]) -> dict[str, Any]:
    """A stored Kong SKU, its properties flattened, for comparison with `expected_sku`."""
    properties = sku.get("properties") or {}
    return {**sku, **{k: properties.get(k) for k in ("unit", "weight_kg", "volume_m3")}}


def mismatches(
    target: str,
    rows: list[dict[str, Any]],
    held: list[dict[str, Any]],
    deleted: Collection[str] = (),
) -> list[str]:
    """Why `held` (what target `kong`|`wms` holds) is not exactly the Siesa catalogue
    `rows`, plus the items `deleted` from it (which must be held inactive); [] if it is.
    Each reason names the external id and field."""
    expect, flatten, inactive = (
        (expected_sku, held_sku, ("is_active", False))
        if target == "kong"
        else (expected_wms_product, dict, ("status", "INACTIVE"))
    )
    deleted = set(deleted)
    by_id: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for item in held:
        if item["external_id"] in by_id:
            problems.append(f"{item['external_id']}: held twice")
        by_id[item["external_id"]] = flatten(item)
    wanted = {e["external_id"]: e for e in map(expect, rows)}
    for external_id in sorted(set(wanted) - set(by_id)):
        problems.append(f"{external_id}: missing")
    for external_id in sorted(set(by_id) - set(wanted) - deleted):
        problems.append(f"{external_id}: held but not in Siesa")
    for external_id in sorted(deleted - set(wanted)):
        field, value = inactive
        got = by_id.get(external_id, {}).get(field, "missing")
        if got != value:
            problems.append(f"{external_id}: deleted in Siesa but {field} is {got!r}")
    for external_id, expected in wanted.items():
        got_item = by_id.get(external_id)
        if got_item is None:
            continue
        problems.extend(
            f"{external_id}: {field} is {got_item.get(field)!r}, Siesa says {value!r}"
            for field, value in expected.items()
            if got_item.get(field) != value
        )
    return problems
