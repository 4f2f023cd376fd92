"""Mapping patterns: Python regex syntax as before, but a catastrophic pattern stops
within its 50 ms budget and dead-letters the record as `mapping_limit`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services.common.errors import ConfigError
from services.transformer.bounds import LimitExceeded
from services.transformer.compiler import compile_mapping
from services.transformer.mapping import MappingError
from services.transformer.patterns import Pattern, PatternError

GENEROUS_S = 1.0

# Exponential even for `regex` (it matches some classics such as (a+)+$ in polynomial
# time, 0.1 s on 5,000 characters: too close to the budget to test with).
CATASTROPHIC = [
    (r"(a|aa)+$", "a" * 100 + "!"),
    (r"([A-Z]|[A-Z]{2})+", "A" * 60 + "!"),
    (r"(\w|\w\w)+$", "a" * 60 + "!"),
    (r"(.*a){20}", "a" * 5000 + "!"),
    (r"((a{1,10}){1,10}){1,10}b", "a" * 200),
]


@pytest.mark.parametrize(("pattern", "text"), CATASTROPHIC)
def test_a_catastrophic_pattern_stops_within_its_budget(pattern: str, text: str) -> None:
    compiled = Pattern(pattern)

    started = time.perf_counter()
    with pytest.raises(LimitExceeded, match="pattern took longer than 50 ms"):
        compiled.fullmatch(text)

    assert time.perf_counter() - started < GENEROUS_S


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"\d{8}|\d{12,13}", "7701234000011", True),
        (r"\d{8}|\d{12,13}", "77012340000", False),  # the whole text must match
        (r"a\{e<=1\}|[{]x}", "a{e<=1}", True),  # literal braces, escaped or in a class
        (r"[A-Z0-9][A-Z0-9-]{0,49}", "CAM-001", True),
        (r"(?i)und|un", "UND", True),
        (r"\d+", "٣٤", True),  # \d is Unicode, as in re
        (r"(?>a+)b", "aaab", True),  # atomic groups and possessive quantifiers, as in re
        (r"a++b", "aab", True),
        (r"(a+)+$", "aaaa", True),  # catastrophic only on some texts
    ],
)
def test_patterns_match_as_python_re_does(pattern: str, text: str, matches: bool) -> None:
    assert Pattern(pattern).fullmatch(text) is matches


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("([A-Z", "unterminated character set"),
        (r"\p{L}+", "bad escape \\p"),  # regex's syntax, not re's
        ("(?:ab){e<=1}", "a literal { must be written \\{"),  # regex's fuzzy matching
        ("a{i}", "a literal { must be written \\{"),
        ("(?|a)", "unknown extension ?|"),  # regex's branch reset
        ("[[:alpha:]]", "ambiguous: Possible nested set"),  # read otherwise by other engines
        ("[a-z--aeiou]", "ambiguous: Possible set difference"),
    ],
)
def test_patterns_outside_re_syntax_are_refused(pattern: str, why: str) -> None:
    with pytest.raises(PatternError) as caught:
        Pattern(pattern)

    assert why in str(caught.value)


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "patterns.yaml"
    path.write_text("name: patterns\nfields:\n  sku: {source: ref}\n" + body)
    return path


def test_refused_patterns_name_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "  name: {source: n, pattern: '[[:alpha:]]+'}\n  unit: {source: u, pattern: '\\p{L}'}\n",
    )

    with pytest.raises(ConfigError) as caught:
        compile_mapping(path)

    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(f"{path}: field name: pattern '[[:alpha:]]+': ambiguous")
    assert problems[1].startswith(f"{path}: field unit: pattern '\\\\p{{L}}': bad escape")


@pytest.mark.parametrize("on_mismatch", ["reject", "null"])
def test_a_pattern_over_its_budget_dead_letters_the_record_as_mapping_limit(
    tmp_path: Path, on_mismatch: str
) -> None:
    path = write(
        tmp_path,
        f"  name: {{source: n, pattern: '(a|aa)+$', on_mismatch: '{on_mismatch}'}}\n",
    )
    mapping = compile_mapping(path)

    assert mapping.apply({"ref": "A-1", "n": "aaaa"}, item="A-1")["name"] == "aaaa"
    started = time.perf_counter()
    with pytest.raises(MappingError) as caught:
        mapping.apply({"ref": "A-2", "n": "a" * 100 + "!"}, item="A-2")

    assert time.perf_counter() - started < GENEROUS_S
    assert caught.value.error_class == "mapping_limit"
    assert caught.value.message.startswith("item A-2: field name: n='aaaa")
    assert "/(a|aa)+$/: pattern took longer than 50 ms on 101 characters" in caught.value.message
