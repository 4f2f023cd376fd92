"""`siesa-sync mappings check` and `mappings preview`, as an operator runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from services.cli import main
from tests import ROOT
from tests.unit.fakes import tenant_config

PAGE = ROOT / "tests" / "fixtures" / "siesa-items-page.json"
CONVERSIONS = ROOT / "tests" / "fixtures" / "golden" / "conversions-page.json"


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "tests" / "fixtures" / "mappings", mappings)
    shutil.copy(ROOT / "mappings" / "siesa-items.yaml", mappings)
    tenants = tmp_path / "tenants.yaml"
    # Whole tenant entries, as the services read them; no credential is ever read.
    tenants.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    tenant_config("acme"),
                    {**tenant_config("globex"), "mapping": "golden-tenant"},
                ]
            }
        )
    )
    monkeypatch.setenv("TRANSFORMER_TENANTS_FILE", str(tenants))
    monkeypatch.setenv("TRANSFORMER_MAPPINGS_DIR", str(mappings))
    return mappings


def test_check_lists_every_valid_mapping(setup: Path) -> None:
    result = CliRunner().invoke(main, ["mappings", "check"])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "ok  golden-base: golden-base@1, 11 fields",
        "ok  golden-tenant: golden-tenant@3+golden-base@1, 10 fields",
        "ok  siesa-items: siesa-items@2, 11 fields",
    ]


def test_check_exits_2_listing_every_problem_with_file_and_field(setup: Path) -> None:
    (setup / "bad.yaml").write_text(
        "fields:\n  sku: {source: a, convert: kilos}\n  colour: {source: c}\n"
    )

    result = CliRunner().invoke(main, ["mappings", "check"])

    assert result.exit_code == 2
    assert f"{setup / 'bad.yaml'}: field sku: convert: 'kilos'" in result.output
    assert f"{setup / 'bad.yaml'}: field colour: not a CanonicalProduct field" in result.output
    assert f"{setup / 'bad.yaml'}: field name: missing" in result.output


def test_preview_prints_the_products_as_a_table(setup: Path) -> None:
    result = CliRunner().invoke(main, ["mappings", "preview", "--tenant", "acme", str(PAGE)])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "tenant acme, mapping siesa-items@2"
    assert lines[1].split() == [
        "sku",
        "name",
        "display_name",
        "unit",
        "barcode",
        "barcode_type",
        "is_active",
        "attributes",
    ]
    assert any(
        line.startswith("TUB-PVC-2030") and "TUBO PVC 20x30 #2 - SELECT" in line for line in lines
    )
    assert lines[-1] == "4 products, 0 rejected"


def test_preview_json_gives_products_and_rejections_with_reasons(setup: Path) -> None:
    result = CliRunner().invoke(
        main, ["mappings", "preview", "--tenant", "globex", "--json", str(CONVERSIONS)]
    )

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["mapping"] == {"name": "golden-tenant", "version": "3+golden-base@1"}
    assert len(document["products"]) == 8
    assert {r["key"] for r in document["rejections"]} >= {"REJ-NUM-10", "bad ref!"}
    reasons = {r["key"]: r["reason"] for r in document["rejections"]}
    assert "field weight_kg: f120_peso_g='12,3,4': not a number" in reasons["REJ-NUM-10"]


def test_preview_takes_a_plain_list_of_rows_and_rejects_a_row_without_key(
    setup: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([{"f120_referencia": "A-1", "f120_descripcion": "X"}, {}]))

    result = CliRunner().invoke(
        main, ["mappings", "preview", "--tenant", "acme", "--json", str(rows)]
    )

    document = json.loads(result.output)
    assert [p["sku"] for p in document["products"]] == ["A-1"]
    assert document["rejections"][0]["key"] == "row 2"
    assert "no f120_referencia" in document["rejections"][0]["reason"]


def test_preview_of_an_unknown_tenant_names_the_known_ones(setup: Path) -> None:
    result = CliRunner().invoke(main, ["mappings", "preview", "--tenant", "nobody", str(PAGE)])

    assert result.exit_code == 1
    assert "tenant 'nobody' is not in" in result.output
    assert "acme, globex" in result.output
