"""`siesa-sync status`: per tenant, what is synced, what is pending, what went wrong."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from services.cli.common import clean_errors, echo_json, echo_table, kafka_settings
from services.common.serde import default_serde
from services.common.service import load_settings
from services.loader.settings import LoaderSettings
from services.ops.status import default_stages, tenant_status
from services.transformer.settings import TransformerSettings


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if isinstance(value, datetime) else ""


def _status(row: dict[str, Any]) -> str:
    """``paused since <time> by <user>`` for a paused tenant (what is known of it)."""
    if not row.get("paused"):
        return str(row["status"])
    by = f" by {row['paused_by']}" if row.get("paused_by") else ""
    return f"paused since {_when(row.get('paused_since'))}{by}"


@click.command()
@click.option("--tenant", help="only this tenant")
@click.option("--json", "as_json", is_flag=True, help="a JSON list, one object per tenant")
@click.option(
    "--tenants-file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="default: the loader's LOADER_TENANTS_FILE (config/tenants.yaml)",
)
@clean_errors
def status(tenant: str | None, as_json: bool, tenants_file: Path | None) -> None:
    """Per-tenant sync state, pending records (lag) per stage and dead letters."""
    loader = load_settings(LoaderSettings)
    transformer = load_settings(TransformerSettings)
    rows = tenant_status(
        kafka_settings(),
        default_serde(),
        tenants_file or loader.tenants_file,
        default_stages(transformer.group_id, loader.group_id),
        only=tenant,
    )
    if tenant is not None and not rows:
        raise click.ClickException(f"no tenant {tenant!r} in the tenants file or the state")
    if as_json:
        echo_json(rows)
        return
    echo_table(
        "siesa-sync status",
        [
            "tenant",
            "target",
            "status",
            "extracted",
            "changed",
            "transformed",
            "loaded",
            "failed",
            "dead letters (open/all)",
            "lag",
            "last extract",
            "last load",
            "last error",
        ],
        [
            (
                r["tenant"],
                r["target"],
                _status(r),
                r["extracted"],
                r["changed"],
                r["transformed"],
                r["loaded"],
                r["failed"],
                f"{r['dead_lettered']}/{r['dead_lettered_total']}",
                " ".join(f"{k}:{v}" for k, v in r["lag_by_stage"].items()),
                _when(r["last_extract_at"]),
                _when(r["last_load_at"]),
                r["last_error"] or "",
            )
            for r in rows
        ],
    )
