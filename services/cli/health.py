"""`siesa-sync health [--ready]`: ask the service running here for its /healthz (or
/readyz); exit 0 when it answers 200. For container health checks (Dockerfile,
docker-compose.yml): one image runs any service, so the port is the one of whichever
service answers on 127.0.0.1 (its `<SERVICE>_HEALTH_PORT`, else its default)."""

from __future__ import annotations

import os
import sys

import click
import httpx

from services.common.service import DEFAULT_HEALTH_PORTS


def _ports() -> list[int]:
    ports = []
    for service, default in DEFAULT_HEALTH_PORTS.items():
        given = os.environ.get(f"{service.upper()}_HEALTH_PORT", "")
        ports.append(int(given) if given.isdigit() and int(given) else default)
    return ports


@click.command()
@click.option("--ready", is_flag=True, help="ask /readyz (default: /healthz)")
@click.option("--port", type=int, help="default: the port of the service that answers")
def health(ready: bool, port: int | None) -> None:
    """Exit 0 if the service here is alive (or, with --ready, ready); 1 if not."""
    path = "/readyz" if ready else "/healthz"
    for candidate in [port] if port else _ports():
        try:
            answer = httpx.get(f"http://127.0.0.1:{candidate}{path}", timeout=3)
        except httpx.HTTPError:
            continue
        click.echo(f"{candidate}{path}: {answer.status_code} {answer.text}")
        sys.exit(0 if answer.status_code == 200 else 1)
    click.echo(f"no service answers {path} on 127.0.0.1 ports {_ports()}", err=True)
    sys.exit(1)
