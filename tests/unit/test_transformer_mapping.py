"""Mappings: the default file, compile errors all at once, conversions, fallbacks."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import ConfigError, SkippableError
from services.sources.siesa.rows import normalize
from services.transformer.compiler import compile_mapping, default_shapes, load_mappings
from services.transformer.convert import barcode_type, to_boolean, to_decimal, to_integer
from services.transformer.mapping import Mapping, MappingError
from tests import ROOT

MAPPINGS = ROOT / "mappings"


def gtin(body: str) -> str:
    """`body` plus its GS1 check digit, computed here independently."""
    weights = [3 if i % 2 == 0 else 1 for i in range(len(body))]
    total = sum(int(d) * w for d, w in zip(reversed(body), weights, strict=True))
    return body + str((10 - total % 10) % 10)


@pytest.fixture(scope="module")
def default() -> Mapping:
    return compile_mapping(MAPPINGS / "siesa-items.yaml")


def siesa_row(**fields: Any) -> dict[str, str | None]:
    base: dict[str, Any] = {
        "f120_referencia": "CAM-OXF-001",
        "f120_descripcion": "CAMISA OXFORD MANGA LARGA AZUL",
        "f120_descripcion_comercial": "Camisa Oxford Azul",
        "f120_id_grupo": 10,
        "f120_codigo_barras": "7701234000011",
        "f120_unidad_medida": "UND",
        "f120_ind_estado": 1,
        "f120_peso": 0.35,
        "f120_volumen": 0.002,
    }
    return normalize({**base, **fields})


def write(tmp_path: Path, text: str, name: str = "custom") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# -- the default mapping --------------------------------------------------------------


def test_the_default_mapping_compiles_with_its_name_and_version(default: Mapping) -> None:
    assert (default.name, default.version) == ("siesa-items", "2")
    assert {rule.target for rule in default.rules} <= set(default_shapes().targets)
    assert {"sku", "name", "display_name", "barcode_type", "is_active"} <= {
        rule.target for rule in default.rules
    }


def test_the_default_mapping_maps_a_full_row(default: Mapping) -> None:
    assert default.apply(siesa_row(), item="CAM-OXF-001") == {
        "sku": "CAM-OXF-001",
        "name": "CAMISA OXFORD MANGA LARGA AZUL",
        "display_name": "Camisa Oxford Azul",
        "reference": "CAM-OXF-001",
        "group_code": "10",
        "barcode": "7701234000011",
        "barcode_type": "EAN13",
        "unit": "UNIT",
        "is_active": True,
        "weight_kg": 0.35,
        "volume_m3": 0.002,
        "attributes": {},
    }


@pytest.mark.parametrize("commercial", [None, "", "   "])
def test_display_name_falls_back_to_the_name(default: Mapping, commercial: str | None) -> None:
    mapped = default.apply(siesa_row(f120_descripcion_comercial=commercial), item="x")

    assert mapped["display_name"] == "CAMISA OXFORD MANGA LARGA AZUL"


@pytest.mark.parametrize(
    "name",
    [
        'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML',
        "TUBO PVC 20x30 #2 - SELECT",
        "CINTA AISLANTE -- NEGRA; ROLLO 20M",
        "JUEGO Drop & Go PARA NIÑOS",
        "SELECT * FROM items; DROP TABLE items; --",
        'UNION PVC 1/2" PRESION & SOLDADURA',
    ],
)
def test_names_are_data_and_pass_unchanged(default: Mapping, name: str) -> None:
    mapped = default.apply(
        siesa_row(f120_descripcion=name, f120_descripcion_comercial=name), item="x"
    )

    assert mapped["name"] == name
    assert mapped["display_name"] == name


@pytest.mark.parametrize(
    ("unit", "expected"),
    [("UND", "UNIT"), ("UN   ", "UNIT"), ("und", "UNIT"), ("MT", "MT"), ("kg", "KG")],
)
def test_units_are_upper_cased_and_looked_up(default: Mapping, unit: str, expected: str) -> None:
    assert default.apply(siesa_row(f120_unidad_medida=unit), item="x")["unit"] == expected


def test_null_optionals_map_to_none_and_is_active_defaults_to_true(default: Mapping) -> None:
    mapped = default.apply(
        siesa_row(
            f120_codigo_barras=None,
            f120_peso=None,
            f120_volumen=None,
            f120_ind_estado=None,
            f120_unidad_medida="   ",
        ),
        item="x",
    )

    assert mapped["barcode"] is None
    assert mapped["barcode_type"] is None
    assert mapped["weight_kg"] is None
    assert mapped["volume_m3"] is None
    assert mapped["unit"] is None
    assert mapped["is_active"] is True


def test_an_inactive_item_is_inactive(default: Mapping) -> None:
    assert default.apply(siesa_row(f120_ind_estado=0), item="x")["is_active"] is False


@pytest.mark.parametrize("column", ["f120_referencia", "f120_descripcion"])
def test_a_missing_required_field_is_a_mapping_error(default: Mapping, column: str) -> None:
    with pytest.raises(MappingError) as caught:
        default.apply(siesa_row(**{column: "  "}), item="CAM-OXF-001")

    assert isinstance(caught.value, SkippableError)
    assert caught.value.error_class == "mapping"
    assert "item CAM-OXF-001" in caught.value.message
    assert column in caught.value.message


def test_an_unconvertible_value_names_item_field_column_and_value(default: Mapping) -> None:
    with pytest.raises(MappingError) as caught:
        default.apply(siesa_row(f120_peso="cero coma tres"), item="CAM-OXF-001")

    message = caught.value.message
    assert "item CAM-OXF-001" in message
    assert "field weight_kg" in message
    assert "f120_peso='cero coma tres'" in message


def test_an_unknown_state_is_a_mapping_error(default: Mapping) -> None:
    with pytest.raises(MappingError, match="field is_active"):
        default.apply(siesa_row(f120_ind_estado=2), item="x")


# -- conversions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1.234,56", 1234.56),
        ("1.234.567,8", 1234567.8),
        ("0,35", 0.35),
        ("-2,5", -2.5),
        ("0.35", 0.35),
        ("12", 12.0),
        ("1 234,5", 1234.5),
        ("1e3", 1000.0),
    ],
)
def test_decimal_comma_and_thousands_separators(text: str, number: float) -> None:
    assert to_decimal(text) == number


@pytest.mark.parametrize("text", ["abc", "1,2,3", "NaN", "Infinity", "-inf", "1..2", ""])
def test_non_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="number"):
        to_decimal(text)


def test_comma_thousands_with_a_decimal_point_is_not_misread() -> None:
    try:
        value = to_decimal("1,234.56")
    except ValueError:
        return  # refusing an ambiguous number is fine too
    assert value == 1234.56


def test_a_number_too_big_for_a_double_is_refused() -> None:
    with pytest.raises(ValueError, match="number"):
        to_decimal("1e400")


@pytest.mark.parametrize(("text", "number"), [("12", 12), ("1.000", 1), ("3,0", 3), ("-7", -7)])
def test_integers(text: str, number: int) -> None:
    value = to_integer(text)

    assert value == number
    assert isinstance(value, int)


def test_a_fraction_is_not_an_integer() -> None:
    with pytest.raises(ValueError, match="whole number"):
        to_integer("2,5")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("0", False),
        ("S", True),
        ("N", False),
        ("SI", True),
        ("si", True),
        ("NO", False),
        ("true", True),
        ("FALSE", False),
        ("True", True),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert to_boolean(text) is value


@pytest.mark.parametrize("text", ["2", "yes please", "activo", "-1"])
def test_non_booleans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="boolean"):
        to_boolean(text)


EAN13 = gtin("770123400001")
EAN8 = gtin("9638507")
UPC_A = gtin("01234567890")


def wrong_check(code: str) -> str:
    return code[:-1] + str((int(code[-1]) + 1) % 10)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (EAN13, "EAN13"),
        ("7701234000028", "EAN13"),
        (EAN8, "EAN8"),
        (UPC_A, "UPC_A"),
        ("012345678905", "UPC_A"),
        (wrong_check(EAN13), "OTHER"),
        (wrong_check(EAN8), "OTHER"),
        (wrong_check(UPC_A), "OTHER"),
        (gtin("1234567890123"), "OTHER"),  # GTIN-14 is not one of ours
        (gtin("123456"), "OTHER"),
        ("ABC-123", "OTHER"),
        ("77012340000 1", "OTHER"),
    ],
)
def test_barcode_classification_checks_length_and_check_digit(code: str, kind: str) -> None:
    assert barcode_type(code) == kind


def test_the_independent_check_digits_match_the_fixture_codes() -> None:
    assert gtin("770123400001") == "7701234000011"
    assert gtin("01234567890") == "012345678905"


def test_only_ascii_digits_make_a_gtin() -> None:
    full_width = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in EAN13)

    assert barcode_type(full_width) == "OTHER"


# -- compiling files ------------------------------------------------------------------


def test_every_problem_of_a_file_is_listed_with_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        name: broken
        version: "2"
        fields:
          sku: {source: f120_referencia, colour: red}
          colour: {source: f120_color}
          weight_kg: {source: f120_peso, convert: kilos}
          unit: {source: f120_unidad_medida, lookup: [UND, UNIT]}
          barcode: f120_codigo_barras
          group_code: {source: []}
        """,
    )

    with pytest.raises(ConfigError) as caught:
        compile_mapping(path)

    problems = caught.value.problems
    assert all(p.startswith(f"{path}: field ") for p in problems)
    expected = {
        "sku": "('colour' was unexpected)",
        "colour": "not a CanonicalProduct field",
        "weight_kg": "convert: 'kilos' is not one of",
        "unit": "lookup: ['UND', 'UNIT'] is not of type 'object'",
        "barcode": "'f120_codigo_barras' is not of type 'object'",
        "group_code": "source: [] should be non-empty",
        "name": "missing (every mapping must give it)",
    }
    assert len(problems) == len(expected)
    for field, text in expected.items():
        assert any(p.startswith(f"{path}: field {field}: ") and text in p for p in problems), field


@pytest.mark.parametrize(
    "text", ["just text\n", "fields: [sku, name]\n", "name: x\n", "fields: {sku: [\n"]
)
def test_a_file_of_the_wrong_shape_is_one_problem_naming_it(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        compile_mapping(path)

    (problem,) = caught.value.problems
    assert problem.startswith(str(path))


def test_load_mappings_reports_the_problems_of_every_file_at_once(tmp_path: Path) -> None:
    write(tmp_path, "fields:\n  sku: {source: a}\n", name="no-name")
    write(tmp_path, "fields:\n  sku: {source: a}\n  name: {source: b, convert: x}\n", name="bad")
    write(tmp_path, "fields:\n  sku: {source: a}\n  name: {source: b}\n", name="good")

    with pytest.raises(ConfigError) as caught:
        load_mappings(tmp_path, {"no-name", "bad", "good", "absent"})

    problems = caught.value.problems
    assert len(problems) == 3
    assert any("no-name.yaml: field name: missing" in p for p in problems)
    assert any("bad.yaml: field name: convert: 'x' is not one of" in p for p in problems)
    assert any("absent.yaml: mapping 'absent' not found" in p for p in problems)


def test_load_mappings_returns_the_named_ones(tmp_path: Path) -> None:
    loaded = load_mappings(MAPPINGS, {"siesa-items"})

    assert list(loaded) == ["siesa-items"]
    assert loaded["siesa-items"].name == "siesa-items"


def test_a_file_without_name_or_version_takes_its_stem_and_version_1(tmp_path: Path) -> None:
    path = write(tmp_path, "fields:\n  sku: {source: a}\n  name: {source: b}\n", name="tenant-x")

    mapping = compile_mapping(path)

    assert (mapping.name, mapping.version) == ("tenant-x", "1")


def test_fallback_order_lookup_default_and_constants(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        fields:
          sku: {source: [code_new, code_old], required: true}
          name: {source: descr, default: SIN NOMBRE}
          group_code: {source: grupo, lookup: {"10": ROPA}}
          weight_kg: {source: peso_g, convert: decimal, default: 0.0}
        """,
    )
    mapping = compile_mapping(path)

    mapped = mapping.apply(
        {"code_new": " ", "code_old": "OLD-1", "descr": None, "grupo": "10", "peso_g": None},
        item="OLD-1",
    )

    assert mapped == {"sku": "OLD-1", "name": "SIN NOMBRE", "group_code": "ROPA", "weight_kg": 0.0}


def test_a_numeric_source_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "fields:\n  sku: {source: 120}\n  name: {source: b}\n")

    with pytest.raises(ConfigError, match="field sku"):
        compile_mapping(path)


def test_a_list_as_convert_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "fields:\n  sku: {source: a}\n  name: {source: b, convert: [upper]}\n")

    with pytest.raises(ConfigError, match="field name"):
        compile_mapping(path)
