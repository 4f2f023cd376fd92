"""Mapping `pattern`s: Python regex syntax, matched with a time budget.

Python's `re` can't be stopped: a pattern such as `(a+)+$` backtracks exponentially on
a long run of `a`s, inside one C call that no watchdog interrupts. So patterns are
matched by the `regex` module, which takes a timeout, with `TIME_BUDGET_S` per match;
a match that runs out of time is a LimitExceeded (the record goes to the DLQ as
`mapping_limit`). `regex` is compatible with `re` (its default VERSION0), and the
syntax stays `re`'s: a pattern is compiled by both, so one `re` refuses (such as
`regex`'s own `\\p{L}` or recursion) is refused as before, and so is one `re` warns may
mean something else elsewhere (`[[:alpha:]]`, `[a--b]`), and one with a `{` that is not
a repeat count: `re` reads `a{e<=1}` as text, `regex` as fuzzy matching, so a literal `{`
is written `\\{`.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import regex  # type: ignore[import-untyped]  # regex ships no types

from services.transformer.bounds import LimitExceeded

TIME_BUDGET_S = 0.05  # per match
# Outside a character class: an escape, a class, or a brace (a repeat count, or not).
_TOKEN = re.compile(r"\\.|\[\^?\]?(?:\\.|[^\]\\])*\]|\{(\d*(?:,\d*)?\})?", re.DOTALL)


class PatternError(ValueError):
    """A pattern refused at compile time."""


class Pattern:
    """A compiled pattern that matches within its budget or raises LimitExceeded."""

    def __init__(self, text: str) -> None:
        try:
            with warnings.catch_warnings():
                # re's warnings name syntax whose meaning differs in other engines
                # (`[[:alpha:]]`, set operations): refused rather than read two ways.
                warnings.simplefilter("error", FutureWarning)
                re.compile(text)
        except re.error as exc:
            raise PatternError(str(exc)) from None
        except FutureWarning as warning:
            raise PatternError(f"ambiguous: {warning}") from None
        if any(m.group().startswith("{") and m.group(1) is None for m in _TOKEN.finditer(text)):
            raise PatternError("a literal { must be written \\{ (else it can mean fuzzy matching)")
        try:
            self._compiled: Any = regex.compile(text)
        except regex.error as exc:
            raise PatternError(f"not supported: {exc}") from None
        self.pattern = text

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of `text` matches."""
        try:
            return self._compiled.fullmatch(text, timeout=TIME_BUDGET_S) is not None
        except TimeoutError:
            raise LimitExceeded(
                f"pattern took longer than {TIME_BUDGET_S * 1000:.0f} ms on {len(text)} characters"
            ) from None
