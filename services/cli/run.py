"""`siesa-sync run SERVICE`: run one service in the foreground."""

from __future__ import annotations

import importlib

import click

SERVICES = ("extractor", "transformer", "loader")


@click.command()
@click.argument("service", type=click.Choice(SERVICES))
def run(service: str) -> None:
    """Run one service (same as `python -m services.SERVICE`)."""
    importlib.import_module(f"services.{service}.app").main()
