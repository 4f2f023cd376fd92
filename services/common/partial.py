"""Records written in parts: the leading fields that many records share, encoded once,
then the rest a declared group of fields at a time, each group by fastavro with its own
schema.

An Avro record's binary encoding is its fields' encodings in schema order, one after
the other (Avro specification, "Binary Encoding", records). So the bytes of consecutive
groups of a record's fields, joined behind the single-object header, are the record's
encoding: byte for byte what `Serde.encode` writes (tests/unit/test_core_partial.py
checks it). A group's bytes are also usable alone: the extractor hashes its rows'
encoding for their fingerprints, and writes the shared fields once per scan.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import fastavro
from fastavro.schema import parse_schema

from services.common.serde import MAGIC, EncodeError, Serde


class PartialWriter:
    """Records of schema `name` whose first fields are `fixed`; the others are given in
    `groups`: consecutive runs of field names that together cover them, in order."""

    def __init__(
        self, serde: Serde, name: str, fixed: dict[str, Any], groups: Sequence[Sequence[str]]
    ) -> None:
        schema = serde.current[name]
        fields = schema.source["fields"]
        names = [f["name"] for f in fields]
        declared = [*fixed, *(n for group in groups for n in group)]
        if declared != names:
            raise ValueError(f"{name}: fixed fields and groups must list {names} in order")
        by_name = {f["name"]: f for f in fields}
        namespace = schema.source.get("namespace")

        def part(index: int, part_names: Sequence[str]) -> dict[str, Any]:
            record = {
                "type": "record",
                "name": f"{name}Part{index}",
                "fields": [by_name[n] for n in part_names],
            }
            if namespace:
                record["namespace"] = namespace
            parsed = parse_schema(record, named_schemas={})
            assert isinstance(parsed, dict)  # noqa: S101 - a record schema parses to a dict
            return parsed

        self.name = name
        self._groups = [part(i + 1, group) for i, group in enumerate(groups)]
        head = self._write(part(0, list(fixed)), fixed) if fixed else b""
        self.header = MAGIC + schema.fingerprint + head

    def group(self, index: int, values: dict[str, Any]) -> bytes:
        """The encoding of group `index`'s fields, from `values` (one per field)."""
        return self._write(self._groups[index], values)

    def join(self, parts: Sequence[bytes]) -> bytes:
        """A whole record (single-object encoded): the fixed fields, then one encoded
        part per group, in the groups' order."""
        if len(parts) != len(self._groups):
            raise ValueError(f"{self.name}: {len(self._groups)} parts expected")
        return self.header + b"".join(parts)

    def _write(self, parsed: dict[str, Any], values: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, parsed, values)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise EncodeError(f"{self.name} does not fit its schema: {exc}") from exc
        return out.getvalue()
