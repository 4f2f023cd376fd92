"""`siesa-sync resync|pause|resume --tenant T`: operator commands for the extractor.

Each puts one `SyncCommand` on `sync.commands.v1` (key: the tenant); the extractor that
polls the tenant applies it before its next scan: ``resync`` re-reads the whole
catalogue and re-emits every row, ``pause`` stops polling the tenant (kept across
restarts, shown as ``paused`` in its state), ``resume`` starts it again.
"""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime

import click

from services.cli.common import clean_errors, kafka_settings
from services.common import topics
from services.common.errors import SyncError
from services.common.kafka import make_producer
from services.common.serde import default_serde
from services.common.settings import KafkaSettings

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def send_command(kafka: KafkaSettings, tenant: str, command: str) -> None:
    """Put one SyncCommand on the commands topic and wait until the broker has it."""
    value = default_serde().encode(
        "SyncCommand",
        {
            "tenant": tenant,
            "command": command,
            "requested_at": datetime.now(UTC),
            "requested_by": getpass.getuser(),
        },
    )
    producer = make_producer(kafka)
    failures: list[str] = []
    producer.produce(
        kafka.topic(topics.COMMANDS),
        key=tenant.encode(),
        value=value,
        on_delivery=lambda err, _msg: failures.append(err.str()) if err else None,
    )
    if producer.flush(30) > 0:
        raise SyncError(f"the broker did not take the {command} command in 30 s")
    if failures:
        raise SyncError(f"the {command} command was not delivered: {failures[0]}")


def _command(name: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.option("--tenant", required=True, help="the tenant's id in the tenants file")
    @clean_errors
    def command(tenant: str) -> None:
        if not TENANT_ID.match(tenant):
            raise click.BadParameter(f"{tenant!r} is not a tenant id", param_hint="--tenant")
        send_command(kafka_settings(), tenant, name)
        click.echo(f"{name} requested for tenant {tenant}")

    return command


resync = _command("resync", "Re-read a tenant's whole catalogue and re-emit every item.")
pause = _command("pause", "Stop polling a tenant's Siesa until `resume`.")
resume = _command("resume", "Start polling a paused tenant again.")
