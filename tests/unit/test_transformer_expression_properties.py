"""Property: any expression built from the allowed grammar (every operator, function,
comparison, subscript and tuple, big numbers and repetitions included) is either
refused when compiled or finishes within 100 ms on a record, with a value or with
ExpressionFailed; nothing else escapes the sandbox."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.transformer.bounds import FUNCTIONS
from services.transformer.expressions import (
    ExpressionError,
    ExpressionFailed,
    ExpressionLimit,
    compile_expression,
)

LIMIT_S = 0.100

BINARY = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "|", "&", "^"]
COMPARE = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"]
UNARY = ["-", "+", "~", "not "]

numbers = st.one_of(
    st.integers(-3, 10),
    st.sampled_from([99, 999, 4096, 9999, 10**6, 10**9, 2**31, -(10**6)]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
texts = st.text(alphabet="ab ,.-0123456789UND\u00e9", max_size=12)
constants = st.one_of(
    numbers.map(repr),
    texts.map(repr),
    st.sampled_from(["None", "True", "False", "()"]),
)
names = st.sampled_from(
    ["value", "row['a']", "row['b']", "row", "tenant", "key", "company", "consulta"]
)


def binary(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, o, b: f"({a} {o} {b})", children, st.sampled_from(BINARY), children)


def compare(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda a, o, b: f"({a} {o} {b})", children, st.sampled_from(COMPARE), children)


def call(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda f, args: f"{f}({', '.join(args)})",
        st.sampled_from(sorted(FUNCTIONS)),
        st.lists(children, max_size=3),
    )


def repeat(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The shape of the known bombs: repetition of a (nested) tuple or text."""
    return st.builds(
        lambda a, n, wrap: f"(({a},) * {n})" if wrap else f"({a} * {n})",
        children,
        st.sampled_from([2, 99, 999, 9999, 10**6]),
        st.booleans(),
    )


def extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        binary(children),
        compare(children),
        call(children),
        repeat(children),
        st.builds(lambda o, a: f"({o}{a})", st.sampled_from(UNARY), children),
        st.builds(
            lambda a, o, b: f"({a} {o} {b})", children, st.sampled_from(["and", "or"]), children
        ),
        st.builds(lambda a, c, b: f"({a} if {c} else {b})", children, children, children),
        st.builds(lambda a, i: f"{a}[{i}]", children, children),
        st.builds(
            lambda a, i, j, k: f"{a}[{i}:{j}:{k}]",
            children,
            st.sampled_from(["", "1", "-2", "value"]),
            st.sampled_from(["", "3", "-1"]),
            st.sampled_from(["", "2", "-1"]),
        ),
        st.lists(children, max_size=4).map(lambda xs: f"({', '.join(xs)},)" if xs else "()"),
    )


expressions = st.recursive(st.one_of(constants, names), extend, max_leaves=25)
values = st.one_of(st.none(), texts, numbers, st.booleans(), st.text(max_size=200))


@pytest.fixture(autouse=True, scope="module")
def frozen_heap() -> Iterator[None]:
    """What the test session holds is left out of garbage collections while the times
    are taken: a full collection of pytest's heap is not the sandbox's time."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(text=expressions, value=values, a=texts, b=values)
def test_an_expression_is_refused_at_compile_time_or_finishes_within_100ms(
    text: str, value: Any, a: str, b: Any
) -> None:
    started = time.perf_counter()
    try:
        expression = compile_expression(text)
    except ExpressionError:
        event("refused at compile time")
        assert time.perf_counter() - started < LIMIT_S
        return
    started = time.perf_counter()
    try:
        expression.evaluate(
            {
                "value": value,
                "row": {"a": a, "b": b if b is None else str(b)},
                "tenant": "acme",
                "key": "CAM-001",
                "company": "8585",
                "consulta": "API_v2_Items",
            }
        )
        event("a value")
    except ExpressionLimit:
        event("stopped at a bound")
    except ExpressionFailed:
        event("failed on the record")
    elapsed = time.perf_counter() - started

    assert elapsed < LIMIT_S, f"{text!r} took {elapsed * 1000:.0f} ms"
