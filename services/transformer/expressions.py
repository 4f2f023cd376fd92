"""Safe expressions in mapping files, evaluated by simpleeval inside tighter bounds.

An expression is one line such as `upper(value) if value else col('f120_descripcion')`.
It is compiled once, at start-up, and refused there when it is not in the allowed
subset: only the names `value`, `row`, `tenant`, `company`, `consulta`, `key`, the
functions in FUNCTIONS, literals, arithmetic, comparisons, `and`/`or`/`not`,
`x if c else y`, tuples and `row['col']` / `text[1:3]` subscripts. No attribute access
(so no `().__class__`), no names starting with `_`, no f-strings, no comprehensions,
no lambdas. An expression made of constants alone is evaluated once at compile time,
so `10**10**10` or `'x' * 10_000_000` stop the service before it starts.

At run time every operation is bounded: powers, integer sizes and the length of any
string an operation or function makes (`MAX_TEXT`), and a deadline per evaluation
(`TIME_BUDGET_S`) checked before each node. Since there are no loops, each node costs
at most one bounded operation. Any failure is an ExpressionFailed (the record goes to
the DLQ naming the field), never a crash.
"""

from __future__ import annotations

import ast
import operator as op
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import simpleeval

from services.transformer.convert import collapse, to_decimal

MAX_SOURCE = 1000  # characters of expression text
MAX_NODES = 200  # AST nodes of one expression
MAX_TEXT = 10_000  # characters of any string an operation makes
MAX_INT_BITS = 4096  # size of any integer an operation makes
TIME_BUDGET_S = 0.05  # per evaluation

NAMES = ("value", "row", "tenant", "company", "consulta", "key")


class ExpressionError(ValueError):
    """An expression refused at compile time."""


class ExpressionFailed(ValueError):
    """An expression that failed (or went over a bound) on one record."""


def _text_bound(result: Any) -> Any:
    if isinstance(result, str) and len(result) > MAX_TEXT:
        raise ExpressionFailed(f"result longer than {MAX_TEXT} characters")
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
        raise ExpressionFailed(f"integer larger than {MAX_INT_BITS} bits")
    return result


def _power(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, int):
        if b < 0:
            return float(a) ** b
        if b > MAX_INT_BITS or max(abs(a), 1).bit_length() * b > MAX_INT_BITS:
            raise ExpressionFailed(f"{a} ** {b} is too large")
    return _text_bound(a**b)


def _mult(a: Any, b: Any) -> Any:
    for seq, times in ((a, b), (b, a)):
        if isinstance(seq, str | tuple) and isinstance(times, int):
            if len(seq) * times > MAX_TEXT:
                raise ExpressionFailed(f"result longer than {MAX_TEXT} characters")
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise ExpressionFailed("integer product too large")
    return a * b


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, str | tuple) and isinstance(b, str | tuple) and len(a) + len(b) > MAX_TEXT:
        raise ExpressionFailed(f"result longer than {MAX_TEXT} characters")
    return _text_bound(a + b)


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        raise ExpressionFailed("%-formatting is not allowed")
    return a % b


def _shift(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def shift(a: Any, b: Any) -> Any:
        if isinstance(b, int) and b > MAX_INT_BITS:
            raise ExpressionFailed("shift too large")
        return _text_bound(fn(a, b))

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
    if old and len(text) + text.count(old) * (len(new) - len(old)) > MAX_TEXT:
        raise ExpressionFailed(f"result longer than {MAX_TEXT} characters")
    if not old and len(text) * (len(new) + 1) > MAX_TEXT:
        raise ExpressionFailed(f"result longer than {MAX_TEXT} characters")
    return text.replace(old, new)


def _concat(*parts: Any) -> str:
    texts = ["" if p is None else str(p) for p in parts]
    if sum(len(t) for t in texts) > MAX_TEXT:
        raise ExpressionFailed(f"result longer than {MAX_TEXT} characters")
    return "".join(texts)


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None and v != ""), None)


def _substr(text: str, start: int, end: int | None = None) -> str:
    return text[start:end]


def _str(value: Any) -> str:
    text = "" if value is None else str(value)
    _text_bound(text)
    return text


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "str": _str,
    "int": int,
    "float": float,
    "decimal": to_decimal,
    "len": len,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "upper": lambda s: _text_bound(s.upper()),
    "lower": lambda s: _text_bound(s.lower()),
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

_ALLOWED_NODES = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.operator,
    ast.unaryop,
    ast.boolop,
    ast.cmpop,
)


class _Evaluator(simpleeval.SimpleEval):  # type: ignore[misc]  # simpleeval ships no types
    def __init__(self) -> None:
        super().__init__(operators=OPERATORS, functions=dict(FUNCTIONS), names={})
        self.nodes[ast.Tuple] = lambda node: tuple(self._eval(e) for e in node.elts)
        self.deadline = 0.0

    def _eval(self, node: ast.AST) -> Any:
        if time.perf_counter() > self.deadline:
            raise ExpressionFailed(f"took longer than {TIME_BUDGET_S * 1000:.0f} ms")
        return super()._eval(node)


def _check_tree(tree: ast.Expression) -> list[str]:
    problems: list[str] = []
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        problems.append(f"too complex ({len(nodes)} nodes, at most {MAX_NODES})")
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            problems.append(f"{type(node).__name__} is not allowed")
        elif isinstance(node, ast.Name):
            if node.id.startswith("_") or node.id not in (*NAMES, *FUNCTIONS):
                problems.append(f"unknown name {node.id!r}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                problems.append("only the listed functions can be called")
            if node.keywords:
                problems.append("keyword arguments are not allowed")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            if isinstance(node.value, bytes):
                problems.append("bytes literals are not allowed")
    return list(dict.fromkeys(problems))


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.expr
    uses_names: bool

    def evaluate(self, names: dict[str, Any]) -> Any:
        evaluator = _EVALUATOR
        evaluator.names = names
        evaluator.deadline = time.perf_counter() + TIME_BUDGET_S
        try:
            return evaluator.eval(self.text, previously_parsed=self.tree)
        except ExpressionFailed:
            raise
        # The sandbox's edge: whatever the expression raised is this record's failure.
        except Exception as exc:  # noqa: BLE001
            raise ExpressionFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        finally:
            evaluator.names = {}


_EVALUATOR = _Evaluator()


def compile_expression(text: str) -> Expression:
    """Parse and check `text`; ExpressionError says every reason it is refused."""
    if len(text) > MAX_SOURCE:
        raise ExpressionError(f"longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg}") from None
    problems = _check_tree(tree)
    if problems:
        raise ExpressionError("; ".join(problems))
    uses_names = any(isinstance(n, ast.Name) and n.id in NAMES for n in ast.walk(tree))
    expression = Expression(text=text, tree=tree.body, uses_names=uses_names)
    if not uses_names:
        # Constants alone: the result is the same for every record, so find out now.
        try:
            expression.evaluate({})
        except ExpressionFailed as exc:
            raise ExpressionError(f"fails on every record: {exc}") from None
    return expression
