"""Safe expressions in mapping files, evaluated by simpleeval inside hard bounds.

An expression is one line such as `upper(value) if value else row['f120_descripcion']`.
It is compiled once, at start-up, and refused there when it is not in the allowed
subset: only the names `value`, `row`, `tenant`, `company`, `consulta`, `key`, the
functions in FUNCTIONS, literals, arithmetic, comparisons, `and`/`or`/`not`,
`x if c else y`, tuples and `row['col']` / `text[1:3]` subscripts. No attribute access
(so no `().__class__`), no names starting with `_`, no f-strings, no comprehensions,
no lambdas. An expression made of constants alone is evaluated once at compile time,
under the same bounds, so `10**10**10` or `'x' * 10_000_000` stop the service before it
starts.

At run time two bounds hold, whatever the expression does:
- each operation is small: every value an operator, a function or a tuple makes is at
  most `bounds.MAX_SIZE` characters of text (nested tuples counted in full) and
  `bounds.MAX_INT_BITS` bits, checked *before* the operations that could grow a value
  (`bounds.py`), so no single C call runs long or takes much memory;
- each evaluation has `TIME_BUDGET_S` of CPU time, enforced by a watchdog that
  interrupts the evaluating thread at its next bytecode (`watchdog.py`), not by checks
  between steps; one over it gets one second try (a garbage collection may have been
  charged to it), so a bomb costs at most twice the budget.

Going over either is an ExpressionLimit (the record goes to the DLQ as `mapping_limit`);
any other failure is an ExpressionFailed (DLQ, `mapping`); never a crash.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass
from typing import Any

import simpleeval

from services.transformer.bounds import FUNCTIONS, OPERATORS, LimitExceeded, check
from services.transformer.watchdog import WATCHDOG, Overran

MAX_SOURCE = 1000  # characters of expression text
MAX_NODES = 200  # AST nodes of one expression
TIME_BUDGET_S = 0.05  # per evaluation

NAMES = ("value", "row", "tenant", "company", "consulta", "key")


class ExpressionError(ValueError):
    """An expression refused at compile time."""


class ExpressionFailed(ValueError):
    """An expression that failed on one record."""


class ExpressionLimit(ExpressionFailed):
    """An expression that went over a bound (time, size) on one record."""


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


# The nodes that make a value (rather than select one): their results are bounded.
_MAKERS = frozenset({ast.BinOp, ast.UnaryOp, ast.Call, ast.Tuple})


class _Evaluator(simpleeval.SimpleEval):  # type: ignore[misc]  # simpleeval ships no types
    def __init__(self) -> None:
        super().__init__(operators=OPERATORS, functions=dict(FUNCTIONS), names={})
        self.nodes[ast.Tuple] = lambda node: tuple(self._eval(e) for e in node.elts)

    def _eval(self, node: ast.AST) -> Any:
        # In place of simpleeval's walk of every result for forbidden functions (the
        # grammar reaches none, and the walk itself is as long as the value): the bounds.
        kind = type(node)
        result = self.nodes[kind](node)
        return check(result) if kind in _MAKERS else result


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
        evaluator = _evaluator()
        evaluator.names = names
        try:
            try:
                return WATCHDOG.run(TIME_BUDGET_S, evaluator.eval, self.text, self.tree)
            except Overran:
                # A garbage collection of the whole heap can land in an evaluation and
                # be charged to it; a real bomb goes over again, an innocent one not.
                return WATCHDOG.run(TIME_BUDGET_S, evaluator.eval, self.text, self.tree)
        except (LimitExceeded, Overran) as exc:
            raise ExpressionLimit(str(exc)) from None
        # The sandbox's edge: whatever the expression raised is this record's failure.
        except Exception as exc:  # noqa: BLE001
            raise ExpressionFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        finally:
            evaluator.names = {}


_LOCAL = threading.local()


def _evaluator() -> _Evaluator:
    """This thread's evaluator (one evaluation at a time uses it)."""
    evaluator: _Evaluator | None = getattr(_LOCAL, "evaluator", None)
    if evaluator is None:
        evaluator = _LOCAL.evaluator = _Evaluator()
    return evaluator


def compile_expression(text: str) -> Expression:
    """Parse and check `text`; ExpressionError says every reason it is refused."""
    if len(text) > MAX_SOURCE:
        raise ExpressionError(f"longer than {MAX_SOURCE} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # a lone surrogate, nesting too deep
        raise ExpressionError(f"not a valid expression: {exc}") from None
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
