"""From a Siesa row to RawItem text: padding trimmed, text verbatim, fingerprints, keys
(services/sources/siesa/rows.py for Siesa's own part, services/extractor/rows.py for the
extractor's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.errors import SkippableError
from services.extractor import rows
from services.extractor.rows import RowError, fingerprint
from services.sources.base import Row
from services.sources.siesa.rows import KEY_FIELD, key, normalize
from tests import ROOT

PAGE = json.loads((ROOT / "tests" / "fixtures" / "siesa-items-page.json").read_text())
ROWS: list[dict[str, Any]] = PAGE["detalle"]["Table"]

TRICKY = [
    'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML',
    "TUBO PVC 20x30 #2 - SELECT",
    "CINTA AISLANTE -- NEGRA; ROLLO 20M",
    "JUEGO Drop & Go PARA NIÑOS",
    "PLATO HONDO 'SELECT' PORCELANA #7",
    'CAMISETA "UNION" ESTAMPADA; DROP TABLE items; --',
    "<b>NEGRITA</b> &amp; &lt;",
]


def row(**fields: Any) -> dict[str, Any]:
    return {**ROWS[0], **fields}


def row_key(normalized: Row, *, tenant: str, max_field_length: int) -> str:
    """The key the extractor takes for a Siesa row (its `f120_referencia`, checked)."""
    return rows.row_key(
        normalized,
        key(normalized),
        key_name=KEY_FIELD,
        tenant=tenant,
        max_field_length=max_field_length,
    )


def test_padding_is_trimmed_and_types_become_text() -> None:
    padded = next(r for r in ROWS if r["f120_referencia"] == "SHP-ACD-400  ")

    out = normalize(padded)

    assert out["f120_referencia"] == "SHP-ACD-400"
    assert out["f120_unidad_medida"] == "UN"
    assert out["f120_id_grupo"] == "20"
    assert out["f120_ind_estado"] == "1"
    assert out["f120_peso"] == "0.45"
    assert out["f120_volumen"] == "0.0004"
    assert out["f120_descripcion"] == 'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML'
    assert set(out) == set(padded)


def test_nulls_stay_null_and_empty_strings_stay_empty() -> None:
    out = normalize({"a": None, "b": "", "c": "   "})

    assert out == {"a": None, "b": "", "c": ""}


def test_only_trailing_spaces_are_padding() -> None:
    out = normalize({"lead": "  X", "tab": "X\t", "inner": "A  B  "})

    assert out == {"lead": "  X", "tab": "X\t", "inner": "A  B"}


def test_booleans_and_nested_values_become_stable_text() -> None:
    out = normalize({"t": True, "f": False, "nested": {"b": 1, "a": "ñ"}})

    assert out == {"t": "1", "f": "0", "nested": '{"a": "ñ", "b": 1}'}


@pytest.mark.parametrize("name", TRICKY)
def test_tricky_names_are_kept_verbatim(name: str) -> None:
    assert normalize(row(f120_descripcion=name))["f120_descripcion"] == name


def test_the_fingerprint_ignores_column_order_and_padding() -> None:
    original = normalize(row())
    reordered = normalize(dict(reversed(list(row().items()))))
    padded = normalize(row(f120_referencia="CAM-OXF-001     ", f120_unidad_medida="UND  "))

    assert fingerprint(original) == fingerprint(reordered) == fingerprint(padded)
    assert fingerprint(original) == fingerprint(normalize(row()))  # stable across calls
    assert len(fingerprint(original)) == 32


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("f120_descripcion", "CAMISA OXFORD MANGA LARGA AZUL."),
        ("f120_descripcion_comercial", None),
        ("f120_descripcion_comercial", ""),
        ("f120_ind_estado", 0),
        ("f120_peso", 0.36),
        ("f120_codigo_barras", "7701234000028"),
        ("f120_nueva_columna", "x"),
    ],
)
def test_the_fingerprint_changes_with_any_value(column: str, value: Any) -> None:
    assert fingerprint(normalize(row(**{column: value}))) != fingerprint(normalize(row()))


def test_null_and_empty_have_different_fingerprints() -> None:
    assert fingerprint({"a": None}) != fingerprint({"a": ""})


def test_the_key_is_the_trimmed_referencia() -> None:
    key = row_key(
        normalize(row(f120_referencia="  SHP-ACD-400  ")), tenant="acme", max_field_length=50
    )

    assert key == "SHP-ACD-400"


@pytest.mark.parametrize("value", [None, "", "    "])
def test_a_row_without_referencia_is_rejected(value: str | None) -> None:
    with pytest.raises(RowError) as caught:
        row_key(normalize(row(f120_referencia=value)), tenant="acme", max_field_length=4000)

    assert isinstance(caught.value, SkippableError)
    assert caught.value.tenant == "acme"
    assert caught.value.error_class == "invalid_row"
    assert KEY_FIELD in caught.value.message


def test_a_row_missing_the_column_is_rejected() -> None:
    raw = {k: v for k, v in row().items() if k != KEY_FIELD}

    with pytest.raises(RowError, match="tenant acme: row has no f120_referencia"):
        row_key(normalize(raw), tenant="acme", max_field_length=4000)


def test_an_over_long_field_is_rejected_with_its_name_and_length() -> None:
    long_name = "X" * 201

    with pytest.raises(RowError) as caught:
        row_key(normalize(row(f120_descripcion=long_name)), tenant="acme", max_field_length=200)

    message = caught.value.message
    assert "item CAM-OXF-001" in message
    assert "f120_descripcion is 201 characters long (limit 200)" in message


def test_a_field_exactly_at_the_limit_is_accepted() -> None:
    normalized = normalize(row(f120_descripcion="X" * 200, f120_descripcion_comercial=None))

    assert row_key(normalized, tenant="acme", max_field_length=200) == "CAM-OXF-001"


def test_padding_does_not_count_towards_the_limit() -> None:
    normalized = normalize(row(f120_referencia="CAM-OXF-001" + " " * 100))

    assert row_key(normalized, tenant="acme", max_field_length=50) == "CAM-OXF-001"
