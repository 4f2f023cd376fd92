"""`siesa-sync sim NAME`: run a simulator of an external API on loopback."""

from __future__ import annotations

import click

SIMULATORS = ("siesa", "kong")


@click.command()
@click.argument("name", type=click.Choice(SIMULATORS))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="default: siesa 8081, kong 8082")
@click.option("--conni-key", envvar="SIESA_SIM_CONNI_KEY", help="siesa: the ConniKey to accept")
@click.option(
    "--conni-token", envvar="SIESA_SIM_CONNI_TOKEN", help="siesa: the ConniToken to accept"
)
@click.option(
    "--user",
    "users",
    multiple=True,
    envvar="KONG_SIM_USERS",
    help="kong: USER:PASSWORD that may log in (repeat, or comma-separated in KONG_SIM_USERS)",
)
def sim(
    name: str,
    host: str,
    port: int | None,
    conni_key: str | None,
    conni_token: str | None,
    users: tuple[str, ...],
) -> None:
    """Run a simulator of an external API on loopback."""
    import uvicorn

    from simulators import kong, siesa

    if name == "siesa":
        if not conni_key or not conni_token:
            raise click.UsageError("siesa needs --conni-key and --conni-token (or SIESA_SIM_*)")
        app = siesa.create_app(conni_key=conni_key, conni_token=conni_token)
    else:
        accounts = dict(
            entry.split(":", 1) for item in users for entry in item.split(",") if ":" in entry
        )
        if not accounts:
            raise click.UsageError("kong needs --user USER:PASSWORD (or KONG_SIM_USERS)")
        app = kong.create_app(users=accounts)
    default_port = {"siesa": 8081, "kong": 8082}[name]
    uvicorn.run(app, host=host, port=port or default_port, log_level="warning", access_log=False)
