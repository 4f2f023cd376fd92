"""docker-compose.yml agrees with the code it runs, checked without Docker.

Every container built from this repository runs a real `siesa-sync` command (resolved
through the click group itself), is given only environment variables that the process
behind that command really reads (settings fields, tenant credential references,
simulator options), points at a tenants file that the image holds, and never carries a
literal secret. Every long-running container has a health check (the services: their
readiness, through a real `siesa-sync health --ready`), and each starts only once what
it depends on is healthy (or, for the topics job, completed).
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.settings import example_tenants_file
from tests.unit.deploy_support import (
    allowed_env,
    choices,
    env_references,
    resolve,
    settings_class,
    used_references,
)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

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


def _copied_into_image() -> dict[str, Path]:
    """Container path -> repository file, from the Dockerfile's COPY of checkout files."""
    copies = {}
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--") for w in words):
            source, destination = words[1], words[2]
            if destination.startswith("/"):
                copies[destination] = ROOT / source
    return copies


def _host_path(container_path: str) -> Path:
    copies = _copied_into_image()
    assert container_path in copies, (
        f"{container_path}: the Dockerfile copies no file of the repository there "
        f"(it copies {sorted(copies)})"
    )
    return copies[container_path]


def _tenants_file(service: str, env: dict[str, str]) -> Path:
    settings = settings_class(service)
    variable = f"{str(settings.model_config.get('env_prefix', '')).upper()}TENANTS_FILE"
    path = _host_path(env[variable]) if variable in env else example_tenants_file()
    assert path.is_file(), f"{service}: tenants file {path} does not exist in the repository"
    return path


def _allowed_env(path: list[str], parsed: Any, env: dict[str, str]) -> set[str]:
    tenants = None
    if path == ["run"]:
        tenants = yaml.safe_load(_tenants_file(parsed.params["service"], env).read_text())
    return allowed_env(path, parsed, tenants)


BUILT = sorted(_built_services())
RUNNERS = [name for name in BUILT if _command(_built_services()[name])[:1] == ["run"]]


def test_compose_builds_the_services_and_simulators() -> None:
    assert BUILT, "no service is built from this repository (`build: .`)"
    commands = [_command(svc)[:2] for svc in _built_services().values()]
    for service in choices(["run"]):
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
    path, parsed = resolve(_command(service))
    if path in (["run"], ["sim"]):
        argument = "service" if path == ["run"] else "name"
        assert parsed.params[argument] in choices(path), f"{name}: {parsed.params}"


@pytest.mark.parametrize("name", BUILT)
def test_environment_names_are_read_by_the_process(name: str) -> None:
    service = _built_services()[name]
    assert "env_file" not in service, f"{name}: env_file hides names from this check"
    env = _environment(service)
    path, parsed = resolve(_command(service))
    unknown = sorted(set(env) - _allowed_env(path, parsed, env))
    assert not unknown, (
        f"{name} (`siesa-sync {' '.join(_command(service))}`) is given environment "
        f"variables it never reads: {unknown}"
    )


@pytest.mark.parametrize("name", RUNNERS)
def test_tenants_file_exists_and_its_credentials_are_given(name: str) -> None:
    service = _built_services()[name]
    _, parsed = resolve(_command(service))
    env = _environment(service)
    tenants_file = _tenants_file(parsed.params["service"], env)
    assert tenants_file.is_file(), f"{name}: tenants file {tenants_file} does not exist"
    tenants = yaml.safe_load(tenants_file.read_text())
    assert env_references(tenants), f"{tenants_file.name} names no credential"
    # Loading the tenants file resolves the references of the parts the service uses (and
    # only those: any other credential is refused by the test above); a missing one stops it.
    missing = sorted(used_references(tenants, parsed.params["service"]) - set(env))
    assert not missing, f"{name}: {tenants_file.name} needs {missing}"


def test_tenants_file_reaches_the_simulators_by_service_name() -> None:
    services = _services()
    ports: dict[str, int] = {}
    for name, svc in _built_services().items():
        path, parsed = resolve(_command(svc))
        if path == ["sim"]:
            assert parsed.params["host"] == "0.0.0.0", f"{name}: unreachable from others"  # noqa: S104
            ports[name] = parsed.params["port"]
    for name, svc in _built_services().items():
        path, parsed = resolve(_command(svc))
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
        path, _ = resolve(_command(services[name]))
        if path[0] in ("run", "topics"):
            assert env.get("KAFKA_BOOTSTRAP_SERVERS") in advertised, f"{name}: no broker"
            conditions = {k: v.get("condition") for k, v in services[name]["depends_on"].items()}
            assert conditions.get("kafka") == "service_healthy", name
            if path[0] == "run":
                assert conditions.get("topics") == "service_completed_successfully", name


def _jobs() -> set[str]:
    """Services others wait for to complete, not to be healthy."""
    return {
        dependency
        for svc in _services().values()
        for dependency, how in (svc.get("depends_on") or {}).items()
        if how.get("condition") == "service_completed_successfully"
    }


def _tools() -> set[str]:
    """One-shot commands an operator runs on demand (`docker compose run --rm <name>`):
    in the `tools` profile, so `up` never starts them."""
    return {name for name, svc in _services().items() if "tools" in (svc.get("profiles") or [])}


def _check(service: dict[str, Any]) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    assert isinstance(test, list), "healthcheck.test: expected [CMD, ...]"
    assert test[0] == "CMD", f"healthcheck.test: {test}"
    return [str(word) for word in test[1:]]


def _dockerfile_targets() -> set[str]:
    return set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE.read_text(), re.M))


def test_every_long_running_service_has_a_health_check_and_jobs_are_waited_for() -> None:
    jobs = _jobs()
    assert jobs == {"topics"}
    assert _tools() == {"tenants-apply"}
    for name in jobs | _tools():
        assert _services()[name].get("restart") == "no", f"{name}: a job runs once"
        assert _services()[name]["healthcheck"] == {"disable": True}, name
    for name, svc in _services().items():
        if name not in jobs | _tools():
            assert _check(svc), f"{name}: no health check"


@pytest.mark.parametrize("name", RUNNERS)
def test_each_service_is_healthy_when_ready_through_a_real_command(name: str) -> None:
    words = _check(_built_services()[name])
    assert words[0] == "siesa-sync", words
    path, parsed = resolve(words[1:])
    assert path == ["health"]
    assert parsed.params["ready"] is True, "compose orders start-up on readiness (/readyz)"
    # The port it asks is the service's own: its default or its HEALTH_PORT.
    env = _environment(_built_services()[name])
    assert not any(variable.endswith("_HEALTH_PORT") for variable in env)
    assert env[f"{name.upper()}_HEALTH_HOST"] == "0.0.0.0"  # noqa: S104 - in its container


def test_simulators_are_checked_on_the_port_they_listen_on() -> None:
    for name, svc in _built_services().items():
        path, parsed = resolve(_command(svc))
        if path == ["sim"]:
            check = " ".join(_check(svc))
            assert f"127.0.0.1:{parsed.params['port']}/_admin/stats" in check, (name, check)


def test_each_service_starts_once_what_it_depends_on_is_healthy_or_done() -> None:
    jobs = _jobs()
    for name, svc in _services().items():
        for dependency, how in (svc.get("depends_on") or {}).items():
            assert dependency in _services(), f"{name}: depends on unknown {dependency}"
            expected = (
                "service_completed_successfully" if dependency in jobs else ("service_healthy")
            )
            assert how.get("condition") == expected, f"{name} -> {dependency}: {how}"
            if expected == "service_healthy":
                assert _check(_services()[dependency]), f"{dependency}: no health check"


def test_services_use_the_runtime_image_and_simulators_the_sim_one() -> None:
    assert {"wheel", "runtime", "sim"} <= _dockerfile_targets()
    dockerfile = DOCKERFILE.read_text()
    assert "pip install --no-deps /tmp/dist/*.whl" in dockerfile  # the wheel, not editable
    assert " -e " not in dockerfile
    assert re.search(r'^HEALTHCHECK .*\n?.*CMD \["siesa-sync", "health"\]', dockerfile, re.M)
    assert re.search(r"^USER 10001$", dockerfile, re.M)
    assert resolve(["health"])[0] == ["health"]  # the image's HEALTHCHECK is a real command
    for name, svc in _built_services().items():
        path, _ = resolve(_command(svc))
        target = svc["build"]["target"]
        assert target == ("sim" if path == ["sim"] else "runtime"), f"{name}: target {target}"
