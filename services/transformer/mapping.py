"""A compiled mapping: how one Siesa row becomes the fields of a `CanonicalProduct`.

Per canonical field, in this order (see services/transformer/README.md for the file
format): the first source that is neither null nor blank (columns of the row, or
`@field` for a RawItem field such as `@company`), trimmed; the text steps (collapse,
upper, lower); the lookup table; the regex `pattern` (`on_mismatch: reject` sends the
record to the DLQ, `null` drops the value); the conversion; the expression; then the
default, `required`, and a final check that the value fits the field's Avro type.
`const` gives a fixed value. Every failure is a MappingError naming the tenant, item,
field, column and value, so the record goes to the DLQ with the reason; a pattern or an
expression that goes over its bounds (time, size) is a MappingLimit
(`error.class=mapping_limit`), whatever `on_mismatch` says.

Compiling files into these objects (and checking them) is in `compiler.py`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.errors import SkippableError
from services.transformer.bounds import LimitExceeded
from services.transformer.convert import Value
from services.transformer.expressions import Expression, ExpressionFailed, ExpressionLimit
from services.transformer.patterns import Pattern

Row = dict[str, str | None]
SHOWN_VALUE = 80  # characters of a value quoted in a DLQ reason


class MappingError(SkippableError):
    """A row that the mapping can't turn into a valid product."""

    error_class = "mapping"


class MappingLimit(MappingError):
    """A row on which a pattern or an expression went over its bounds (time, size)."""

    error_class = "mapping_limit"


def shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_VALUE else f"{text[:SHOWN_VALUE]}…({len(text)} chars)"


@dataclass(frozen=True)
class TargetType:
    """What a canonical field accepts, from its Avro type."""

    kind: str  # string | boolean | double | long | enum | map
    nullable: bool
    symbols: frozenset[str] = frozenset()

    def problem(self, value: object) -> str | None:
        """Why `value` does not fit, or None."""
        if value is None:
            return None if self.nullable else "must not be empty"
        # Exact types: a bool is not a number here, though Python says it is an int.
        if type(value) in _ACCEPTED[self.kind] and (self.kind != "enum" or value in self.symbols):
            return None
        if self.kind == "enum":
            return f"not one of {sorted(self.symbols)}"
        return f"not a {self.kind}"


_ACCEPTED: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "enum": frozenset({str}),
    "boolean": frozenset({bool}),
    "double": frozenset({int, float}),
    "long": frozenset({int}),
    "map": frozenset({dict}),
    "scalar": frozenset({str, bool, int, float}),
}


@dataclass(frozen=True)
class Context:
    """What a rule reads: the row, and the RawItem's own fields (`@company`, ...)."""

    row: Row
    meta: dict[str, str]
    item: str

    def source(self, name: str) -> str | None:
        if name.startswith("@"):
            return self.meta.get(name[1:])
        value = self.row.get(name)
        return value if isinstance(value, str) or value is None else str(value)


_MISSING = object()


@dataclass(frozen=True)
class FieldRule:
    target: str  # a CanonicalProduct field, or attributes.<name>
    type: TargetType
    sources: tuple[str, ...] = ()
    text_steps: tuple[Callable[[str], str], ...] = ()
    lookup: dict[str, str] | None = None
    pattern: Pattern | None = None
    on_mismatch: str = "reject"
    convert: Callable[[str], Value] = str
    expr: Expression | None = None
    const: Any = _MISSING
    default: Value = None
    required: bool = False
    # The conversion always yields the field's type (checked at compile time): only
    # emptiness is left to check on each record.
    trusted: bool = False

    def fail(self, ctx: Context, why: str, *, limit: bool = False) -> MappingError:
        kind = MappingLimit if limit else MappingError
        return kind(f"item {ctx.item}: field {self.target}: {why}")

    def apply(self, ctx: Context) -> Value:
        if self.const is not _MISSING:
            const: Value = self.const  # its type is checked at compile time
            return const
        value: Value = None
        used = ""
        row = ctx.row
        for source in self.sources:
            found = ctx.source(source) if source[0] == "@" else row.get(source)
            if not found:
                continue
            text = found.strip() if isinstance(found, str) else str(found).strip()
            if text:
                used = source
                value = self._from_text(ctx, source, text)
                break
        if self.expr is not None:
            value = self._evaluate(ctx, self.expr, value)
        if value is None or value == "":
            value = self.default
        if value is None and self.required:
            empty = " and ".join(self.sources) or "its expression"
            raise self.fail(ctx, f"required, but {empty} gave no value")
        if self.trusted and value is not None:
            return value
        problem = self.type.problem(value)
        if problem is not None:
            where = f"{used}=" if used and self.expr is None else ""
            raise self.fail(ctx, f"{where}{shown(value)}: {problem}")
        return value

    def _from_text(self, ctx: Context, source: str, text: str) -> Value:
        for step in self.text_steps:
            text = step(text)
        if self.lookup:
            text = self.lookup.get(text, text)
        if self.pattern is not None and not self._matches(ctx, source, text, self.pattern):
            if self.on_mismatch == "null":
                return None
            raise self.fail(ctx, f"{source}={shown(text)}: does not match /{self.pattern.pattern}/")
        try:
            return self.convert(text)
        except ValueError as exc:
            raise self.fail(ctx, f"{source}={shown(text)}: {exc}") from None

    def _matches(self, ctx: Context, source: str, text: str, pattern: Pattern) -> bool:
        try:
            return pattern.fullmatch(text)
        except LimitExceeded as exc:
            why = f"{source}={shown(text)}: /{pattern.pattern}/: {exc}"
            raise self.fail(ctx, why, limit=True) from None

    def _evaluate(self, ctx: Context, expr: Expression, value: Value) -> Value:
        try:
            result = expr.evaluate({"value": value, "row": ctx.row, **ctx.meta})
        except ExpressionFailed as exc:
            why = f"expression {expr.text!r} on {shown(value)}: {exc}"
            raise self.fail(ctx, why, limit=isinstance(exc, ExpressionLimit)) from None
        if not isinstance(result, str | bool | int | float) and result is not None:
            raise self.fail(ctx, f"expression {expr.text!r} gave a {type(result).__name__}")
        return result


@dataclass(frozen=True)
class Passthrough:
    """Unmapped columns whose names match `glob` (`custom:*`) go into attributes, the
    literal prefix before `*` stripped when `strip_prefix`."""

    pattern: re.Pattern[str]
    prefix: str
    strip_prefix: bool

    def key(self, column: str) -> str | None:
        if not self.pattern.fullmatch(column):
            return None
        return column[len(self.prefix) :] if self.strip_prefix else column


@dataclass(frozen=True)
class Mapping:
    name: str
    version: str
    rules: tuple[FieldRule, ...]
    attribute_rules: tuple[FieldRule, ...] = ()
    passthrough: tuple[Passthrough, ...] = ()
    used_columns: frozenset[str] = frozenset()

    def apply(self, row: Row, *, item: str, meta: dict[str, str] | None = None) -> dict[str, Any]:
        """The mapped fields; MappingError names the item, field and value that failed."""
        ctx = Context(row=row, meta=meta or {}, item=item)
        fields: dict[str, Any] = {rule.target: rule.apply(ctx) for rule in self.rules}
        if self.attribute_rules or self.passthrough:
            fields["attributes"] = self.attributes(ctx)
        return fields

    def attributes(self, ctx: Context) -> dict[str, str]:
        out: dict[str, str] = {}
        for column, value in ctx.row.items():
            if value is None or column in self.used_columns:
                continue
            for rule in self.passthrough:
                key = rule.key(column)
                if key is not None:
                    out[key] = value
                    break
        for attribute in self.attribute_rules:
            mapped = attribute.apply(ctx)
            if mapped is not None:
                text = str(mapped).lower() if isinstance(mapped, bool) else str(mapped)
                out[attribute.target.removeprefix("attributes.")] = text
        return out

    def apply_field(
        self, target: str, row: Row, *, item: str, meta: dict[str, str] | None = None
    ) -> Value:
        """One field alone (e.g. the sku of a vanished item, of which only the key is known)."""
        rule = next(rule for rule in self.rules if rule.target == target)
        return rule.apply(Context(row=row, meta=meta or {}, item=item))
