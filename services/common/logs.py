"""JSON-lines logging, configured once in each service's `main()`.

Log lines carry data (keys, source text, error messages): each is one JSON object with
every control and non-ASCII character escaped (`\\u001b`), so no value can start a
terminal escape, forge a log line or hide behind a bidi override.

Besides what a call passes in ``extra``, every line carries the fields of the
`context` it runs in: the run loop sets the stage, and the tenant and the record's
topic/partition/offset while a record is handled, so a line about a record says which.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

_context: ContextVar[dict[str, object]] = ContextVar("log_context", default={})  # noqa: B039 - never mutated, only replaced


@contextmanager
def context(**fields: object) -> Iterator[None]:
    """Log lines written inside carry ``fields`` (a call's own ``extra`` wins)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if value is not None and not hasattr(record, key):
                setattr(record, key, value)
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
            json_ensure_ascii=True,
        )
    )
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
