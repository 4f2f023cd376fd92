"""Avro on the wire: single-object encoding, schemas read once from the shipped
`schemas/` (services/common/packaged.py).

Every value is `C3 01` + the writer schema's 8-byte CRC-64-AVRO fingerprint
(little-endian) + the Avro binary body (Avro spec, "Single object encoding"). A reader
finds the writer schema by fingerprint among the current `schemas/*.avsc` and the
earlier versions kept in `schemas/history/`, and resolves it to the current schema of
the same name, so old records stay readable (BACKWARD compatibility). A field an older
writer had and the current schema dropped is still returned, under its name, so a reader
can carry an old record's meaning over (e.g. RawItem v1's `company`, now in `origin`).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from services.common.errors import ConfigError, SkippableError
from services.common.packaged import data_dir

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8


class DecodeError(SkippableError):
    error_class = "deserialization"


class EncodeError(SkippableError):
    """A record that does not fit its schema: this one record can't go on."""

    error_class = "serialization"


@dataclass(frozen=True)
class Schema:
    name: str  # the record's short name, e.g. "RawItem"
    parsed: dict[str, Any]
    fingerprint: bytes
    source: dict[str, Any]  # as written in its file


def _load(path: Path) -> Schema:
    source = json.loads(path.read_text())
    parsed = parse_schema(source, named_schemas={})
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise ConfigError(f"{path}: expected one Avro record schema")
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    name = parsed["name"].rsplit(".", 1)[-1]
    return Schema(name=name, parsed=parsed, fingerprint=fp, source=source)


def _reader_for(writer: Schema, current: Schema) -> dict[str, Any]:
    """The schema to read `writer`'s records with: the current one, plus the fields the
    writer had and the current one dropped (so they are returned, not lost)."""
    kept = {f["name"] for f in current.source["fields"]}
    dropped = [f for f in writer.source["fields"] if f["name"] not in kept]
    if not dropped:
        return current.parsed
    try:
        merged = parse_schema(
            {**current.source, "fields": [*current.source["fields"], *dropped]}, named_schemas={}
        )
    except Exception:  # noqa: BLE001 - e.g. a dropped field of a type named elsewhere
        return current.parsed
    return merged if isinstance(merged, dict) else current.parsed


class Serde:
    """Encodes and decodes the project's records; build once, share everywhere."""

    def __init__(self, schema_dir: Path | None = None) -> None:
        schema_dir = data_dir("schemas") if schema_dir is None else schema_dir
        self.current: dict[str, Schema] = {}
        self.by_fingerprint: dict[bytes, Schema] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            schema = _load(path)
            self.current[schema.name] = schema
            self.by_fingerprint[schema.fingerprint] = schema
        if not self.current:
            # Nothing to encode or decode with: a broken install, never a quiet start.
            raise ConfigError(f"{schema_dir}: no Avro schemas (*.avsc)")
        for path in sorted((schema_dir / "history").glob("*.avsc")):
            old = _load(path)
            self.by_fingerprint.setdefault(old.fingerprint, old)
        # Per writer fingerprint, the schema its records are read with.
        self.readers = {
            fp: _reader_for(writer, self.current[writer.name])
            if writer.name in self.current
            else writer.parsed
            for fp, writer in self.by_fingerprint.items()
        }

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        schema = self.current[name]
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(schema.fingerprint)
        try:
            fastavro.schemaless_writer(out, schema.parsed, record)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise EncodeError(f"{name} does not fit its schema: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes | None, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """Returns (record name, record); raises DecodeError on anything unreadable."""
        if data is None or len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not an Avro single-object encoded value")
        writer = self.by_fingerprint.get(data[2:HEADER_SIZE])
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}")
        if expect is not None and writer.name != expect:
            raise DecodeError(f"expected a {expect} record, got {writer.name}")
        try:
            record = fastavro.schemaless_reader(
                io.BytesIO(data[HEADER_SIZE:]), writer.parsed, self.readers[writer.fingerprint]
            )
        except Exception as exc:
            raise DecodeError(f"unreadable {writer.name} record: {exc}") from exc
        if not isinstance(record, dict):
            raise DecodeError(f"{writer.name} is not a record")
        return writer.name, record

    def decode_as(self, name: str, data: bytes | None) -> dict[str, Any]:
        return self.decode(data, expect=name)[1]


@cache
def default_serde() -> Serde:
    return Serde()
