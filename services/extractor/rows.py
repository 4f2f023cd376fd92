"""Pure steps from a source's text row to a `RawItem`: the key checked, the row written
in key order, its fingerprint.

A row's fingerprint is the BLAKE2b-128 (hex) of its Avro encoding as RawItem's `row`
field, keys in order: the bytes the record carries anyway, so a row is serialised once.
Rows fingerprinted by the first release (SHA-256 of the canonical JSON) are recognised
by `legacy_fingerprint`, so an upgrade re-emits nothing that did not change.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from services.common.errors import SkippableError
from services.common.partial import PartialWriter
from services.common.serde import Serde, default_serde
from services.sources.base import Row

# RawItem's fields: those one scan shares (written once per scan), then two groups.
SHARED = ("tenant", "source_system", "origin", "sync_id")
ROW = ("row",)
REST = ("key", "fingerprint", "op", "extracted_at", "trace_id")


class RowError(SkippableError):
    """A row that can't be emitted for a concrete reason (no key, over-long field);
    `key` is the row's key when it has one."""

    error_class = "invalid_row"

    def __init__(self, message: str, *, tenant: str, key: str | None = None) -> None:
        super().__init__(message, tenant=tenant)
        self.key = key


def row_key(row: Row, key: str | None, *, key_name: str, tenant: str, max_field_length: int) -> str:
    """`key` (what the source read as the row's key) once the row is known to fit;
    RowError when the row can't be emitted."""
    if not key:
        raise RowError(f"tenant {tenant}: row has no {key_name}", tenant=tenant)
    for name, value in row.items():
        if value is not None and len(value) > max_field_length:
            raise RowError(
                f"tenant {tenant}: item {key}: field {name} is {len(value)} characters long "
                f"(limit {max_field_length})",
                tenant=tenant,
                key=key,
            )
    return key


def raw_writer(
    serde: Serde, *, tenant: str, source: str, origin: dict[str, str], sync_id: str
) -> PartialWriter:
    """RawItems of one scan: the shared fields encoded once; then `group(0, {"row"})`
    and `group(1, {"key", "fingerprint", "op", "extracted_at", "trace_id"})`."""
    shared = {"tenant": tenant, "source_system": source, "origin": origin, "sync_id": sync_id}
    return PartialWriter(serde, "RawItem", shared, [ROW, REST])


class KeyOrder:
    """Rows with their keys in order, cheaply: a source's rows mostly come with the same
    columns in the same order, so the check is one comparison of key tuples."""

    def __init__(self) -> None:
        self._keys: tuple[str, ...] = ()
        self._ordered = True

    def __call__(self, row: Row) -> Row:
        keys = tuple(row)
        if keys != self._keys:
            self._keys = keys
            self._ordered = list(keys) == sorted(keys)
        return row if self._ordered else dict(sorted(row.items()))


def fingerprint_of(encoded_row: bytes) -> str:
    """The fingerprint of a row from its encoding (`raw_writer(...).group(0, ...)`)."""
    return hashlib.blake2b(encoded_row, digest_size=16).hexdigest()


@cache
def _row_writer(serde: Serde) -> PartialWriter:
    return raw_writer(serde, tenant="", source="", origin={}, sync_id="")


def fingerprint(row: Row, serde: Serde | None = None) -> str:
    """The fingerprint the extractor gives `row` (whatever its keys' order)."""
    writer = _row_writer(serde or default_serde())
    return fingerprint_of(writer.group(0, {"row": dict(sorted(row.items()))}))


# Built once: json.dumps with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def legacy_fingerprint(row: Row) -> str:
    """The first release's fingerprint of `row` (SHA-256 of its canonical JSON, 32 hex):
    what the fingerprints topic holds for rows not emitted since the upgrade."""
    return hashlib.sha256(_CANONICAL.encode(row).encode()).hexdigest()[:32]


def raw_item(
    *,
    tenant: str,
    source: str,
    origin: dict[str, str],
    key: str,
    row: Row,
    fingerprint: str,
    op: str,
    sync_id: str,
    trace_id: str,
    extracted_at: int,
) -> dict[str, Any]:
    """The `RawItem` record of one source row (schemas/RawItem.avsc), as a dict."""
    return {
        "tenant": tenant,
        "source_system": source,
        "origin": origin,
        "sync_id": sync_id,
        "row": row,
        "key": key,
        "fingerprint": fingerprint,
        "op": op,
        "extracted_at": extracted_at,
        "trace_id": trace_id,
    }
