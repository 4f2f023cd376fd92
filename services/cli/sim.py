"""`siesa-sync sim NAME`: run a simulator of an external API on loopback."""

from __future__ import annotations

import click

SIMULATORS = ("siesa", "kong", "wms", "webhook")
DEFAULT_PORTS = {"siesa": 8081, "kong": 8082, "wms": 8083, "webhook": 8084}
WEBHOOK_AUTH = ("none", "oauth2", "basic", "bearer", "api_key")


@click.command()
@click.argument("name", type=click.Choice(SIMULATORS))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="default: siesa 8081, kong 8082, wms 8083, webhook 8084")
@click.option("--conni-key", envvar="SIESA_SIM_CONNI_KEY", help="siesa: the ConniKey to accept")
@click.option(
    "--conni-token", envvar="SIESA_SIM_CONNI_TOKEN", help="siesa: the ConniToken to accept"
)
@click.option(
    "--user",
    "users",
    multiple=True,
    envvar=["KONG_SIM_USERS", "WMS_SIM_USERS"],
    help="kong, wms, webhook: USER:PASSWORD that may log in (repeat; or comma-separated in "
    "KONG_SIM_USERS / WMS_SIM_USERS / WEBHOOK_SIM_USERS)",
)
@click.option(
    "--auth-scheme",
    envvar="WMS_SIM_AUTH_SCHEME",
    default="Bearer",
    show_default=True,
    help="wms: the Authorization scheme it accepts",
)
@click.option(
    "--secret", envvar="WEBHOOK_SIM_SECRET", help="webhook: the HMAC-SHA256 key of signatures"
)
@click.option(
    "--auth",
    type=click.Choice(WEBHOOK_AUTH),
    envvar="WEBHOOK_SIM_AUTH",
    default="none",
    show_default=True,
    help="webhook: what it demands besides the signature (users are the credentials)",
)
def sim(
    name: str,
    host: str,
    port: int | None,
    conni_key: str | None,
    conni_token: str | None,
    users: tuple[str, ...],
    auth_scheme: str,
    secret: str | None,
    auth: str,
) -> None:
    """Run a simulator of an external API on loopback."""
    import os

    import uvicorn

    from simulators import kong, siesa, webhook, wms

    if name == "siesa":
        if not conni_key or not conni_token:
            raise click.UsageError("siesa needs --conni-key and --conni-token (or SIESA_SIM_*)")
        app = siesa.create_app(conni_key=conni_key, conni_token=conni_token)
    else:
        env = f"{name.upper()}_SIM_USERS"
        # Each simulator's own variable wins over the other's (both may be set).
        given = (os.environ[env],) if os.environ.get(env) else users
        accounts = dict(
            entry.split(":", 1) for item in given for entry in item.split(",") if ":" in entry
        )
        if name == "webhook":
            if not secret:
                raise click.UsageError("webhook needs --secret (or WEBHOOK_SIM_SECRET)")
            if auth != "none" and not accounts:
                raise click.UsageError(f"webhook --auth {auth} needs --user (or {env})")
        elif not accounts:
            raise click.UsageError(f"{name} needs --user USER:PASSWORD (or {env})")
        if name == "webhook":
            app = webhook.create_app(secret or "", accounts, auth=auth)  # type: ignore[arg-type]
        elif name == "kong":
            app = kong.create_app(users=accounts)
        else:
            app = wms.create_app(users=accounts, auth_scheme=auth_scheme)
    uvicorn.run(
        app, host=host, port=port or DEFAULT_PORTS[name], log_level="warning", access_log=False
    )
