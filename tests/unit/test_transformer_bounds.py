"""Expression bombs, one per class: each is refused when the mapping compiles (made of
constants) or stops on the record as a limit (`mapping_limit`) well within its budget,
whatever one operation of it would have cost. Times are asserted generously (the
machine is shared): < 1 s for a 50 ms budget; unbounded, each ran for seconds to
minutes or exhausted memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from services.transformer.compiler import compile_mapping
from services.transformer.expressions import (
    ExpressionError,
    ExpressionLimit,
    compile_expression,
)
from services.transformer.mapping import MappingError

GENEROUS_S = 1.0

# (expression of `value`, the value): one per class of bomb.
RECORD_BOMBS = [
    # nested repetition: 10**8 references, each walked by the old evaluator (40 s+)
    ("9999 * (((value,)*9999,)*9999,)", "x"),
    # the text of a nested repetition: 10**8 strings (memory)
    ("str(((value,)*9999,)*9999)", "x"),
    ("concat(((value,)*999,)*999)", "x"),
    ("len(str(((((value,)*20,)*20,)*20,)*20))", "x"),
    # repetition and concatenation of text and tuples
    ("value * 10_000_000", "x"),
    ("(value,) * 10_000_000", "x"),
    ("((value,) * 4000) + ((value,) * 4000)", "ab"),
    ("replace(value * 1000, 'a', value * 1000)", "a"),
    # huge numbers: exponent, product, shift, round to a huge precision
    ("value ** value ** value", 10),
    ("2 ** (value * 1000000)", 1),
    ("(value << 4000) * (value << 4000)", 1),
    ("value << (value * 10**6)", 1),
    ("round(value, -10**6)", 5),  # computes 10**(10**6): 0.5 s in one C call
    # deep nesting of made values
    ("((((((((((value,) * 9,) * 9,) * 9,) * 9,) * 9,) * 9,) * 9,) * 9,) * 9,)", "x"),
    # min/max/comparisons over a repetition
    ("max(((value,) * 9999,) * 9999)", "x"),
    ("((value,) * 9999,) * 9999 == ((value,) * 9999,) * 9999", "x"),
]


@pytest.mark.parametrize(("text", "value"), RECORD_BOMBS)
def test_a_bomb_on_a_record_stops_as_a_limit(text: str, value: Any) -> None:
    expression = compile_expression(text)

    started = time.perf_counter()
    with pytest.raises(ExpressionLimit):
        expression.evaluate({"value": value})

    assert time.perf_counter() - started < GENEROUS_S


@pytest.mark.parametrize(
    "text",
    [
        "9999 * ((('x',)*9999,)*9999,)",  # hung the compiler: the transformer never started
        "str((('x',)*9999,)*9999)",
        "'x' * 10**9",
        "10 ** 10 ** 10",
        "round(5, -10**7)",
        "((('x',) * 5000) + (('y',) * 5000))",
    ],
)
def test_a_bomb_made_of_constants_is_refused_when_compiled(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)

    assert "fails on every record" in str(caught.value)
    assert time.perf_counter() - started < GENEROUS_S


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("range(10**12)", "unknown name 'range'"),  # no ranges
        ("[c for c in value]", "ListComp is not allowed"),  # no comprehensions of any kind
        ("{c for c in value}", "SetComp is not allowed"),
        ("{c: c for c in value}", "DictComp is not allowed"),
        ("len(c for c in value * 9999)", "GeneratorExp is not allowed"),
        ("[value] * 9999", "List is not allowed"),
        ("{'a': value}", "Dict is not allowed"),
        ("(" * 300 + "value" + ")" * 300, "not a valid expression"),  # nesting of the text
        ("-" * 300 + "value", "too complex"),
        ("str(" * 150 + "value" + ")" * 150, "too complex"),
        ("value + '\udc80'", "not a valid expression: 'utf-8' codec can't encode"),
    ],
)
def test_loops_comprehensions_and_deep_text_are_refused_when_compiled(text: str, why: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)

    assert why in str(caught.value)
    assert time.perf_counter() - started < GENEROUS_S


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        # Values from the record pass through when selected, whatever their size.
        ("value if value else 'none'", "d" * 50_000, "d" * 50_000),
        ("substr(value, 0, 3)", "d" * 50_000, "ddd"),
        # Made values up to the bound are fine.
        ("len(value * 9000)", "x", 9000),
        ("len(str((value,) * 1500))", "ab", 1500 * 6),
        ("value in ('UND', 'UN', 'UNIT')", "UN", True),
        ("round(value, 2)", 1.23456, 1.23),
        ("2 ** 2000 > value", 1, True),
    ],
)
def test_values_within_the_bounds_work(text: str, value: Any, expected: object) -> None:
    assert compile_expression(text).evaluate({"value": value}) == expected


def test_a_record_over_a_bound_is_dead_lettered_as_mapping_limit_naming_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(
        "name: bomb\nfields:\n  sku: {source: ref}\n"
        "  name: {source: n, expr: \"str(((value,)*9999,)*9999) if value == 'BOOM' else value\"}\n"
    )
    mapping = compile_mapping(path)

    assert mapping.apply({"ref": "A-1", "n": "fine"}, item="A-1")["name"] == "fine"
    started = time.perf_counter()
    with pytest.raises(MappingError) as caught:
        mapping.apply({"ref": "A-2", "n": "BOOM"}, item="A-2")

    assert time.perf_counter() - started < GENEROUS_S
    assert caught.value.error_class == "mapping_limit"
    assert caught.value.message.startswith("item A-2: field name: expression ")
    assert "longer than 10000 characters" in caught.value.message


def test_an_ordinary_failure_stays_a_mapping_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(
        "name: plain\nfields:\n  sku: {source: ref}\n  name: {source: n, expr: \"row['nope']\"}\n"
    )
    mapping = compile_mapping(path)

    with pytest.raises(MappingError) as caught:
        mapping.apply({"ref": "A-1", "n": "x"}, item="A-1")

    assert caught.value.error_class == "mapping"
    assert "KeyError" in caught.value.message
