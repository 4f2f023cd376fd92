"""`siesa-sync console`: the operator console in the browser; `console add-user`."""

from __future__ import annotations

import sys

import click

from services.common.errors import ConfigError
from services.common.logs import configure_logging
from services.common.service import load_settings

MISSING = "the console needs its extra packages: pip install 'siesa-sync[console]'"


@click.group(invoke_without_command=True)
@click.pass_context
def console(ctx: click.Context) -> None:
    """Serve the operator console (CONSOLE_* settings; 127.0.0.1:9100 by default)."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        import uvicorn

        from services.console.app import create_app
        from services.console.sampler import Sampler
        from services.console.settings import ConsoleSettings
    except ImportError as exc:
        raise click.ClickException(f"{MISSING} ({exc.name} is missing)") from None
    try:
        settings = load_settings(ConsoleSettings)
        configure_logging(settings.log_level)
        sampler = Sampler(settings.metrics_url_list(), settings.metrics_interval_s)
        app = create_app(settings, sampler=sampler)
    except ConfigError as exc:
        click.echo(f"console: cannot start:\n{exc}", err=True)
        sys.exit(2)
    sampler.start()
    click.echo(f"console on http://{settings.host}:{settings.port}", err=True)
    try:
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_level="warning", access_log=False
        )
    finally:
        sampler.stop()


@console.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["viewer", "operator"]), required=True)
@click.option(
    "--password-stdin", is_flag=True, help="read the password from standard input, not a prompt"
)
def add_user(name: str, role: str, password_stdin: bool) -> None:
    """Add NAME to the console's users file (CONSOLE_USERS_FILE), or set its role and
    password. Only an argon2 hash of the password is stored."""
    try:
        from services.console.settings import ConsoleSettings
        from services.console.users import write_user
    except ImportError as exc:
        raise click.ClickException(f"{MISSING} ({exc.name} is missing)") from None
    settings = load_settings(ConsoleSettings)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise click.BadParameter("at least 12 characters", param_hint="password")
    try:
        write_user(
            settings.users_file, name, "operator" if role == "operator" else "viewer", password
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{name} ({role}) saved in {settings.users_file}")
