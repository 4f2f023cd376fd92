"""What the operator commands share: settings, errors as clean messages, times, tables.

Whatever the commands print from data (keys, Siesa's text, error messages) is shown
as text, never interpreted: rich tables get `Text` cells, so `[/]` or `[link=...]` in a
key are printed as they are, and `printable` writes control characters, terminal
escapes and bidi overrides as escapes (`\x1b`, `\n`, `\u202e`) everywhere the CLI prints
data, JSON included.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from services.common.errors import ConfigError, SyncError
from services.common.service import load_settings
from services.common.settings import KafkaSettings
from services.ops.audit import Actor
from services.ops.times import parse_time

P = ParamSpec("P")
R = TypeVar("R")


# C0 and C1 controls (ESC starts terminal escapes; 0x9b is a one-byte CSI), DEL, line
# and paragraph separators, and the bidi embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# What json.dumps(ensure_ascii=False) leaves as it is of those (it escapes C0 itself).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with control characters, terminal escapes and bidi overrides escaped."""
    return _UNSAFE.sub(_escape, text)


class BadConfig(click.ClickException):
    """A setting is missing or wrong: exit 2, as the services do."""

    exit_code = 2


def clean_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Our errors become one clear line and exit 1 (2 for a bad configuration), not a
    traceback."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SyncError as exc:
            lines = str(exc).split("\n")  # a ConfigError lists its problems a line each
            text = "\n".join(map(printable, lines))
            raise (BadConfig if isinstance(exc, ConfigError) else click.ClickException)(
                text
            ) from None

    return wrapper


def kafka_settings() -> KafkaSettings:
    """`KAFKA_*`, the clients named `<client id>-cli`."""
    return load_settings(KafkaSettings).for_client("cli")


def cli_actor() -> Actor:
    """Who runs a command, for the audit trail: the operating-system user."""
    return Actor(getpass.getuser(), "cli")


class TimeParam(click.ParamType[datetime, Any]):
    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_time(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()


def progress_bar() -> Progress:
    """A transient progress bar on a terminal; nothing when output is piped or captured."""
    console = Console(stderr=True)
    return Progress(console=console, transient=True, disable=not console.is_terminal)


def echo_json(data: Any) -> None:
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
    # Only strings hold such characters (JSON's own are ASCII): \uXXXX is their escape.
    click.echo(_UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def cell(value: Any) -> Text:
    """A table cell showing `value` as plain text: no markup, no emoji codes, escaped."""
    return Text("" if value is None else printable(str(value)))


def echo_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    # Piped or captured output has no terminal width to fit; don't squeeze it into 80.
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    console.print(table)
