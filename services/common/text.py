"""Text that may not be valid Unicode: the project's one policy for it
(docs/design.md, "Malformed text: refused, never repaired").

Data is never altered: a value that is not valid Unicode can't be written (Avro and
Kafka carry UTF-8), so the row holding it is refused with the reason, never "repaired".
To refuse only that row, the bytes of a source's answer are decoded so that a byte that
is not UTF-8 spoils only the value it is in: it is kept as a lone surrogate
(U+DC80..U+DCFF, Python's ``surrogateescape``), like the lone surrogate a JSON ``\\ud800``
escape gives. Control characters are valid text and are kept.

Messages about data (errors, dead-letter headers, a tenant's ``last_error``) must
always be writable, so they show what can't be encoded as escapes (``\\udce9``).
"""

from __future__ import annotations

import json
from typing import Any

# Control characters in strings are text (strict=False): a source that does not escape
# a tab or a newline inside a value does not lose its whole page.
_DECODER = json.JSONDecoder(strict=False)


def decode_json(data: bytes) -> Any:
    """JSON bytes as Python values (UTF-8, or the UTF-16/32 JSON allows); bytes that are
    not valid in that encoding become lone surrogates instead of failing the document.
    Raises ValueError (or RecursionError, for absurd nesting) when it is not JSON."""
    text = data.decode(json.detect_encoding(data), "surrogateescape")
    if text.startswith("\ufeff"):  # a byte order mark is no part of the document
        text = text[1:]
    return _DECODER.decode(text)


def first_malformed(text: str) -> int | None:
    """The index of the first character of `text` that can't be encoded as UTF-8 (a lone
    surrogate), or None when it is all valid text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def escaped(text: str) -> str:
    """`text` for a message: what can't be encoded as UTF-8 shown as ``\\udce9``."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def json_bytes(value: Any) -> bytes:
    """`value` as JSON in UTF-8, characters as they are; when it holds text that is not
    valid Unicode, every non-ASCII character escaped (``\\ud800``), so it is exact and
    still JSON. Values JSON can't write are written as text (``default=str``)."""
    try:
        written = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):  # e.g. an int too long to write
        return ascii(value).encode("ascii")
    try:
        return written.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, default=str).encode("ascii")
