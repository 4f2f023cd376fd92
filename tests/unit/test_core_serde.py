"""Avro single-object encoding: C3 01, the writer's CRC-64-AVRO fingerprint (little
endian), then the body; decoded by fingerprint and resolved to the current schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import SkippableError
from services.common.serde import (
    HEADER_SIZE,
    MAGIC,
    SCHEMA_DIR,
    DecodeError,
    Serde,
    default_serde,
)

EMPTY_64 = 0xC15D213AA4D7A795


def crc64_avro(data: bytes) -> int:
    """The Avro spec's 64-bit Rabin fingerprint, written out here independently."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY_64 & -(fp & 1))
        table.append(fp)
    fp = EMPTY_64
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def canonical_form(schema: Any, namespace: str | None = None) -> str:
    """Parsing Canonical Form (Avro spec) for the subset of Avro our schemas use."""
    if isinstance(schema, str):
        if schema in {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}:
            return json.dumps(schema)
        return json.dumps(schema if "." in schema else f"{namespace}.{schema}")
    if isinstance(schema, list):
        return "[" + ",".join(canonical_form(s, namespace) for s in schema) + "]"
    kind = schema["type"]
    if kind in ("record", "enum"):
        name = schema["name"]
        namespace = schema.get("namespace", namespace)
        full = name if "." in name else f"{namespace}.{name}"
        if kind == "enum":
            symbols = ",".join(json.dumps(s) for s in schema["symbols"])
            return f'{{"name":"{full}","type":"enum","symbols":[{symbols}]}}'
        fields = ",".join(
            f'{{"name":"{f["name"]}","type":{canonical_form(f["type"], namespace)}}}'
            for f in schema["fields"]
        )
        return f'{{"name":"{full}","type":"record","fields":[{fields}]}}'
    if kind == "map":
        return f'{{"type":"map","values":{canonical_form(schema["values"], namespace)}}}'
    if kind == "array":
        return f'{{"type":"array","items":{canonical_form(schema["items"], namespace)}}}'
    return canonical_form(kind, namespace)  # a primitive with a logicalType


def raw_item(**overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "source_system": "siesa",
        "company": "8585",
        "consulta": "API_v2_Items",
        "key": "CAM-OXF-001",
        "row": {"f120_referencia": "CAM-OXF-001", "f120_descripcion_comercial": None},
        "fingerprint": "f" * 32,
        "op": "UPSERT",
        "sync_id": "s1",
        "extracted_at": 1_700_000_000_000,
        "trace_id": "t1",
        **overrides,
    }


def write_schema(directory: Path, fields: list[dict[str, Any]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    schema = {"type": "record", "name": "Thing", "namespace": "test.v1", "fields": fields}
    (directory / "Thing.avsc").write_text(json.dumps(schema))


def test_the_spec_vectors_hold_for_the_reference_fingerprint() -> None:
    assert crc64_avro(b'"null"') == 7195948357588979594
    assert crc64_avro(b'"int"') == 8247732601305521295


@pytest.mark.parametrize("name", ["RawItem", "CanonicalProduct", "SyncState", "SyncCommand"])
def test_the_header_is_magic_plus_the_little_endian_crc64_of_the_canonical_form(
    name: str,
) -> None:
    serde = default_serde()
    source = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())
    expected = crc64_avro(canonical_form(source).encode()).to_bytes(8, "little")

    assert serde.current[name].fingerprint == expected


def test_a_raw_item_round_trips_with_the_right_framing() -> None:
    serde = default_serde()
    record = raw_item()

    data = serde.encode("RawItem", record)

    assert data[:2] == MAGIC == b"\xc3\x01"
    assert data[2:HEADER_SIZE] == serde.current["RawItem"].fingerprint
    name, decoded = serde.decode(data)
    assert name == "RawItem"
    # timestamp-millis comes back as an aware datetime; everything else as written.
    assert decoded.pop("extracted_at") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert decoded == {k: v for k, v in record.items() if k != "extracted_at"}
    assert serde.decode_as("RawItem", data)["key"] == "CAM-OXF-001"


def test_text_survives_verbatim() -> None:
    serde = default_serde()
    tricky = 'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML; -- SELECT Drop #2 20x30 NIÑO'
    record = raw_item(row={"f120_descripcion": tricky, "empty": "", "null": None})

    assert serde.decode_as("RawItem", serde.encode("RawItem", record))["row"] == record["row"]


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"\xc3\x01abc",  # shorter than a header
        b'{"tenant": "acme"}',  # JSON, not Avro
        b"\x00\x01" + b"\x00" * 30,  # wrong magic
        MAGIC + b"\x01\x02\x03\x04\x05\x06\x07\x08" + b"\x00" * 10,  # unknown fingerprint
    ],
    ids=["none", "empty", "short", "json", "magic", "fingerprint"],
)
def test_unreadable_values_raise_decode_error(data: bytes | None) -> None:
    with pytest.raises(DecodeError) as caught:
        default_serde().decode(data)

    assert isinstance(caught.value, SkippableError)  # goes to the DLQ, never retried
    assert caught.value.error_class == "deserialization"


def test_an_unknown_fingerprint_is_named_in_the_error() -> None:
    data = MAGIC + bytes(range(8)) + b"\x00"

    with pytest.raises(DecodeError, match="0001020304050607"):
        default_serde().decode(data)


def test_a_truncated_body_raises_decode_error() -> None:
    data = default_serde().encode("RawItem", raw_item())

    with pytest.raises(DecodeError, match="unreadable RawItem"):
        default_serde().decode(data[: HEADER_SIZE + 5])


def test_decode_as_refuses_another_record_type() -> None:
    serde = default_serde()
    command = {"tenant": "acme", "command": "resync", "requested_at": 1, "requested_by": None}
    data = serde.encode("SyncCommand", command)

    with pytest.raises(DecodeError, match="expected a RawItem record, got SyncCommand"):
        serde.decode_as("RawItem", data)


def test_an_old_writer_is_resolved_to_the_current_schema(tmp_path: Path) -> None:
    v1_fields = [{"name": "a", "type": "string"}]
    v2_fields = [*v1_fields, {"name": "b", "type": "int", "default": 5}]
    write_schema(tmp_path / "v1", v1_fields)
    write_schema(tmp_path / "v2", v2_fields)
    write_schema(tmp_path / "v2" / "history", v1_fields)
    old, new = Serde(tmp_path / "v1"), Serde(tmp_path / "v2")

    data = old.encode("Thing", {"a": "x"})

    assert data[2:HEADER_SIZE] == old.current["Thing"].fingerprint
    assert data[2:HEADER_SIZE] != new.current["Thing"].fingerprint
    assert new.decode(data) == ("Thing", {"a": "x", "b": 5})


def test_a_writer_not_kept_in_history_is_unknown(tmp_path: Path) -> None:
    write_schema(tmp_path / "v1", [{"name": "a", "type": "string"}])
    write_schema(
        tmp_path / "v2", [{"name": "a", "type": "string"}, {"name": "b", "type": "string"}]
    )
    data = Serde(tmp_path / "v1").encode("Thing", {"a": "x"})

    with pytest.raises(DecodeError, match="unknown writer schema"):
        Serde(tmp_path / "v2").decode(data)


def test_default_serde_is_built_once_with_every_schema() -> None:
    assert default_serde() is default_serde()
    assert set(default_serde().current) == {
        "RawItem",
        "CanonicalProduct",
        "SyncState",
        "SyncCommand",
        "TargetId",
    }
