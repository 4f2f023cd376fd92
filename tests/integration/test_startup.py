"""A bad configuration stops a service at start-up, names what is wrong, leaks no secret."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import yaml

from devtools.stack import Stack

SECRET = secrets.token_urlsafe(24)  # a fresh one each run: it must not show anywhere


def start_service(
    name: str, tenants_file: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        env={
            **os.environ,
            **env,
            f"{name.upper()}_TENANTS_FILE": str(tenants_file),
            # Nothing listens here: a service that got past its checks would hang, not exit.
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_tenants_file_stops_every_service_naming_tenant_and_field(tmp_path: Path) -> None:
    stack = Stack(bootstrap="unused")
    good = stack.kong_tenant("acme", 8585)
    broken = stack.kong_tenant("globex", 8020)
    broken["siesa"]["page_size"] = 500
    # In the first release's shape (credentials at the top of `target`), which still
    # loads: its errors name the fields as written.
    auth = broken["target"].pop("auth")
    broken["target"]["username"] = auth["username"]
    broken["target"]["password"] = {"env": "GLOBEX_KONG_PASSWORD_UNSET"}
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": [good, broken]}))
    env = {**stack.credentials.tenant_env("acme"), "ACME_KONG_PASSWORD": SECRET}

    for service in ("extractor", "transformer", "loader"):
        done = start_service(service, tenants_file, env)

        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "tenant globex: siesa.page_size" in output
        assert "tenant globex: target.password" in output
        assert "GLOBEX_KONG_PASSWORD_UNSET is not set" in output
        assert SECRET not in output


def test_loader_refuses_a_kong_tenant_without_its_settings(tmp_path: Path) -> None:
    stack = Stack(bootstrap="unused")
    tenant = stack.kong_tenant("acme", 8585)
    tenant["target"]["settings"] = {"customer_id": "one hundred"}
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": [tenant]}))

    done = start_service("loader", tenants_file, stack.credentials.tenant_env("acme"))

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "tenant acme: target.settings.type_id" in output
    assert "tenant acme: target.settings.customer_id" in output


def test_a_bad_setting_of_any_target_type_stops_every_service_naming_tenant_and_field(
    tmp_path: Path,
) -> None:
    stack = Stack(bootstrap="unused")
    kong = stack.kong_tenant("k-tenant", 1)
    kong["target"]["settings"]["customer_id"] = "one hundred"
    wms = stack.wms_tenant("w-tenant", 2, settings={"group_type": "aisle"})
    hook = stack.webhook_tenant("h-tenant", 3)
    del hook["target"]["settings"]["secret"]
    tenants_file = tmp_path / "tenants.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": [kong, wms, hook]}))
    env: dict[str, str] = {}
    for tenant in ("k-tenant", "w-tenant", "h-tenant"):
        env.update(stack.credentials.tenant_env(tenant))

    for service in ("extractor", "transformer", "loader"):
        done = start_service(service, tenants_file, env)

        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert "tenant k-tenant: target.settings.customer_id" in output
        assert "tenant w-tenant: target.settings.group_type" in output
        assert "tenant h-tenant: target.settings.secret: Field required" in output
