"""`siesa-sync dlq list|replay`: inspect dead letters and send them back to their stage."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from services.cli.common import (
    TIME,
    clean_errors,
    cli_actor,
    echo_json,
    echo_table,
    kafka_settings,
    progress_bar,
)
from services.common.serde import default_serde
from services.ops import actions
from services.ops.dlq import DEFAULT_MAX_ATTEMPTS, Filters, dead_letters

F = TypeVar("F", bound=Callable[..., Any])


def filter_options(command: F) -> F:
    for option in reversed(
        [
            click.option("--tenant", help="only this tenant's dead letters"),
            click.option("--error-class", help="only this error.class (e.g. mapping)"),
            click.option("--since", type=TIME, help="failed at or after TIME (ISO or 2h, 30m)"),
        ]
    ):
        command = option(command)
    return command


@click.group()
def dlq() -> None:
    """Dead letters: records a stage could not process, with why."""


@dlq.command("list")
@filter_options
@click.option("--json", "as_json", is_flag=True, help="one JSON object per dead letter")
@clean_errors
def dlq_list(
    tenant: str | None, error_class: str | None, since: datetime | None, as_json: bool
) -> None:
    """List dead letters, oldest first."""
    letters = dead_letters(kafka_settings(), Filters(tenant, error_class, since))
    if as_json:
        serde = default_serde()
        echo_json([d.view(serde) for d in letters])
        return
    echo_table(
        f"{len(letters)} dead letters",
        ["failed at", "tenant", "key", "stage", "class", "attempts", "message"],
        [
            (
                d.headers.get("failed_at", ""),
                d.tenant,
                d.key.decode(errors="replace") if d.key else "",
                d.stage,
                d.error_class,
                d.attempts,
                d.headers.get("error.message", "")[:200],
            )
            for d in letters
        ],
    )


@dlq.command("replay")
@filter_options
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_ATTEMPTS,
    show_default=True,
    help="dead letters that failed this many times are not sent again",
)
@click.option("--dry-run", is_flag=True, help="say what would be sent; send nothing")
@clean_errors
def dlq_replay(
    tenant: str | None,
    error_class: str | None,
    since: datetime | None,
    max_attempts: int,
    dry_run: bool,
) -> None:
    """Send matching dead letters back to the stage that failed them, each once."""
    with progress_bar() as bar:
        task = bar.add_task("redriving", total=None)
        report = actions.redrive(
            kafka_settings(),
            Filters(tenant, error_class, since),
            cli_actor(),
            max_attempts=max_attempts,
            dry_run=dry_run,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    summary = report.summary()
    verb = "would send" if dry_run else "sent"
    click.echo(
        f"{verb} {summary['sent']}; skipped: {summary['already_redriven']} already redriven, "
        f"{summary['at_max_attempts']} at max attempts ({max_attempts}), "
        f"{summary['superseded']} superseded by a newer version, "
        f"{summary['not_redrivable']} not redrivable (extract stage: fix in Siesa, resync)"
    )
    for _letter, why in report.refused:
        click.echo(why, err=True)
    if report.refused:
        raise click.ClickException(
            f"{len(report.refused)} dead letters refused: their source is not their stage's input"
        )
