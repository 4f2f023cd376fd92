"""BACKWARD compatibility: records written with every earlier schema version kept in
`schemas/history/` are read by the current schema of the same name.

Every `.avsc` must have its previous version in history (so that a change can't skip the
check), and a record built from each old schema (every field filled, every union branch
and enum symbol used across the samples) goes through the project's own serde.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from services.common.packaged import data_dir
from services.common.serde import HEADER_SIZE, MAGIC, DecodeError, Serde, _load

SCHEMA_DIR = data_dir("schemas")
HISTORY = SCHEMA_DIR / "history"
CURRENT = sorted(SCHEMA_DIR.glob("*.avsc"))
OLD = sorted(HISTORY.glob("*.avsc"))


def sample(schema: Any, variant: int, named: dict[str, Any]) -> Any:
    """A value for `schema`; `variant` picks different union branches / enum symbols."""
    if isinstance(schema, str):
        if schema in named:
            return sample(named[schema], variant, named)
        return {
            "null": None,
            "boolean": variant % 2 == 0,
            "int": 7 + variant,
            "long": 1_700_000_000_000 + variant,
            "float": 1.5,
            "double": 2.25 + variant,
            "bytes": b"\x00\x01",
            "string": f'text & "quotes" #{variant} ñ',
        }[schema]
    if isinstance(schema, list):
        return sample(schema[variant % len(schema)], variant, named)
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: sample(f["type"], variant, named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][variant % len(schema["symbols"])]
    if kind == "map":
        return {"k": sample(schema["values"], variant, named)}
    if kind == "array":
        return [sample(schema["items"], variant, named)]
    return sample(kind, variant, named)  # a primitive with a logicalType


def single_object(schema_path: Path, record: dict[str, Any]) -> bytes:
    writer = _load(schema_path)
    body = io.BytesIO()
    fastavro.schemaless_writer(body, writer.parsed, record)
    return MAGIC + writer.fingerprint + body.getvalue()


def record_name(path: Path) -> str:
    return str(json.loads(path.read_text())["name"])


def test_every_current_schema_has_its_previous_version_in_history() -> None:
    kept = {record_name(p) for p in OLD}

    assert {record_name(p) for p in CURRENT} <= kept
    assert all(p.name.split(".")[0] == record_name(p) for p in OLD), "name history files <Name>.vN"


@pytest.mark.parametrize("old", OLD, ids=lambda p: p.name)
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_records_written_with_an_old_schema_are_read_by_the_current_one(
    old: Path, variant: int
) -> None:
    serde = Serde()
    written = sample(json.loads(old.read_text()), variant, {})

    name, read = serde.decode(single_object(old, written))

    current = serde.current[name].parsed
    assert name == record_name(old)
    for field in current["fields"]:
        if field["name"] in written:
            value = read[field["name"]]
            assert value == written[field["name"]] or (
                # timestamp-millis comes back as a datetime; compare the instant.
                hasattr(value, "timestamp")
                and round(value.timestamp() * 1000) == written[field["name"]]
            ), field["name"]
        else:
            assert read[field["name"]] == field["default"], field["name"]


def test_the_check_fails_on_a_change_that_is_not_backward(tmp_path: Path) -> None:
    """Proof that the check above can fail: a new field without a default can't be read
    from old records."""
    (tmp_path / "history").mkdir()
    old = HISTORY / "CanonicalProduct.v1.avsc"
    (tmp_path / "history" / old.name).write_text(old.read_text())
    changed = json.loads((SCHEMA_DIR / "CanonicalProduct.avsc").read_text())
    changed["fields"].append({"name": "price", "type": "double"})
    (tmp_path / "CanonicalProduct.avsc").write_text(json.dumps(changed))
    serde = Serde(tmp_path)
    data = single_object(old, sample(json.loads(old.read_text()), 0, {}))

    assert data[:HEADER_SIZE] != MAGIC + serde.current["CanonicalProduct"].fingerprint
    with pytest.raises(DecodeError, match=r"price|default"):
        serde.decode(data)
