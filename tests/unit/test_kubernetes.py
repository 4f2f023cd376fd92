"""deploy/kubernetes/ agrees with the code it runs, checked without a cluster.

Every container runs a real `siesa-sync` command; each service has its liveness probe
on /healthz and readiness probe on /readyz at the port it serves them on (reachable
from the kubelet); every environment name is one the process reads (settings fields,
the tenants file's credential references); KAFKA_* come from a ConfigMap, the tenants
file is mounted from one, every credential comes from the Secret and none is written
here; transformers and loaders have stable instance ids (their StatefulSet pod names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.service import DEFAULT_HEALTH_PORTS
from tests.unit.deploy_support import (
    JWT_LIKE,
    URL_WITH_PASSWORD,
    allowed_env,
    env_references,
    is_secret_name,
    resolve,
    settings_class,
    used_references,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
CREDENTIALS = "siesa-sync-credentials"  # the Secret the credentials come from
WORKLOADS = ("Deployment", "StatefulSet", "Job")


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in _documents() if doc["kind"] == kind}


def _config_maps() -> dict[str, dict[str, str]]:
    return {name: doc["data"] for name, doc in _kind("ConfigMap").items()}


def _containers() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """container name -> (its workload, the container)."""
    found = {}
    for doc in _documents():
        if doc["kind"] in WORKLOADS:
            for container in doc["spec"]["template"]["spec"]["containers"]:
                found[container["name"]] = (doc, container)
    return found


def _run(container: dict[str, Any]) -> tuple[list[str], Any]:
    assert "command" not in container, "keep the image's siesa-sync entrypoint"
    return resolve([str(word) for word in container["args"]])


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every environment variable the container gets -> how (value or valueFrom)."""
    env: dict[str, dict[str, Any]] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in _config_maps(), f"envFrom: no ConfigMap {name}"
        env |= {key: {"configMap": name} for key in _config_maps()[name]}
    for entry in container.get("env", []):
        env[entry["name"]] = entry
    return env


def _tenants(workload: dict[str, Any], container: dict[str, Any], service: str) -> Any:
    """The tenants file the service is pointed at, read from the ConfigMap it is mounted
    from (its TENANTS_FILE must be a file of that mount)."""
    prefix = str(settings_class(service).model_config["env_prefix"])
    path = Path(_env(container)[f"{prefix}TENANTS_FILE"]["value"])
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    for mount in container.get("volumeMounts", []):
        if path.parent == Path(mount["mountPath"]):
            config_map = volumes[mount["name"]]["configMap"]["name"]
            assert path.name in _config_maps()[config_map], f"{path}: not in {config_map}"
            return yaml.safe_load(_config_maps()[config_map][path.name])
    pytest.fail(f"{service}: {path} is on no ConfigMap mount")


CONTAINERS = sorted(_containers())
SERVICES = sorted(n for n in CONTAINERS if _run(_containers()[n][1])[0] == ["run"])


def test_kustomization_applies_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_the_three_services_and_the_topics_job_are_deployed() -> None:
    commands = {n: _run(c)[0] for n, (_, c) in _containers().items()}
    assert sorted(SERVICES) == sorted(DEFAULT_HEALTH_PORTS)
    assert ["topics", "create"] in commands.values()
    for name in SERVICES:
        assert _run(_containers()[name][1])[1].params["service"] == name


@pytest.mark.parametrize("name", SERVICES)
def test_probes_ask_healthz_and_readyz_where_the_service_serves_them(name: str) -> None:
    workload, container = _containers()[name]
    assert workload["kind"] in ("Deployment", "StatefulSet")
    prefix = str(settings_class(name).model_config["env_prefix"])
    env = _env(container)
    assert env[f"{prefix}HEALTH_HOST"]["value"] == "0.0.0.0"  # noqa: S104 - the kubelet asks
    port = int(env.get(f"{prefix}HEALTH_PORT", {}).get("value", DEFAULT_HEALTH_PORTS[name]))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{name}: {probe} asks {get['path']}"
        assert ports.get(get["port"], get["port"]) == port, f"{name}: {probe} port"


@pytest.mark.parametrize("name", CONTAINERS)
def test_environment_names_are_read_by_the_process(name: str) -> None:
    workload, container = _containers()[name]
    path, parsed = _run(container)
    tenants = _tenants(workload, container, name) if path == ["run"] else None
    unknown = sorted(set(_env(container)) - allowed_env(path, parsed, tenants))
    assert not unknown, f"{name} is given environment variables it never reads: {unknown}"


@pytest.mark.parametrize("name", SERVICES)
def test_config_from_config_maps_and_every_credential_from_the_secret(name: str) -> None:
    workload, container = _containers()[name]
    env = _env(container)
    for variable, how in env.items():
        if variable.startswith("KAFKA_"):
            assert "configMap" in how, f"{name}: {variable} not from a ConfigMap"
        if is_secret_name(variable):
            ref = how.get("valueFrom", {}).get("secretKeyRef")
            assert ref, f"{name}: {variable} is not from a Secret"
            assert ref["name"] == CREDENTIALS, f"{name}: {variable} not from {CREDENTIALS}"
        value = str(how.get("value", ""))
        assert not JWT_LIKE.search(value), f"{name}: {variable} holds a token"
        assert not URL_WITH_PASSWORD.search(value), f"{name}: {variable} holds a password"
    tenants = _tenants(workload, container, name)
    assert env_references(tenants), "the tenants file names no credential"
    # The credentials of the tenant parts the service uses, and only those (any other is
    # refused by test_environment_names_are_read_by_the_process).
    missing = sorted(used_references(tenants, name) - set(env))
    assert not missing, f"{name}: the tenants file needs {missing}"
    assert "Secret" not in {doc["kind"] for doc in _documents()}, "never commit a Secret"


@pytest.mark.parametrize("name", ["transformer", "loader"])
def test_transformers_and_loaders_have_stable_instance_ids(name: str) -> None:
    workload, container = _containers()[name]
    assert workload["kind"] == "StatefulSet", f"{name}: pod names change in a {workload['kind']}"
    assert workload["spec"]["serviceName"] in _kind("Service")
    prefix = str(settings_class(name).model_config["env_prefix"])
    instance = _env(container)[f"{prefix}INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("name", CONTAINERS)
def test_containers_run_unprivileged_on_a_read_only_root(name: str) -> None:
    _, container = _containers()[name]
    context = container["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
