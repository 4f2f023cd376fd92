"""Pure steps from a source's text row to a `RawItem`: the key checked, fingerprint."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.common.errors import SkippableError
from services.sources.base import Row


class RowError(SkippableError):
    """A row that can't be emitted for a concrete reason (no key, over-long field);
    `key` is the row's key when it has one."""

    error_class = "invalid_row"

    def __init__(self, message: str, *, tenant: str, key: str | None = None) -> None:
        super().__init__(message, tenant=tenant)
        self.key = key


# Built once: json.dumps with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def fingerprint(row: Row) -> str:
    canonical = _CANONICAL.encode(row)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


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
    """The `RawItem` record of one source row (schemas/RawItem.avsc)."""
    return {
        "tenant": tenant,
        "source_system": source,
        "origin": origin,
        "key": key,
        "row": row,
        "fingerprint": fingerprint,
        "op": op,
        "sync_id": sync_id,
        "extracted_at": extracted_at,
        "trace_id": trace_id,
    }
