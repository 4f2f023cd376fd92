"""`siesa-sync tenants apply [FILE]` and `tenants list`: the tenants the running services
follow, live (services/ops/tenants.py, services/common/tenant_book.py).

Until a first `apply`, every service runs its own tenants file's tenants; from then on
they run what was applied last, and start, change or stop tenants without a restart.
"""

from __future__ import annotations

from pathlib import Path

import click

from services.cli.common import clean_errors, cli_actor, echo_json, echo_table, kafka_settings
from services.common.service import load_settings
from services.loader.settings import LoaderSettings
from services.ops import actions
from services.ops import tenants as tenant_ops


@click.group()
def tenants() -> None:
    """Publish the tenants the services follow live; show what is applied."""


@tenants.command("apply")
@click.argument(
    "tenants_file",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False),
)
@click.option("--dry-run", is_flag=True, help="show what would change; publish nothing")
@click.option("--json", "as_json", is_flag=True, help="a JSON list, one object per tenant")
@clean_errors
def apply(tenants_file: Path | None, dry_run: bool, as_json: bool) -> None:
    """Make the services run TENANTS_FILE's tenants (default: LOADER_TENANTS_FILE,
    config/tenants.yaml): new ones start, changed ones change, missing ones stop.

    The whole file is checked first: on any problem nothing is published (exit 2)."""
    path = tenants_file or load_settings(LoaderSettings).tenants_file
    plan = actions.apply_tenants(kafka_settings(), path, cli_actor(), dry_run=dry_run)
    if as_json:
        echo_json([{"tenant": c.tenant, "change": c.change} for c in plan.changes])
        return
    title = f"tenants {'to apply (dry run)' if dry_run else 'applied'} from {path}"
    echo_table(title, ["tenant", "change"], [(c.tenant, c.change) for c in plan.changes])
    counts = plan.summary()
    verb = "would change" if dry_run else "changed"
    click.echo(
        f"{verb}: {counts['added']} added, {counts['changed']} changed, "
        f"{counts['removed']} removed, {counts['unchanged']} unchanged"
    )


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="a JSON list, one object per tenant")
@clean_errors
def list_command(as_json: bool) -> None:
    """The applied tenants: id, source type and mode, target type, enabled."""
    rows, unreadable = tenant_ops.listed(kafka_settings())
    if as_json:
        echo_json([*rows, *({"tenant": t, "unreadable": True} for t in unreadable)])
        return
    if not rows and not unreadable:
        click.echo("no tenants applied: each service runs its own tenants file's tenants")
        return
    echo_table(
        "applied tenants",
        ["tenant", "source", "mode", "target", "enabled"],
        [
            *((r["tenant"], r["source"], r["mode"], r["target"], r["enabled"]) for r in rows),
            *((t, "(unreadable record)", "", "", "") for t in unreadable),
        ],
    )
