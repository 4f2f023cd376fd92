"""What the operator commands share: settings, errors as clean messages, times, tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.common.errors import ConfigError, SyncError
from services.common.service import load_settings
from services.common.settings import KafkaSettings
from services.ops.times import parse_time

P = ParamSpec("P")
R = TypeVar("R")


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
        except ConfigError as exc:
            raise BadConfig(str(exc)) from None
        except SyncError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def kafka_settings() -> KafkaSettings:
    """`KAFKA_*`, the clients named `<client id>-cli`."""
    return load_settings(KafkaSettings).for_client("cli")


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
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def echo_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    # Piped or captured output has no terminal width to fit; don't squeeze it into 80.
    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    console.print(table)
