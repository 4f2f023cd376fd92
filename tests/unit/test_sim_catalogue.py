"""The deterministic Siesa item catalogue."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from simulators.catalogue import (
    ITEM_FIELDS,
    ean13_check_digit,
    generate_items,
    gtin_check_digit,
    is_valid_gtin,
)

TRICKY = ("&", '"', "#", "--", ";", "20x30", "SELECT", "UNION", "Drop")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, object]]:
    return generate_items(company=8585, count=2000, seed=42)


def test_known_check_digits() -> None:
    assert ean13_check_digit("770123400001") == 1
    assert gtin_check_digit("01234567890") == 5  # UPC-A 012345678905
    assert gtin_check_digit("9638507") == 4  # EAN-8 96385074
    assert is_valid_gtin("7701234000028")
    assert not is_valid_gtin("7701234000029")
    assert not is_valid_gtin("77012340000")
    with pytest.raises(ValueError, match="12 digits"):
        ean13_check_digit("123")


def test_same_arguments_give_identical_rows(rows: list[dict[str, object]]) -> None:
    assert generate_items(company=8585, count=2000, seed=42) == rows


def test_another_seed_gives_another_catalogue(rows: list[dict[str, object]]) -> None:
    other = generate_items(company=8585, count=2000, seed=43)
    assert [r["f120_descripcion"] for r in other] != [r["f120_descripcion"] for r in rows]
    assert {str(r["f120_referencia"]).strip() for r in other}.isdisjoint(
        str(r["f120_referencia"]).strip() for r in rows
    )


def test_start_rowid_extends_a_catalogue() -> None:
    assert generate_items(1, 10, 5, start_rowid=11) == generate_items(1, 20, 5)[10:]


def test_rows_have_exactly_the_documented_fields(rows: list[dict[str, object]]) -> None:
    for row in rows:
        assert tuple(row) == ITEM_FIELDS
        assert row["f120_id_cia"] == 8585
    assert [r["f120_rowid"] for r in rows] == list(range(1, 2001))


def test_referencias_are_unique_and_sometimes_padded(rows: list[dict[str, object]]) -> None:
    referencias = [str(r["f120_referencia"]) for r in rows]
    trimmed = [ref.rstrip(" ") for ref in referencias]
    assert len(set(trimmed)) == len(rows)
    assert all(re.fullmatch(r"SKU-42-\d{6}", ref) for ref in trimmed)
    padded = sum(ref != ref.rstrip(" ") for ref in referencias)
    assert 0 < padded < len(rows) / 2


def test_barcodes_are_valid_gtins_of_three_kinds(rows: list[dict[str, object]]) -> None:
    codes = [r["f120_codigo_barras"] for r in rows]
    present = [str(c) for c in codes if c is not None]
    assert all(is_valid_gtin(code) for code in present)
    lengths = {len(code) for code in present}
    assert lengths == {8, 12, 13}
    assert sum(len(code) == 13 for code in present) > len(rows) / 2
    assert None in codes


def test_descriptions_are_bounded_and_some_are_tricky(rows: list[dict[str, object]]) -> None:
    names = [str(r["f120_descripcion"]) for r in rows]
    assert all(0 < len(name) <= 200 for name in names)
    tricky = sum(any(t in name for t in TRICKY) for name in names)
    assert 0.05 * len(rows) < tricky < 0.2 * len(rows)
    commercial = [r["f120_descripcion_comercial"] for r in rows]
    assert None in commercial
    assert "" in commercial
    assert any(isinstance(c, str) and c for c in commercial)


def test_other_fields_have_their_types(rows: list[dict[str, object]]) -> None:
    assert {r["f120_ind_estado"] for r in rows} == {0, 1}
    assert sum(r["f120_ind_estado"] == 1 for r in rows) > len(rows) * 0.7
    assert {str(r["f120_unidad_medida"]).strip() for r in rows} == {"UND", "UN", "MT", "KG"}
    assert any(str(r["f120_unidad_medida"]).endswith(" ") for r in rows)
    assert all(isinstance(r["f120_id_grupo"], int) for r in rows)
    for row in rows:
        peso, volumen = row["f120_peso"], row["f120_volumen"]
        assert peso is None or (isinstance(peso, float) and round(peso, 3) == peso)
        assert volumen is None or (isinstance(volumen, float) and round(volumen, 4) == volumen)
        datetime.strptime(str(row["f120_fecha_actualizacion"]), "%Y%m%d%H%M%S")
    assert any(r["f120_peso"] is None for r in rows)
    assert any(r["f120_volumen"] is None for r in rows)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        generate_items(1, -1, 1)
