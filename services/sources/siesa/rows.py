"""A Siesa row as text: its key, its change date.

Siesa serves char(n) columns padded with trailing spaces and numbers as JSON numbers;
a RawItem carries every value as text, padding trimmed, nothing else touched.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from services.sources.base import Row

KEY_FIELD = "f120_referencia"


def normalize(row: dict[str, Any], order: tuple[str, ...] | None = None) -> Row:
    """Every value as text: padding (trailing spaces of char(n) columns) trimmed, nothing
    else touched; numbers as JSON writes them; null stays null. `order`: the row's keys,
    in the order wanted (default: the row's)."""
    out: Row = {}
    for name in row if order is None else order:
        value = row[name]
        kind = type(value)
        if kind is str:
            out[name] = value.rstrip(" ")
        elif value is None:
            out[name] = None
        elif kind is int:
            out[name] = str(value)  # as json.dumps writes it, without its cost
        elif kind is bool:
            out[name] = "1" if value else "0"
        elif kind is float and math.isfinite(value):
            out[name] = repr(value)  # as json.dumps writes it
        else:  # non-finite floats, nested values (never in a JSON page: str subclasses)
            out[name] = _as_text(value)
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value.rstrip(" ")
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def key(row: Row) -> str | None:
    """The trimmed `f120_referencia`, or None when it is missing or blank."""
    value = row.get(KEY_FIELD)
    return value.strip() or None if value else None


def is_change_date(value: str) -> bool:
    """``YYYYMMDD[HHMMSS]``: a date the day filter can start from."""
    if len(value) < 8 or not value.isdigit():
        return False
    try:
        datetime.strptime(value[:8], "%Y%m%d")
    except ValueError:
        return False
    return True
