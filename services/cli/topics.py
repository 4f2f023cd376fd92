"""`siesa-sync topics`: the project's Kafka topics."""

from __future__ import annotations

import click

from services.common.errors import SyncError
from services.common.service import load_settings
from services.common.settings import KafkaSettings
from services.common.topics import create_topics


@click.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every topic with its configs (KAFKA_* settings); safe to repeat."""
    try:
        kafka = load_settings(KafkaSettings)
        outcome = create_topics(kafka)
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    for name, what in sorted(outcome.items()):
        click.echo(f"{name}: {what}")
