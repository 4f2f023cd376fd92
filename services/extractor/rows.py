"""Pure steps from a Siesa row to a `RawItem`: trim padding, keep text, fingerprint."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from services.common.errors import SkippableError

KEY_FIELD = "f120_referencia"


class RowError(SkippableError):
    """A row that can't be emitted for a concrete reason (no key, over-long field);
    `key` is the row's key when it has one."""

    error_class = "invalid_row"

    def __init__(self, message: str, *, tenant: str, key: str | None = None) -> None:
        super().__init__(message, tenant=tenant)
        self.key = key


def normalize(row: dict[str, Any]) -> dict[str, str | None]:
    """Every value as text: padding (trailing spaces of char(n) columns) trimmed, nothing
    else touched; numbers as JSON writes them; null stays null."""
    out: dict[str, str | None] = {}
    for name, value in row.items():
        if value is None:
            out[name] = None
        elif isinstance(value, str):
            out[name] = value.rstrip(" ")
        elif isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, int):
            out[name] = str(value)  # as json.dumps writes it, without its cost
        elif isinstance(value, float) and math.isfinite(value):
            out[name] = repr(value)  # as json.dumps writes it
        elif isinstance(value, float):
            out[name] = json.dumps(value)
        else:
            out[name] = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return out


# Built once: json.dumps with options builds a new encoder on every call.
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def fingerprint(row: dict[str, str | None]) -> str:
    canonical = _CANONICAL.encode(row)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def row_key(row: dict[str, str | None], *, tenant: str, max_field_length: int) -> str:
    """The row's business key; RowError when the row can't be emitted."""
    key = (row.get(KEY_FIELD) or "").strip()
    if not key:
        raise RowError(f"tenant {tenant}: row has no {KEY_FIELD}", tenant=tenant)
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
    company: str,
    consulta: str,
    key: str,
    row: dict[str, str | None],
    fingerprint: str,
    op: str,
    sync_id: str,
    trace_id: str,
    extracted_at: int,
) -> dict[str, Any]:
    """The `RawItem` record of one Siesa row (schemas/RawItem.avsc)."""
    return {
        "tenant": tenant,
        "source_system": "siesa",
        "company": company,
        "consulta": consulta,
        "key": key,
        "row": row,
        "fingerprint": fingerprint,
        "op": op,
        "sync_id": sync_id,
        "extracted_at": extracted_at,
        "trace_id": trace_id,
    }
