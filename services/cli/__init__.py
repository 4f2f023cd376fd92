"""`siesa-sync`: the operator's command line, one module per command group."""

from __future__ import annotations

import platform

import click
import confluent_kafka

from services.cli.acls import acls_command
from services.cli.commands import pause, resume, resync
from services.cli.console import console
from services.cli.dlq import dlq
from services.cli.health import health
from services.cli.mappings import mappings
from services.cli.replay import replay_command
from services.cli.run import run
from services.cli.sim import sim
from services.cli.status import status
from services.cli.tenants import tenants
from services.cli.topics import topics
from services.common.packaged import distribution_version
from services.product import NAME


def version_line() -> str:
    return (
        f"{NAME} {distribution_version(NAME)} (Python {platform.python_version()}, "
        f"librdkafka {confluent_kafka.libversion()[0]})"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(message="%(version)s", version=version_line())
def main() -> None:
    """Keep Siesa catalogues in sync with Kong and WMS through Kafka."""


for command in (
    topics,
    acls_command,
    run,
    sim,
    health,
    mappings,
    resync,
    pause,
    resume,
    status,
    tenants,
    dlq,
    replay_command,
    console,
):
    main.add_command(command)
