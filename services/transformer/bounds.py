"""The bounds of the expression sandbox, and the operators and functions that keep them.

A thread can't be interrupted inside one C call, so no single operation of an
expression may be large. Each value an operation makes is bounded by its *size*: the
length of its text, as `str()` would write it (characters of a string, digits of a
number, and for a tuple its elements' sizes plus 2 each, nested tuples counted in
full). Every value an operator, a function or a tuple display makes is at most
`MAX_SIZE`; the operations that could make a large value from small ones (repetition,
concatenation, powers, shifts, `replace`, `str` and `concat` of a tuple, `round` to a
huge number of digits) check the size of their result *before* running. Integers stay
within `MAX_INT_BITS`. So every C call costs at most about `MAX_SIZE` steps (given inputs
of bounded size: the extractor caps each field), and memory stays within a few MB.

Values from the record (`value`, `row`, ...) pass through unchanged when only selected
(`value if c else x`, `row['a']`, `value[1:3]`); anything made from them is bounded.
"""

from __future__ import annotations

import ast
import operator as op
from collections.abc import Callable
from typing import Any

import simpleeval

from services.transformer.convert import collapse, to_decimal

MAX_SIZE = 10_000  # the text of any value an operation makes, in characters
MAX_INT_BITS = 4096  # any integer an operation makes
MAX_ROUND_DIGITS = 1000  # round(x, n): |n| (10**n is computed for integers)
_FLOAT_SIZE = 25  # the longest repr of a float


class LimitExceeded(ValueError):
    """A value over a bound (refused before it is made wherever making it could be
    costly): the record goes to the DLQ as `mapping_limit`."""


def _too_long() -> LimitExceeded:
    return LimitExceeded(f"result longer than {MAX_SIZE} characters")


def size(value: Any, limit: int = MAX_SIZE) -> int:
    """The length of `value`'s text, as str() would write it, give or take quoting;
    counting stops past `limit` (the walk costs at most about `limit` steps)."""
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            total += len(item)
        elif kind is int:
            total += item.bit_length() // 3 + 2
        elif kind is tuple:
            total += 2 + 2 * len(item)
            stack.extend(item)
        elif kind is dict:
            total += 2 + 4 * len(item)
            for pair in item.items():
                stack.extend(pair)
        elif kind is float:
            total += _FLOAT_SIZE
        elif kind is complex:
            total += 2 * _FLOAT_SIZE
        else:  # None, bools, functions named as values
            total += 5
    return total


def check(value: Any) -> Any:
    """`value` if it is within the bounds, else LimitExceeded."""
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise LimitExceeded(f"integer larger than {MAX_INT_BITS} bits")
    if type(value) is not str and type(value) is not tuple:
        return value  # numbers, booleans and None are small once their bits are bounded
    if size(value) > MAX_SIZE:
        raise _too_long()
    return value


def _power(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if b < 0:
            return float(a) ** b
        if b > MAX_INT_BITS or max(abs(a), 1).bit_length() * b > MAX_INT_BITS:
            raise LimitExceeded(f"{a} ** {b} is too large")
    return a**b


def _mult(a: Any, b: Any) -> Any:
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, str | tuple) and isinstance(times, int):
            if times > 0 and size(seq) * times > MAX_SIZE:
                raise _too_long()
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise LimitExceeded("integer product too large")
    return a * b


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str | tuple) and isinstance(b, str | tuple):
        if size(a) + size(b) > MAX_SIZE:
            raise _too_long()
    return a + b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        raise TypeError("%-formatting is not allowed")
    return a % b


def _shift(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def shift(a: Any, b: Any) -> Any:
        if isinstance(b, int) and b > MAX_INT_BITS:
            raise LimitExceeded(f"shift by {b} is too large")
        return fn(a, b)

    return shift


OPERATORS: dict[type, Callable[..., Any]] = {
    **simpleeval.DEFAULT_OPERATORS,
    ast.Add: _add,
    ast.Mult: _mult,
    ast.Pow: _power,
    ast.Mod: _mod,
    ast.LShift: _shift(op.lshift),
    ast.RShift: _shift(op.rshift),
}


def _replace(text: str, old: str, new: str) -> str:
    if old and len(text) + str.count(text, old) * (len(new) - len(old)) > MAX_SIZE:
        raise _too_long()
    if not old and len(text) * (len(new) + 1) > MAX_SIZE:
        raise _too_long()
    return str.replace(text, old, new)


def _concat(*parts: Any) -> str:
    if sum(size(p) for p in parts) > MAX_SIZE:
        raise _too_long()
    return "".join("" if p is None else str(p) for p in parts)


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _substr(text: str, start: int, end: int | None = None) -> str:
    return text[start:end]


def _str(value: Any) -> str:
    if value is None:
        return ""
    if size(value) > MAX_SIZE:
        raise _too_long()
    return str(value)


def _round(number: Any, digits: Any = None) -> Any:
    if isinstance(digits, int) and abs(digits) > MAX_ROUND_DIGITS:
        raise LimitExceeded(f"round to {digits} digits (at most {MAX_ROUND_DIGITS})")
    return round(number) if digits is None else round(number, digits)


# The functions an expression may call; each result is checked by the evaluator.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "str": _str,
    "int": int,
    "float": float,
    "decimal": to_decimal,
    "len": len,
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "upper": str.upper,
    "lower": str.lower,
    "trim": str.strip,
    "collapse": collapse,
    "replace": _replace,
    "substr": _substr,
    "concat": _concat,
    "coalesce": _coalesce,
    "startswith": str.startswith,
    "endswith": str.endswith,
    "contains": lambda s, sub: sub in s,
}
