"""docker-compose.yml agrees with the code it runs, checked without Docker.

Every container built from this repository runs a real `siesa-sync` command (resolved
through the click group itself), is given only environment variables that the process
behind that command really reads (settings fields, tenant credential references,
simulator options), points at a tenants file that exists, and never carries a literal
secret.
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from services.cli import main
from services.common.settings import KafkaSettings, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_DIR = "/app"  # WORKDIR of the image: the repository's root inside a container

SECRET_WORDS = ("KEY", "TOKEN", "PASSWORD", "SECRET", "USERS")
# `${VAR:?message}` or `${VAR?message}`: required, and no default that could hold a value.
REQUIRED_INTERPOLATION = r"\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}"
SECRET_VALUE = re.compile(rf"(?:{REQUIRED_INTERPOLATION}|[:,])+")
JWT_LIKE = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]+")
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict), "docker-compose.yml: not a mapping"
    assert isinstance(data.get("services"), dict), "docker-compose.yml: no services"
    return data


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _built_here(service: dict[str, Any]) -> bool:
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    return context in (".", "./")


def _built_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in _services().items() if _built_here(svc)}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), "no `command`: the image's default is only --help"
    return [str(word) for word in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (entry.split("=", 1) for entry in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(name): "" if value is None else str(value) for name, value in env.items()}


def _resolve(words: list[str]) -> tuple[list[str], click.Context]:
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


def _choices(path: list[str]) -> tuple[str, ...]:
    ctx = click.Context(main)
    command = main.get_command(ctx, path[0])
    assert command is not None
    argument = next(p for p in command.params if isinstance(p, click.Argument))
    assert isinstance(argument.type, click.Choice)
    return tuple(str(choice) for choice in argument.type.choices)


def _env_names(settings: type[Any]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    # The nested `kafka` field is not read from <PREFIX>_KAFKA: services build it from
    # KAFKA_* through KafkaSettings' own prefix.
    return {f"{prefix}{name.upper()}" for name in settings.model_fields if name != "kafka"}


def _settings_class(service: str) -> type[ServiceSettings]:
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


def _host_path(container_path: str) -> Path:
    assert container_path.startswith(f"{APP_DIR}/"), (
        f"{container_path}: not under {APP_DIR}/, the image's copy of the repository"
    )
    return ROOT / container_path.removeprefix(f"{APP_DIR}/")


def _tenants_file(service: str, env: dict[str, str]) -> Path:
    settings = _settings_class(service)
    variable = f"{str(settings.model_config.get('env_prefix', '')).upper()}TENANTS_FILE"
    path = (
        _host_path(env[variable])
        if variable in env
        else Path(settings.model_fields["tenants_file"].default)
    )
    assert path.is_file(), f"{service}: tenants file {path} does not exist in the repository"
    return path


def _env_references(node: Any) -> set[str]:
    """Every `{env: VAR}` credential reference in a parsed tenants file."""
    if isinstance(node, dict):
        found = {node["env"]} if isinstance(node.get("env"), str) else set()
        for value in node.values():
            found |= _env_references(value)
        return found
    if isinstance(node, list):
        return set().union(*(_env_references(item) for item in node))
    return set()


def _allowed_env(path: list[str], parsed: click.Context, env: dict[str, str]) -> set[str]:
    """The environment variables the process behind `siesa-sync <path>` reads."""
    kafka = _env_names(KafkaSettings)
    if path == ["run"]:
        service = parsed.params["service"]
        tenants = yaml.safe_load(_tenants_file(service, env).read_text())
        return kafka | _env_names(_settings_class(service)) | _env_references(tenants)
    if path == ["sim"]:
        names: set[str] = set()
        for param in parsed.command.params:
            envvar = getattr(param, "envvar", None)
            names |= {envvar} if isinstance(envvar, str) else set(envvar or ())
        return names
    if path == ["topics", "create"]:
        return kafka
    pytest.fail(f"`siesa-sync {' '.join(path)}`: teach this test which environment it reads")


BUILT = sorted(_built_services())
RUNNERS = [name for name in BUILT if _command(_built_services()[name])[:1] == ["run"]]


def test_compose_builds_the_services_and_simulators() -> None:
    assert BUILT, "no service is built from this repository (`build: .`)"
    commands = [_command(svc)[:2] for svc in _built_services().values()]
    for service in _choices(["run"]):
        assert ["run", service] in commands, f"no container runs `siesa-sync run {service}`"


def test_the_image_runs_siesa_sync() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["siesa-sync"\]\s*$', dockerfile, re.M)
    # The console script is the click group the tests below resolve commands through.
    with (ROOT / "pyproject.toml").open("rb") as fh:
        scripts = tomllib.load(fh)["project"]["scripts"]
    assert scripts["siesa-sync"] == "services.cli:main"


@pytest.mark.parametrize("name", BUILT)
def test_command_is_a_real_siesa_sync_command(name: str) -> None:
    service = _built_services()[name]
    assert "entrypoint" not in service, f"{name}: keep the image's siesa-sync entrypoint"
    path, parsed = _resolve(_command(service))
    if path in (["run"], ["sim"]):
        argument = "service" if path == ["run"] else "name"
        assert parsed.params[argument] in _choices(path), f"{name}: {parsed.params}"


@pytest.mark.parametrize("name", BUILT)
def test_environment_names_are_read_by_the_process(name: str) -> None:
    service = _built_services()[name]
    assert "env_file" not in service, f"{name}: env_file hides names from this check"
    env = _environment(service)
    path, parsed = _resolve(_command(service))
    unknown = sorted(set(env) - _allowed_env(path, parsed, env))
    assert not unknown, (
        f"{name} (`siesa-sync {' '.join(_command(service))}`) is given environment "
        f"variables it never reads: {unknown}"
    )


@pytest.mark.parametrize("name", RUNNERS)
def test_tenants_file_exists_and_its_credentials_are_given(name: str) -> None:
    service = _built_services()[name]
    _, parsed = _resolve(_command(service))
    env = _environment(service)
    tenants_file = _tenants_file(parsed.params["service"], env)
    assert tenants_file.is_file(), f"{name}: tenants file {tenants_file} does not exist"
    # Loading the tenants file resolves every reference in it; a missing one stops it.
    missing = sorted(_env_references(yaml.safe_load(tenants_file.read_text())) - set(env))
    assert not missing, f"{name}: {tenants_file.name} needs {missing}"


def test_tenants_file_reaches_the_simulators_by_service_name() -> None:
    services = _services()
    ports: dict[str, int] = {}
    for name, svc in _built_services().items():
        path, parsed = _resolve(_command(svc))
        if path == ["sim"]:
            assert parsed.params["host"] == "0.0.0.0", f"{name}: unreachable from others"  # noqa: S104
            ports[name] = parsed.params["port"]
    for name, svc in _built_services().items():
        path, parsed = _resolve(_command(svc))
        if path != ["run"]:
            continue
        tenants_file = _tenants_file(parsed.params["service"], _environment(svc))
        tenants = yaml.safe_load(tenants_file.read_text())
        for tenant in tenants["tenants"]:
            for part in ("source", "target"):
                url = tenant[part]["base_url"]
                match = re.match(r"https?://([^:/]+):(\d+)", url)
                assert match, f"{name}: {url}: no host:port"
                host, port = match[1], int(match[2])
                assert host in services, f"{name}: {url}: {host} is no compose service"
                assert ports.get(host) == port, f"{name}: {url}: {host} listens on {ports}"


def test_no_literal_secrets_in_environment() -> None:
    for name, svc in _services().items():
        for variable, value in _environment(svc).items():
            if any(word in variable.upper() for word in SECRET_WORDS):
                assert SECRET_VALUE.fullmatch(value), (
                    f"{name}: {variable} must come from the caller's environment as "
                    f"${{VAR:?message}} (no default), not {value!r}"
                )
            assert not JWT_LIKE.search(value), f"{name}: {variable} holds a token"
            assert not URL_WITH_PASSWORD.search(value), f"{name}: {variable} holds a password"


def test_published_ports_are_loopback_only() -> None:
    for name, svc in _services().items():
        for port in svc.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name}: port {port} is not bound to 127.0.0.1"


def test_services_reach_kafka_on_an_advertised_listener() -> None:
    services = _services()
    kafka_env = _environment(services["kafka"])
    advertised = {
        listener.split("://", 1)[1]
        for listener in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    assert "kafka:9092" in advertised
    for name in BUILT:
        env = _environment(services[name])
        path, _ = _resolve(_command(services[name]))
        if path[0] in ("run", "topics"):
            assert env.get("KAFKA_BOOTSTRAP_SERVERS") in advertised, f"{name}: no broker"
            conditions = {k: v.get("condition") for k, v in services[name]["depends_on"].items()}
            assert conditions.get("kafka") == "service_healthy", name
            if path[0] == "run":
                assert conditions.get("topics") == "service_completed_successfully", name
