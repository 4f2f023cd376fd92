"""Expressions in mapping files: useful ones work; hostile ones are refused when the
mapping is compiled (start-up) or stopped within 50 ms on the record (which then goes
to the DLQ naming the field)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import ConfigError
from services.transformer.compiler import compile_mapping
from services.transformer.expressions import (
    ExpressionError,
    ExpressionFailed,
    compile_expression,
)
from services.transformer.mapping import MappingError

LIMIT_S = 0.050


@pytest.mark.parametrize(
    ("text", "names", "expected"),
    [
        ("upper(value)", {"value": "abc"}, "ABC"),
        ("value * 2 + 1", {"value": 20}, 41),
        ("round(value / 1000, 3)", {"value": 1234.5}, 1.234),
        ("concat(row['a'], '-', row['b'])", {"row": {"a": "X", "b": "Y"}}, "X-Y"),
        ("coalesce(row['a'], row['b'], 'none')", {"row": {"a": None, "b": ""}}, "none"),
        ("'UNIT' if value in ('UND', 'UN') else value", {"value": "UN"}, "UNIT"),
        ("substr(value, 0, 3)", {"value": "ABCDEF"}, "ABC"),
        ("replace(value, ';', ',')", {"value": "a;b"}, "a,b"),
        ("len(collapse(value))", {"value": "a   b"}, 3),
        ("decimal('1.234,5') + 1", {}, 1235.5),
        ("startswith(key, 'CAM') and tenant == 'acme'", {"key": "CAM-1", "tenant": "acme"}, True),
    ],
)
def test_useful_expressions(text: str, names: dict[str, Any], expected: object) -> None:
    assert compile_expression(text).evaluate(names) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10**10**10", "too large"),
        ("().__class__", "Attribute is not allowed"),
        ("__import__('os')", "unknown name '__import__'"),
        ("'x' * 10_000_000", "longer than 10000 characters"),  # 10 MB
        ("'x' * 5_000_000 + 'y' * 5_000_000", "longer than 10000 characters"),
        ("(1,) * 10_000_000", "longer than 10000 characters"),
        ("'%10000000s' % 'x'", "%-formatting is not allowed"),
        ("9 ** 4000000", "too large"),
        ("1 << 10**6", "too large"),
        ("value.__class__.__mro__", "Attribute is not allowed"),
        ("row.get('x')", "Attribute is not allowed"),
        ("open('/etc/passwd')", "unknown name 'open'"),
        ("eval('1')", "unknown name 'eval'"),
        ("getattr(value, 'upper')", "unknown name 'getattr'"),
        ("[c for c in value]", "not allowed"),
        ("(lambda: 1)()", "Lambda is not allowed"),
        ("f'{value:>10000000}'", "JoinedStr is not allowed"),
        ("_secret", "unknown name '_secret'"),
        ("value; 1", "not a valid expression"),
        ("x := 1", "not a valid expression"),
        ("1 +" * 400 + "1", "longer than 1000 characters"),
    ],
)
def test_hostile_expressions_are_refused_at_compile_time(text: str, why: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError) as caught:
        compile_expression(text)

    assert why in str(caught.value)
    assert time.perf_counter() - started < LIMIT_S


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("value ** value ** value", 10),  # 10**10**10 with the numbers from the row
        ("int(value) ** 4000000", "9"),
        ("value * 10_000_000", "x"),  # a 10 MB string
        ("value * int('10000000')", "x"),
        ("concat(value, value, value)", "y" * 5000),
        ("replace(value, 'a', value)", "a" * 5000),
        ("upper(value * 1000)", "abcdefghijklmnop"),
        ("(value << 5000) * (value << 5000)", 1),
        ("int(value)", "9" * 100_000),  # too many digits
        ("value / 0", 1),
    ],
)
def test_hostile_expressions_on_a_record_stop_within_50ms(text: str, value: object) -> None:
    expression = compile_expression(text)

    started = time.perf_counter()
    with pytest.raises(ExpressionFailed):
        expression.evaluate({"value": value})

    assert time.perf_counter() - started < LIMIT_S


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text("name: hostile\nfields:\n  sku: {source: ref}\n" + body)
    return path


def test_a_mapping_with_hostile_expressions_does_not_compile_and_names_each(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "  name: {source: n, expr: \"__import__('os').system('id')\"}\n"
        "  unit: {source: u, expr: '().__class__'}\n"
        "  group_code: {source: g, expr: '10**10**10'}\n",
    )

    with pytest.raises(ConfigError) as caught:
        compile_mapping(path)

    problems = caught.value.problems
    assert len(problems) == 3
    for field in ("name", "unit", "group_code"):
        assert any(p.startswith(f"{path}: field {field}: expr ") for p in problems), field


def test_a_hostile_expression_at_run_time_rejects_the_record_naming_field_and_value(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "  name: {source: n, expr: 'value * int(row[\"times\"])'}\n")
    mapping = compile_mapping(path)

    started = time.perf_counter()
    with pytest.raises(MappingError) as caught:
        mapping.apply({"ref": "A-1", "n": "x", "times": "10000000"}, item="A-1")

    assert time.perf_counter() - started < LIMIT_S
    message = caught.value.message
    assert message.startswith("item A-1: field name: expression ")
    assert "'x'" in message
    assert "longer than 10000 characters" in message
