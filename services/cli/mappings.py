"""`siesa-sync mappings`: check the mapping files; dry-run a Siesa page through one."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from services.cli.common import echo_json, printable
from services.common.errors import ConfigError, SkippableError
from services.common.service import load_settings
from services.extractor import rows
from services.transformer.compiler import compile_mapping, load_mappings, mapping_names
from services.transformer.preview import Outcome, preview
from services.transformer.settings import TransformerSettings

COLUMNS = ("sku", "name", "display_name", "unit", "barcode", "barcode_type", "is_active")
CELL = 40


@click.group()
def mappings() -> None:
    """Mapping files (mappings/*.yaml)."""


def _settings() -> TransformerSettings:
    try:
        return load_settings(TransformerSettings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _tenant_mappings(tenants_file: Path) -> dict[str, str]:
    """tenant id -> mapping name, read without resolving any credential."""
    try:
        doc = yaml.safe_load(tenants_file.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise click.ClickException(f"{tenants_file}: cannot read tenants file: {exc}") from None
    tenants = doc.get("tenants") if isinstance(doc, dict) else None
    return {
        str(t["id"]): str(t.get("mapping", "siesa-items"))
        for t in tenants or []
        if isinstance(t, dict) and "id" in t
    }


@mappings.command("check")
@click.option("--dir", "directory", type=click.Path(path_type=Path), help="default: MAPPINGS_DIR")
def check(directory: Path | None) -> None:
    """Check every mapping file, and the tenants' mappings, as the transformer does at
    start-up. Exit 2 listing every problem with file and field."""
    settings = _settings()
    directory = directory or settings.mappings_dir
    names = mapping_names(directory)
    if settings.tenants_file.exists():
        names |= set(_tenant_mappings(settings.tenants_file).values())
    try:
        loaded = load_mappings(directory, names)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    for name, mapping in sorted(loaded.items()):
        click.echo(f"ok  {name}: {mapping.name}@{mapping.version}, {len(mapping.rules)} fields")


def page_rows(document: Any) -> list[dict[str, Any]]:
    """The rows of a Siesa answer (`{"codigo", "detalle": {"Table": [...]}}`) or a list."""
    if isinstance(document, list):
        found = document
    elif isinstance(document, dict) and "detalle" in document:
        if document.get("codigo", 0) != 0:
            raise click.ClickException(f"Siesa answered an error: {document.get('mensaje')!r}")
        found = (document.get("detalle") or {}).get("Table") or []
    else:
        raise click.ClickException("expected a Siesa page ({detalle: {Table: [...]}}) or a list")
    if not all(isinstance(row, dict) for row in found):
        raise click.ClickException("every row must be a JSON object")
    return found


def raw_items(
    source_rows: list[dict[str, Any]], tenant: str
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The RawItems the extractor would emit, and the rows it would reject."""
    items: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    for index, source in enumerate(source_rows):
        row = rows.normalize(source)
        try:
            key = rows.row_key(row, tenant=tenant, max_field_length=4000)
        except SkippableError as exc:
            rejected.append(
                {"key": f"row {index + 1}", "error_class": exc.error_class, "reason": exc.message}
            )
            continue
        items.append(
            rows.raw_item(
                tenant=tenant,
                company="preview",
                consulta="API_v2_Items",
                key=key,
                row=row,
                fingerprint=rows.fingerprint(row),
                op="UPSERT",
                sync_id="preview",
                trace_id="preview",
                extracted_at=0,
            )
        )
    return items, rejected


def _cell(value: Any) -> str:
    text = "" if value is None else printable(str(value))
    return text if len(text) <= CELL else text[: CELL - 1] + "…"


def table(outcome: Outcome) -> str:
    lines = [
        [_cell(p.get(c)) for c in COLUMNS]
        + [_cell(", ".join(f"{k}={v}" for k, v in sorted(p["attributes"].items())))]
        for p in outcome.products
    ]
    header = [*COLUMNS, "attributes"]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    out = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *lines]
    ]
    out.append(f"{len(outcome.products)} products, {len(outcome.rejections)} rejected")
    out += [printable(f"rejected {r['key']}: {r['reason']}") for r in outcome.rejections]
    return "\n".join(out)


@mappings.command("preview")
@click.option("--tenant", required=True, help="whose mapping to use (from TENANTS_FILE)")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def preview_command(tenant: str, as_json: bool, file: Path) -> None:
    """Dry-run FILE (a Siesa page or a JSON list of rows) through TENANT's mapping: the
    canonical products and the rejections with their reasons. Nothing is sent."""
    settings = _settings()
    known = _tenant_mappings(settings.tenants_file)
    if tenant not in known:
        raise click.ClickException(
            f"tenant {tenant!r} is not in {settings.tenants_file} (known: {', '.join(known)})"
        )
    try:
        mapping = compile_mapping(settings.mappings_dir / f"{known[tenant]}.yaml")
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    try:
        document = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{file}: not JSON: {exc}") from None
    items, rejected = raw_items(page_rows(document), tenant)
    outcome = preview(items, mapping)
    outcome.rejections[:0] = rejected
    if as_json:
        echo_json(
            {
                "tenant": tenant,
                "mapping": {"name": mapping.name, "version": mapping.version},
                "products": outcome.products,
                "rejections": outcome.rejections,
            }
        )
    else:
        click.echo(f"tenant {tenant}, mapping {mapping.name}@{mapping.version}")
        click.echo(table(outcome))
