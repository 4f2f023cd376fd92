"""`siesa-sync resync|pause|resume --tenant T`: operator commands for the extractor.

Each puts one `SyncCommand` on `sync.commands.v1` (key: the tenant); the extractor that
polls the tenant applies it before its next scan: ``resync`` re-reads the whole
catalogue and re-emits every row, ``pause`` stops polling the tenant (kept across
restarts, shown as ``paused`` by `status`), ``resume`` starts it again. Each is written
to the audit trail (`ops.audit.v1`) under the user running the command.
"""

from __future__ import annotations

import re

import click

from services.cli.common import clean_errors, cli_actor, kafka_settings
from services.ops import actions

TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _command(name: str, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @click.option("--tenant", required=True, help="the tenant's id in the tenants file")
    @clean_errors
    def command(tenant: str) -> None:
        if not TENANT_ID.match(tenant):
            raise click.BadParameter(f"{tenant!r} is not a tenant id", param_hint="--tenant")
        actions.command(kafka_settings(), tenant, name, cli_actor())
        click.echo(f"{name} requested for tenant {tenant}")

    return command


resync = _command("resync", "Re-read a tenant's whole catalogue and re-emit every item.")
pause = _command("pause", "Stop polling a tenant's Siesa until `resume`.")
resume = _command("resume", "Start polling a paused tenant again.")
