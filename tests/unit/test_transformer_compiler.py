"""Compiling mapping files: checks against the Avro schemas, overrides with `extends`,
and every file in the mappings directory being valid."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest

from services.common.errors import ConfigError
from services.transformer.compiler import (
    compile_mapping,
    json_schema,
    load_mappings,
    mapping_names,
)
from tests import ROOT

BASE = """\
    name: base
    version: "4"
    fields:
      sku: {source: ref}
      name: {source: descr}
      unit: {source: u, text: [upper]}
      volume_m3: {source: vol, convert: decimal}
    attributes:
      passthrough: ["custom:*"]
    """


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        compile_mapping(path)
    return caught.value.problems


def test_every_shipped_mapping_file_compiles() -> None:
    names = mapping_names(ROOT / "mappings")

    loaded = load_mappings(ROOT / "mappings", names)

    assert {"siesa-items", "example-tenant"} <= set(loaded)


def test_the_avro_schemas_are_checked_field_by_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "avro",
        """\
        fields:
          sku: {source: ref}
          name: {source: descr, convert: boolean}
          is_active: {source: state}
          weight_kg: {source: w, convert: integer, default: heavy}
          barcode_type: {const: ISBN}
          group_code: {source: "@row"}
          unit: {source: "bad column!"}
          reference: {source: ref, pattern: "([A-Z"}
          tenant: {source: t}
          display_name: {text: [upper]}
        """,
    )

    found = problems_of(path)

    expected = {
        "name": "convert boolean gives a boolean, not a string",
        "is_active": "convert string gives a string, not a boolean",
        "weight_kg": "default 'heavy': not a double",
        "barcode_type": "const 'ISBN': not one of",
        "group_code": "source '@row': not a RawItem text field",
        "unit": "source 'bad column!': not a column name",
        "reference": "pattern '([A-Z'",
        "tenant": "set by the transformer",
        "display_name": "needs 'source', 'const' or 'expr'",
    }
    assert len(found) == len(expected), found
    for field, text in expected.items():
        assert any(p.startswith(f"{path}: field {field}: ") and text in p for p in found), field


def test_an_override_replaces_removes_and_adds_fields_and_says_so_in_its_version(
    tmp_path: Path,
) -> None:
    write(tmp_path, "base", BASE)
    child = write(
        tmp_path,
        "child",
        """\
        name: child
        version: "2"
        extends: base
        fields:
          unit: {source: u, text: [lower]}
          volume_m3: null
          group_code: {const: G1}
        attributes:
          passthrough: ["ext_*"]
          strip_prefix: false
        """,
    )

    mapping = compile_mapping(child)
    mapped = mapping.apply(
        {"ref": "A", "descr": "D", "u": "UND", "vol": "1", "custom:x": "1", "ext_y": "2"},
        item="A",
    )

    assert (mapping.name, mapping.version) == ("child", "2+base@4")
    assert mapped == {
        "sku": "A",
        "name": "D",
        "unit": "und",
        "group_code": "G1",
        "attributes": {"ext_y": "2"},
    }


def test_override_problems_name_the_file_that_has_them(tmp_path: Path) -> None:
    base = write(tmp_path, "base", BASE.replace("convert: decimal", "convert: boolean"))
    child = write(
        tmp_path, "child", "extends: base\nfields:\n  sku: null\n  unit: {source: u, text: [x]}\n"
    )

    found = problems_of(child)

    assert any(p.startswith(f"{base}: field volume_m3: convert boolean") for p in found)
    assert any(p.startswith(f"{child}: field sku: can't be removed") for p in found)
    assert any(p.startswith(f"{child}: field unit: text") for p in found)
    assert len(found) == 3


def test_extends_cycles_and_missing_bases_are_reported(tmp_path: Path) -> None:
    write(tmp_path, "a", "extends: b\nfields: {}\n")
    write(tmp_path, "b", "extends: a\nfields: {}\n")
    orphan = write(tmp_path, "orphan", "extends: nowhere\nfields: {}\n")

    assert any("extends: a cycle" in p for p in problems_of(tmp_path / "a.yaml"))
    assert any("mapping 'nowhere' not found" in p for p in problems_of(orphan))


def test_json_schema_problems_and_avro_problems_come_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed",
        """\
        fields:
          sku: {source: ref, on_mismatch: maybe}
          name: {source: descr}
          colour: {source: c}
        attributes:
          passthrough: "custom:*"
          fields:
            made_on: {source: d, convert: date, expr: "import os"}
        """,
    )

    found = problems_of(path)

    assert len(found) == 4, found
    assert any("field sku: on_mismatch: 'maybe' is not one of" in p for p in found)
    assert any("field colour: not a CanonicalProduct field" in p for p in found)
    assert any("attributes/passthrough: 'custom:*' is not of type 'array'" in p for p in found)
    assert any("field attributes.made_on: expr 'import os': refused" in p for p in found)


def test_the_shipped_json_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = json_schema()

    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("/draft/2020-12/schema")
