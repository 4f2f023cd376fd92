"""What the deployment checks share (docker-compose.yml, deploy/kubernetes/): the
`siesa-sync` command a container runs, resolved through the click group itself, and
the environment the process behind it really reads."""

from __future__ import annotations

import importlib
import re
from typing import Any

import click
import pytest

from services.cli import main
from services.common.settings import KafkaSettings, ServiceSettings

SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET", "USERS", "USERNAME")
JWT_LIKE = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]+")
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def resolve(words: list[str]) -> tuple[list[str], click.Context]:
    """Walk `words` down the `siesa-sync` click group; parse the leaf's arguments.

    Returns the command path (e.g. ["sim"] or ["topics", "create"]) and the parsed
    context; fails the test on an unknown command, a bad choice or a bad option.
    """
    ctx = click.Context(main, info_name="siesa-sync")
    command: click.Command = main
    path: list[str] = []
    rest = list(words)
    while isinstance(command, click.Group):
        assert rest, f"`siesa-sync {' '.join(path)}` needs a subcommand"
        word = rest.pop(0)
        sub = command.get_command(ctx, word)
        assert sub is not None, f"`siesa-sync {' '.join([*path, word])}`: no such command"
        path.append(word)
        command = sub
        ctx = click.Context(command, info_name=word, parent=ctx)
    try:
        parsed = command.make_context(path[-1], rest, parent=ctx.parent)
    except click.ClickException as exc:
        pytest.fail(f"`siesa-sync {' '.join(words)}`: {exc.format_message()}")
    return path, parsed


def choices(path: list[str]) -> tuple[str, ...]:
    ctx = click.Context(main)
    command = main.get_command(ctx, path[0])
    assert command is not None
    argument = next(p for p in command.params if isinstance(p, click.Argument))
    assert isinstance(argument.type, click.Choice)
    return tuple(str(choice) for choice in argument.type.choices)


def env_names(settings: type[Any]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    # The nested `kafka` field is not read from <PREFIX>_KAFKA: services build it from
    # KAFKA_* through KafkaSettings' own prefix.
    return {f"{prefix}{name.upper()}" for name in settings.model_fields if name != "kafka"}


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"services.{service}.settings")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"services/{service}/settings.py: expected one settings class"
    return found[0]


def env_references(node: Any) -> set[str]:
    """Every `{env: VAR}` credential reference in a parsed tenants file."""
    if isinstance(node, dict):
        found = {node["env"]} if isinstance(node.get("env"), str) else set()
        for value in node.values():
            found |= env_references(value)
        return found
    if isinstance(node, list):
        return set().union(*(env_references(item) for item in node))
    return set()


def used_references(tenants: Any, service: str) -> set[str]:
    """The credential references of a parsed tenants file that `service` reads: those of
    the tenant parts it resolves (its settings' `tenant_parts`), and no other."""
    parts = settings_class(service).tenant_parts
    entries = tenants.get("tenants") if isinstance(tenants, dict) else None
    return set().union(
        *(
            env_references(entry.get(part))
            for entry in entries or []
            if isinstance(entry, dict)
            for part in parts
        )
    )


def allowed_env(path: list[str], parsed: click.Context, tenants: Any = None) -> set[str]:
    """The environment variables the process behind `siesa-sync <path>` reads; for
    `run`, `tenants` is the parsed tenants file it is given (the credential references
    of the parts the service uses)."""
    kafka = env_names(KafkaSettings)
    if path == ["run"]:
        service = parsed.params["service"]
        return kafka | env_names(settings_class(service)) | used_references(tenants, service)
    if path == ["sim"]:
        names: set[str] = set()
        for param in parsed.command.params:
            envvar = getattr(param, "envvar", None)
            names |= {envvar} if isinstance(envvar, str) else set(envvar or ())
        return names
    if path in (["topics", "create"], ["tenants", "apply"]):
        return kafka
    pytest.fail(f"`siesa-sync {' '.join(path)}`: teach this test which environment it reads")


def is_secret_name(variable: str) -> bool:
    return any(word in variable.upper() for word in SECRET_WORDS)
