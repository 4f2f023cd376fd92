"""Golden pages of our own: every conversion and rule kind, a tenant override, and names
that look like code, each page → a committed expected output (products and rejections).

To regenerate after an intended change, the one command is

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_transformer_golden_pages.py

then review `git diff tests/fixtures/golden/`. The facts asserted below each golden
comparison are written out by hand, so a careless regeneration can't bless a wrong one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from services.cli.mappings import page_rows, raw_items
from services.common.secrets import RESOLVE
from services.sources.siesa.settings import SiesaSettings
from services.sources.siesa.source import SiesaSource
from services.transformer.compiler import compile_mapping
from services.transformer.preview import Outcome, preview
from tests import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "golden"
TENANT = "golden"
PER_RUN = ("sync_id", "trace_id")
# Reads the pages given, sends nothing: its credentials are references never read.
SOURCE = SiesaSource(
    SiesaSettings.model_validate(
        {
            "base_url": "http://siesa.test",
            "company": 1,
            "conni_key": {"env": "UNSET_CONNI_KEY"},
            "conni_token": {"env": "UNSET_CONNI_TOKEN"},
        },
        context={RESOLVE: ()},
    ),
    tenant=TENANT,
)
REGENERATE = "UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_transformer_golden_pages.py"

CASES = {
    "conversions-base": ("conversions-page.json", FIXTURES / "mappings" / "golden-base.yaml"),
    "conversions-tenant": ("conversions-page.json", FIXTURES / "mappings" / "golden-tenant.yaml"),
    "names-default": ("names-page.json", ROOT / "mappings" / "siesa-items.yaml"),
}


def page(name: str) -> list[dict[str, Any]]:
    return page_rows(json.loads((GOLDEN / name).read_text()))


def run(case: str) -> Outcome:
    page_file, mapping_file = CASES[case]
    items, rejected = raw_items(page(page_file), TENANT, SOURCE, "siesa")
    outcome = preview(items, compile_mapping(mapping_file))
    outcome.rejections[:0] = rejected
    return outcome


def golden_text(case: str, outcome: Outcome) -> str:
    document = {
        "_comment": f"{CASES[case][0]} through {CASES[case][1].name}; sync_id/trace_id left "
        f"out. Regenerate: {REGENERATE}",
        "products": [{k: v for k, v in p.items() if k not in PER_RUN} for p in outcome.products],
        "rejections": outcome.rejections,
    }
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def expected_file(case: str) -> Path:
    return GOLDEN / f"{case}.expected.json"


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_page_maps_to_its_golden_file(case: str) -> None:
    text = golden_text(case, run(case))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        expected_file(case).write_text(text)

    assert expected_file(case).read_text() == text


def by_sku(outcome: Outcome) -> dict[str, dict[str, Any]]:
    return {p["sku"]: p for p in outcome.products}


def reasons(outcome: Outcome) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in outcome.rejections}


def test_every_conversion_gives_what_it_should() -> None:
    outcome = run("conversions-base")
    got = by_sku(outcome)

    comma, point = got["DEC-COMMA-01"], got["DEC-POINT-02"]
    assert comma["weight_kg"] == pytest.approx(1.23456)  # "1.234,56" g
    assert comma["volume_m3"] == 0.5  # "0,5"
    assert point["weight_kg"] == pytest.approx(1.2345)  # "1,234.5" g
    # booleans: 1/S/SI/true are true, 0/N/NO/false false; no value takes the default
    assert [got[s]["is_active"] for s in ("DEC-COMMA-01", "DEC-POINT-02", "BOOL-SI-03")] == [
        True,
        True,
        True,
    ]
    assert got["BOOL-TRUE-04"]["is_active"] is True
    assert got["BOOL-ZERO-05"]["is_active"] is False
    assert got["LOOKUP-07"]["is_active"] is True
    assert [got[s]["attributes"]["imported"] for s in ("BOOL-SI-03", "BOOL-TRUE-04")] == [
        "false",
        "false",
    ]
    assert got["BOOL-ZERO-05"]["attributes"]["imported"] == "true"
    # dates: YYYYMMDDHHMMSS, YYYYMMDD and ISO
    assert comma["attributes"]["updated_at"] == "2026-11-20T09:30:00"
    assert comma["attributes"]["created_on"] == "2024-01-01"
    assert point["attributes"]["updated_at"] == "2026-11-20T10:20:30"
    assert point["attributes"]["created_on"] == "2024-02-29"
    # barcodes by length and check digit; a non-digit one fails its pattern and is dropped
    assert (comma["barcode"], comma["barcode_type"]) == ("7701234000011", "EAN13")
    assert (point["barcode"], point["barcode_type"]) == ("96385074", "EAN8")
    assert got["BOOL-SI-03"]["barcode_type"] == "UPC_A"
    assert got["BOOL-TRUE-04"]["barcode_type"] == "OTHER"  # 13 digits, wrong check digit
    assert (got["BOOL-ZERO-05"]["barcode"], got["BOOL-ZERO-05"]["barcode_type"]) == (
        None,
        "OTHER",
    )
    # text steps and lookups
    assert got["NAMES-06"]["name"] == 'TUBO PVC 20x30 #2 -- SELECT; Drop & "COMILLAS"'
    assert got["NAMES-06"]["display_name"] == got["NAMES-06"]["name"]  # blank → fallback
    assert (comma["unit"], point["unit"], got["BOOL-SI-03"]["unit"]) == ("UNIT", "UNIT", "METER")
    assert got["LOOKUP-07"]["unit"] == "CAJA"  # not in the table: kept
    assert (comma["group_code"], got["NAMES-06"]["group_code"]) == ("ROPA", "ASEO")
    assert got["LOOKUP-07"]["group_code"] == "99"
    assert got["DEFAULTS-08"]["group_code"] == "SIN-GRUPO"
    # integers, constants, RawItem fields, expressions, custom:* passthrough
    assert got["LOOKUP-07"]["attributes"]["units_per_box"] == "1000"
    assert comma["attributes"]["origin"] == "siesa"
    assert comma["attributes"]["company"] == "preview"
    assert comma["attributes"]["label"] == "DEC-COMMA-01 / und"
    assert comma["attributes"]["color"] == "azul"
    assert "ext_talla" not in comma["attributes"]
    assert comma["reference"] == "DEC-COMMA-01"  # from @key
    assert "updated_at" not in got["DEFAULTS-08"]["attributes"]
    assert all(p["mapping_name"] == "golden-base" for p in outcome.products)


def test_each_rejection_names_the_field_and_the_value() -> None:
    got = reasons(run("conversions-base"))

    assert set(got) == {
        "bad ref!",
        "REJ-NUM-10",
        "REJ-DATE-11",
        "REJ-BOOL-12",
        "REJ-NAME-13",
        "REJ-INT-14",
    }
    assert "field sku: f120_referencia='BAD REF!': does not match" in got["bad ref!"]
    assert "field weight_kg: f120_peso_g='12,3,4': not a number" in got["REJ-NUM-10"]
    assert (
        "field attributes.updated_at: f120_fecha_actualizacion='20261345000000'"
        in (got["REJ-DATE-11"])
    )
    assert "field is_active: f120_ind_estado='maybe': not a boolean" in got["REJ-BOOL-12"]
    assert "field name: required" in got["REJ-NAME-13"]
    assert "field attributes.units_per_box: f120_cant_empaque='2,5'" in got["REJ-INT-14"]
    assert all(r.startswith(f"tenant {TENANT}: item ") for r in got.values())
    assert all(r.endswith("[mapping golden-base@1]") for r in got.values())


def test_a_tenant_override_replaces_only_what_it_names() -> None:
    base, tenant = by_sku(run("conversions-base")), by_sku(run("conversions-tenant"))

    assert sorted(base) == sorted(tenant)
    comma = tenant["DEC-COMMA-01"]
    assert comma["mapping_version"] == "3+golden-base@1"
    assert (comma["unit"], tenant["BOOL-SI-03"]["unit"]) == ("unidad", "metro")
    assert comma["volume_m3"] is None  # removed by the override
    assert tenant["LOOKUP-07"]["is_active"] is False  # its default
    assert comma["attributes"]["ext_talla"] == "M"
    assert "color" not in comma["attributes"]
    unchanged = ("name", "display_name", "weight_kg", "barcode", "barcode_type", "group_code")
    for sku, product in base.items():
        assert {f: product[f] for f in unchanged} == {f: tenant[sku][f] for f in unchanged}


def test_names_that_look_like_code_come_out_unchanged() -> None:
    source = {r["f120_referencia"]: r for r in page("names-page.json")}
    outcome = run("names-default")

    assert outcome.rejections == []
    assert len(outcome.products) == len(source)
    for product in outcome.products:
        row = source[product["sku"]]
        assert product["name"] == row["f120_descripcion"]
        assert product["display_name"] == (
            row["f120_descripcion_comercial"] or row["f120_descripcion"]
        )
