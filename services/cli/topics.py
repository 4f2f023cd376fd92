"""`siesa-sync topics`: the project's Kafka topics."""

from __future__ import annotations

import sys

import click

from services.cli.common import clean_errors, kafka_settings
from services.common.topics import create_topics


@click.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
@click.option("--alter", is_flag=True, help="set the configs of existing topics that differ")
@clean_errors
def topics_create(alter: bool) -> None:
    """Create every topic with its configs (KAFKA_* settings); safe to repeat. Existing
    topics are checked against the settings: exit 1 if one differs (see --alter)."""
    outcome = create_topics(kafka_settings(), alter=alter)
    for name, what in sorted(outcome.items()):
        click.echo(f"{name}: {what}")
    if any(what.startswith("differs") for what in outcome.values()):
        click.echo("topics differ from the settings: `topics create --alter` sets their configs")
        sys.exit(1)
