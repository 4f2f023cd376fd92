"""The Kong target's settings and payload: a canonical product plus tenant settings
becomes a Kong SKU; missing or bad settings are named when the tenants file loads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.targets import TARGETS
from services.targets.kong import KongAdapter, KongSettings
from tests.unit.kong_support import PASSWORD, USERNAME, payload, problems_loading, product


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_USER", USERNAME)
    monkeypatch.setenv("K_PASSWORD", PASSWORD)


# -- the payload ----------------------------------------------------------------------


def test_the_adapter_is_registered_as_kong() -> None:
    assert TARGETS["kong"].build is KongAdapter
    assert TARGETS["kong"].settings is KongSettings


def test_a_full_product_becomes_a_kong_sku_with_tenant_settings() -> None:
    body = payload(product(attributes={"color": "AZUL"}), {"type_id": 7, "customer_id": 42})

    assert body == {
        "external_id": "CAM-OXF-001",
        "name": "CAMISA OXFORD MANGA LARGA AZUL",
        "display_name": "Camisa Oxford Azul",
        "reference": "CAM-OXF-001",
        "type_id": 7,
        "customer_id": 42,
        "is_active": True,
        "group_external_id": "10",
        "ean": "7701234000011",
        "properties": {"color": "AZUL", "unit": "UNIT", "weight_kg": 0.35, "volume_m3": 0.002},
    }


@pytest.mark.parametrize(
    ("barcode", "kind", "field"),
    [
        ("7701234000011", "EAN13", "ean"),
        ("96385074", "EAN8", "ean"),
        ("012345678905", "UPC_A", "upc"),
    ],
)
def test_gtins_go_to_ean_or_upc(barcode: str, kind: str, field: str) -> None:
    body = payload(product(barcode=barcode, barcode_type=kind))

    (other,) = {"ean", "upc"} - {field}
    assert body[field] == barcode
    assert other not in body
    assert "barcode" not in body.get("properties", {})


def test_an_other_barcode_is_kept_as_a_property_only() -> None:
    body = payload(product(barcode="ABC-123", barcode_type="OTHER"))

    assert "ean" not in body
    assert "upc" not in body
    assert body["properties"]["barcode"] == "ABC-123"


def test_a_bare_product_falls_back_and_leaves_optional_fields_out() -> None:
    bare = product(
        display_name=None,
        reference=None,
        group_code=None,
        barcode=None,
        barcode_type=None,
        unit=None,
        weight_kg=None,
        volume_m3=None,
        is_active=False,
    )

    body = payload(bare)

    assert body == {
        "external_id": "CAM-OXF-001",
        "name": "CAMISA OXFORD MANGA LARGA AZUL",
        "display_name": "CAMISA OXFORD MANGA LARGA AZUL",
        "reference": "CAM-OXF-001",
        "type_id": 1,
        "customer_id": 100,
        "is_active": False,
    }


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({"customer_id": 100}, ["type_id"]),
        ({"type_id": 1}, ["customer_id"]),
        ({}, ["type_id", "customer_id"]),
        ({"type_id": "1", "customer_id": 100}, ["type_id"]),
        ({"type_id": True, "customer_id": 100}, ["type_id"]),
    ],
)
def test_missing_or_bad_settings_are_config_errors_naming_tenant_and_field(
    settings: dict[str, Any], missing: list[str], tmp_path: Path
) -> None:
    path, problems = problems_loading(tmp_path, settings)  # checked as the file loads

    assert len(problems) == len(missing)
    for problem, name in zip(problems, missing, strict=True):
        assert problem.startswith(f"{path}: tenant acme: target.settings.{name}:")


# -- upserts against the simulator ----------------------------------------------------


@pytest.mark.parametrize(
    ("group_field", "expected"),
    [
        (None, {"group_external_id": "10"}),
        ("group_id", {"group_id": 10}),
        ("none", {}),
    ],
)
def test_the_group_goes_where_the_tenant_says(
    group_field: str | None, expected: dict[str, Any]
) -> None:
    settings: dict[str, Any] = {"type_id": 1, "customer_id": 100}
    if group_field is not None:
        settings["group_field"] = group_field
    body = payload(product(), settings)
    assert {k: v for k, v in body.items() if k.startswith("group")} == expected


def test_an_unknown_group_field_is_a_config_error(tmp_path: Path) -> None:
    _, problems = problems_loading(tmp_path, {"type_id": 1, "customer_id": 100, "group_field": "x"})
    (problem,) = problems
    assert re.search(r"tenant acme: target\.settings\.group_field", problem)


# -- kept ids are hints: an update by one is conditional ---------------------------------
