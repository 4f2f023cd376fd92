"""Conversions of source text to typed values, and the text steps that run before them.

Every conversion takes the (trimmed) text of one source column and returns a value, or
raises ValueError saying why the text is not one; the mapping turns that into a DLQ
reason naming the field, column and value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

Value = str | bool | float | int | None

TRUE = frozenset({"1", "S", "SI", "SÍ", "Y", "YES", "TRUE", "T"})
FALSE = frozenset({"0", "N", "NO", "FALSE", "F"})


def to_boolean(text: str) -> bool:
    upper = text.upper()
    if upper in TRUE:
        return True
    if upper in FALSE:
        return False
    raise ValueError("not a boolean (1/0, S/N, SI/NO, true/false)")


# "1.234,56" / "1234,5" (decimal comma) and "1,234.56" / "1234.5" / "1e3" (decimal point),
# thousands separators only in groups of three.
_COMMA_DECIMAL = re.compile(r"[+-]?(\d{1,3}(\.\d{3})+|\d*)(,\d+)?")
_POINT_DECIMAL = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d*)(\.\d+)?([eE][+-]?\d{1,4})?")
_MAX_NUMBER_TEXT = 100


_PLAIN = re.compile(r"[+-]?\d{1,20}(\.\d{1,20})?")


def parse_decimal(text: str) -> Decimal:
    """A number as Colombians or JSON write it. With a comma, the comma reading is tried
    first ("1,5" is 1.5); without, the point reading ("1.234" is 1.234)."""
    if _PLAIN.fullmatch(text):  # the common case, as JSON writes numbers
        return Decimal(text)
    cleaned = text.replace(" ", "")
    if len(cleaned) > _MAX_NUMBER_TEXT:
        raise ValueError("not a number (too long)")
    readings = [(_COMMA_DECIMAL, ","), (_POINT_DECIMAL, ".")]
    if "," not in cleaned:
        readings.reverse()
    for pattern, mark in readings:
        if any(c.isdigit() for c in cleaned) and pattern.fullmatch(cleaned):
            if mark == ",":
                cleaned = cleaned.replace(".", "").replace(",", ".")
            else:
                cleaned = cleaned.replace(",", "")
            break
    else:
        raise ValueError("not a number")
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not number.is_finite():
        raise ValueError("not a finite number")
    return number


def to_decimal(text: str) -> float:
    if _PLAIN.fullmatch(text):
        return float(text)
    number = float(parse_decimal(text))
    if not math.isfinite(number):
        raise ValueError("number too large for a double")
    return number


def to_integer(text: str) -> int:
    number = parse_decimal(text)
    if number != number.to_integral_value():
        raise ValueError("not a whole number")
    return int(number)


_COMPACT_DATE = re.compile(r"\d{8}")
_COMPACT_DATETIME = re.compile(r"\d{14}")


def parse_datetime(text: str) -> datetime:
    """`YYYYMMDD`, `YYYYMMDDHHMMSS` (Siesa) or ISO 8601."""
    try:
        if _COMPACT_DATE.fullmatch(text):
            return datetime.strptime(text, "%Y%m%d")
        if _COMPACT_DATETIME.fullmatch(text):
            return datetime.strptime(text, "%Y%m%d%H%M%S")
        if len(text) <= 40 and text[:4].isdigit():
            return datetime.fromisoformat(text)
    except ValueError:
        pass
    raise ValueError("not a date (YYYYMMDD, YYYYMMDDHHMMSS or ISO 8601)")


def to_date(text: str) -> str:
    """The ISO date (`2024-12-01`) of a Siesa or ISO date/time."""
    value = parse_datetime(text)
    return date(value.year, value.month, value.day).isoformat()


def to_datetime(text: str) -> str:
    """The ISO date-time (`2024-12-01T10:20:30`, offset kept when given)."""
    return parse_datetime(text).isoformat()


def _gtin_check_ok(digits: str) -> bool:
    """GS1: from the right of the body, digits weigh 3, 1, 3, ..."""
    body, check = digits[:-1], int(digits[-1])
    total = 3 * sum(map(int, body[::-2])) + sum(map(int, body[-2::-2]))
    return (10 - total % 10) % 10 == check


def barcode_type(text: str) -> str:
    """EAN13, EAN8 or UPC_A by length and check digit; anything else is OTHER."""
    kinds = {13: "EAN13", 8: "EAN8", 12: "UPC_A"}
    if text.isascii() and text.isdigit() and len(text) in kinds and _gtin_check_ok(text):
        return kinds[len(text)]
    return "OTHER"


@dataclass(frozen=True)
class Conversion:
    run: Callable[[str], Value]
    kind: str  # what it yields: string | boolean | double | long | barcode


CONVERSIONS: dict[str, Conversion] = {
    "string": Conversion(str, "string"),
    "boolean": Conversion(to_boolean, "boolean"),
    "decimal": Conversion(to_decimal, "double"),
    "integer": Conversion(to_integer, "long"),
    "date": Conversion(to_date, "string"),
    "datetime": Conversion(to_datetime, "string"),
    "barcode_type": Conversion(barcode_type, "barcode"),
}

_SPACES = re.compile(r"\s+")


def collapse(text: str) -> str:
    """Runs of whitespace inside the text become one space."""
    return _SPACES.sub(" ", text)


# Run in the order given, after the trim that every source value gets.
TEXT_STEPS: dict[str, Callable[[str], str]] = {
    "trim": str.strip,
    "collapse": collapse,
    "upper": str.upper,
    "lower": str.lower,
}
