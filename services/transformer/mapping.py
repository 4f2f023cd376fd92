"""Declarative mappings from a Siesa row to a `CanonicalProduct`, compiled at start-up.

A mapping file (YAML, `mappings/<name>.yaml`) names, per canonical field, its source
column(s) in fallback order (the first that is neither null nor blank wins), an
optional conversion, an optional lookup table, a default and whether it is required.
Text is trimmed; nothing else is changed. This is the first cut; richer rules
(expressions, regex validation, per-tenant overrides) come with the mapping issue.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from services.common.errors import ConfigError, SkippableError

Value = str | bool | float | int | None


class MappingError(SkippableError):
    """A row that the mapping can't turn into a valid product."""

    error_class = "mapping"


TRUE = frozenset({"1", "S", "SI", "Y", "YES", "TRUE", "T"})
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
_POINT_DECIMAL = re.compile(r"[+-]?(\d{1,3}(,\d{3})+|\d*)(\.\d+)?([eE][+-]?\d+)?")


def parse_decimal(text: str) -> Decimal:
    """A number as Colombians or JSON write it. With a comma, the comma reading is tried
    first ("1,5" is 1.5); without, the point reading ("1.234" is 1.234)."""
    cleaned = text.replace(" ", "")
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
    number = float(parse_decimal(text))
    if not math.isfinite(number):
        raise ValueError("number too large for a double")
    return number


def to_integer(text: str) -> int:
    number = parse_decimal(text)
    if number != number.to_integral_value():
        raise ValueError("not a whole number")
    return int(number)


def _gtin_check_ok(digits: str) -> bool:
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def barcode_type(text: str) -> str:
    """EAN13, EAN8 or UPC_A by length and check digit; anything else is OTHER."""
    kinds = {13: "EAN13", 8: "EAN8", 12: "UPC_A"}
    if text.isascii() and text.isdigit() and len(text) in kinds and _gtin_check_ok(text):
        return kinds[len(text)]
    return "OTHER"


# Set by the transformer itself, or (attributes) not from a single column.
NOT_MAPPABLE = frozenset(
    {
        "tenant",
        "op",
        "attributes",
        "mapping_name",
        "mapping_version",
        "sync_id",
        "trace_id",
        "source_fingerprint",
    }
)
ALWAYS_REQUIRED = frozenset({"sku", "name"})

CONVERSIONS: dict[str, Callable[[str], Value]] = {
    "string": str,
    "upper": str.upper,
    "lower": str.lower,
    "boolean": to_boolean,
    "decimal": to_decimal,
    "integer": to_integer,
    "barcode_type": barcode_type,
}


@dataclass(frozen=True)
class FieldRule:
    target: str
    sources: tuple[str, ...]
    convert: Callable[[str], Value]
    convert_name: str
    lookup: dict[str, str]
    default: Value
    required: bool

    def apply(self, row: dict[str, str | None], *, item: str) -> Value:
        for source in self.sources:
            text = (row.get(source) or "").strip()
            if text:
                break
        else:
            if self.required and self.default is None:
                raise MappingError(
                    f"item {item}: field {self.target}: required, but "
                    f"{' and '.join(self.sources)} {'are' if len(self.sources) > 1 else 'is'} "
                    "empty"
                )
            return self.default
        try:
            value = self.convert(text)
        except ValueError as exc:
            raise MappingError(
                f"item {item}: field {self.target}: {source}={text!r}: {exc}"
            ) from None
        if isinstance(value, str) and self.lookup:
            return self.lookup.get(value, value)
        return value


@dataclass(frozen=True)
class Mapping:
    name: str
    version: str
    rules: tuple[FieldRule, ...]

    def apply(self, row: dict[str, str | None], *, item: str) -> dict[str, Value]:
        """The mapped fields; MappingError names the item, field and value that failed."""
        return {rule.target: rule.apply(row, item=item) for rule in self.rules}

    def apply_field(self, target: str, row: dict[str, str | None], *, item: str) -> Value:
        """One field alone (e.g. the sku of a vanished item, of which only the key is known)."""
        return next(rule for rule in self.rules if rule.target == target).apply(row, item=item)


def compile_mapping(path: Path, target_fields: set[str]) -> Mapping:
    """Read and check one mapping file; ConfigError lists every problem in it."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read mapping: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("fields"), dict):
        raise ConfigError(f"{path}: expected keys 'name', 'version' and a 'fields' mapping")
    problems: list[str] = []
    rules: list[FieldRule] = []
    for target, spec in doc["fields"].items():
        where = f"{path}: field {target}"
        if target not in target_fields - NOT_MAPPABLE:
            problems.append(f"{where}: not a CanonicalProduct field a mapping can set")
            continue
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a mapping with 'source'")
            continue
        unknown = set(spec) - {"source", "convert", "lookup", "default", "required"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        sources = spec.get("source")
        sources = [sources] if isinstance(sources, str) else sources
        if (
            not isinstance(sources, list)
            or not sources
            or not all(isinstance(s, str) for s in sources)
        ):
            problems.append(f"{where}: 'source' must be a column name or a list of them")
            continue
        convert_name = spec.get("convert", "string")
        if not isinstance(convert_name, str) or convert_name not in CONVERSIONS:
            problems.append(
                f"{where}: unknown convert {convert_name!r} (known: {', '.join(CONVERSIONS)})"
            )
            continue
        lookup = spec.get("lookup") or {}
        if not isinstance(lookup, dict):
            problems.append(f"{where}: 'lookup' must be a mapping")
            continue
        required = spec.get("required", target in ALWAYS_REQUIRED)
        if not isinstance(required, bool):
            problems.append(f"{where}: 'required' must be true or false")
            continue
        rules.append(
            FieldRule(
                target=target,
                sources=tuple(sources),
                convert=CONVERSIONS[convert_name],
                convert_name=convert_name,
                lookup={str(k): str(v) for k, v in lookup.items()},
                default=spec.get("default"),
                # sku and name can't be empty whatever the file says.
                required=required or target in ALWAYS_REQUIRED,
            )
        )
    for needed in sorted(ALWAYS_REQUIRED):
        if needed not in doc["fields"]:
            problems.append(f"{path}: field {needed}: missing (every mapping must give it)")
    if problems:
        raise ConfigError(problems)
    return Mapping(
        name=str(doc.get("name", path.stem)),
        version=str(doc.get("version", "1")),
        rules=tuple(rules),
    )


def load_mappings(directory: Path, names: set[str], target_fields: set[str]) -> dict[str, Mapping]:
    """The named mappings from `directory`, every problem of every file reported at once."""
    problems: list[str] = []
    mappings: dict[str, Mapping] = {}
    for name in sorted(names):
        path = directory / f"{name}.yaml"
        if not path.exists():
            problems.append(f"{path}: mapping {name!r} not found")
            continue
        try:
            mappings[name] = compile_mapping(path, target_fields)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return mappings


def field_names(schema: dict[str, Any]) -> set[str]:
    return {f["name"] for f in schema["fields"]}
