"""`target:` in the tenants file: chosen by `type` among the registered targets, every
problem named by tenant and field as written, and the first release's shape (credentials
at the top of `target`) still read, with a warning saying how to write it now."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.errors import ConfigError
from services.common.tenants import load_tenants
from services.targets.auth import BearerAuth, LoginAuth, NoAuth
from services.targets.kong import KongSettings
from services.targets.webhook import WebhookSettings
from services.targets.wms import WmsSettings

PASSWORD = "pa55-never-shown"  # noqa: S105 - a test credential


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("T_KEY", "T_TOKEN", "T_USER"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("T_PASSWORD", PASSWORD)


def tenant(target: dict[str, Any], tenant_id: str = "acme") -> dict[str, Any]:
    return {
        "id": tenant_id,
        "siesa": {
            "base_url": "http://siesa.test",
            "company": 1,
            "conni_key": {"env": "T_KEY"},
            "conni_token": {"env": "T_TOKEN"},
        },
        "target": target,
    }


def load(tmp_path: Path, *tenants: dict[str, Any]) -> Any:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))
    return load_tenants(path)


def problems(tmp_path: Path, *tenants: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, *tenants)
    return [p.split(": ", 1)[1] for p in caught.value.problems]  # without the file's path


LOGIN = {"username": {"env": "T_USER"}, "password": {"env": "T_PASSWORD"}}
KONG = {
    "type": "kong",
    "base_url": "http://kong.test",
    "auth": LOGIN,
    "settings": {"type_id": 1, "customer_id": 100},
}


def test_each_type_gets_its_own_settings_model(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        tenant(KONG, "k"),
        tenant({"type": "wms", "base_url": "http://wms.test", "auth": LOGIN}, "w"),
        tenant(
            {
                "type": "webhook",
                "base_url": "https://hooks.test",
                "settings": {"secret": {"env": "T_PASSWORD"}},
            },
            "h",
        ),
    )

    assert isinstance(loaded["k"].target, KongSettings)
    assert isinstance(loaded["k"].target.auth, LoginAuth)  # `auth` without a type: a login
    assert isinstance(loaded["w"].target, WmsSettings)
    assert loaded["w"].target.settings.group_type == "group"
    assert isinstance(loaded["h"].target, WebhookSettings)
    assert isinstance(loaded["h"].target.auth, NoAuth)
    assert loaded["h"].target.settings.secret.get() == PASSWORD
    assert PASSWORD not in repr(loaded)


def test_an_unknown_type_lists_the_known_ones(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, tenant({**KONG, "type": "sap"}))

    assert problem == "tenant acme: target.type: target type 'sap' is not one of kong, wms, webhook"


def test_every_problem_is_named_by_tenant_and_field_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        tenant({**KONG, "settings": {"type_id": 1}, "concurrency": 0}, "one"),
        tenant({**KONG, "auth": {"type": "bearer"}}, "two"),
        tenant({**KONG, "auth": {"type": "magic"}}, "three"),
        tenant(
            {"type": "webhook", "base_url": "ftp://x", "settings": {"secret": PASSWORD}}, "four"
        ),
    )

    assert sorted(p.split(":")[0] + ":" + p.split(":")[1] for p in found) == sorted(
        [
            "tenant one: target.concurrency",
            "tenant one: target.settings.customer_id",
            "tenant two: target.auth.token",
            "tenant three: target.auth.type",
            "tenant four: target.base_url",
            "tenant four: target.settings.secret",
        ]
    )
    assert all(PASSWORD not in p for p in found)


def test_a_login_without_a_path_needs_a_target_that_has_one(tmp_path: Path) -> None:
    hook = {"type": "webhook", "base_url": "http://h", "settings": {"secret": {"env": "T_KEY"}}}

    (problem,) = problems(tmp_path, tenant({**hook, "auth": LOGIN}))

    assert problem.startswith("tenant acme: target: ")
    assert "webhook has no login of its own: give auth.path" in problem


def test_the_first_releases_shape_still_loads_and_says_how_to_write_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = {
        "type": "wms",
        "base_url": "http://old-wms.test",
        "username": {"env": "T_USER"},
        "password": {"env": "T_PASSWORD"},
        "auth_scheme": "JWT",
        "settings": {"reception_type": "GENERAL"},
    }

    with caplog.at_level(logging.WARNING):
        target = load(tmp_path, tenant(old))["acme"].target

    assert isinstance(target.auth, LoginAuth)
    assert (target.auth.username.get(), target.auth.password.get()) == ("x", PASSWORD)
    assert target.auth.scheme == "JWT"
    (warning,) = [r.getMessage() for r in caplog.records if "old shape" in r.getMessage()]
    assert "http://old-wms.test" in warning
    assert "move them under `auth:`" in warning


def test_the_old_shapes_errors_name_the_fields_it_wrote(tmp_path: Path) -> None:
    old = {
        "type": "kong",
        "base_url": "http://kong.test",
        "username": {"env": "T_USER"},
        "password": PASSWORD,
        "auth_scheme": "two words",
        "settings": {"type_id": 1, "customer_id": 100},
    }

    found = problems(tmp_path, tenant(old))

    assert sorted(p.split(":")[1].strip() for p in found) == [
        "target.auth_scheme",
        "target.password",
    ]
    assert all(PASSWORD not in p for p in found)


def test_old_credentials_next_to_an_auth_are_refused(tmp_path: Path) -> None:
    (problem,) = problems(tmp_path, tenant({**KONG, "password": {"env": "T_PASSWORD"}}))

    assert problem.startswith("tenant acme: target.password: Extra inputs are not permitted")


def test_any_target_may_use_any_strategy(tmp_path: Path) -> None:
    wms = {
        "type": "wms",
        "base_url": "http://wms.test",
        "auth": {"type": "bearer", "token": {"env": "T_PASSWORD"}},
    }

    target = load(tmp_path, tenant(wms))["acme"].target

    assert isinstance(target.auth, BearerAuth)
    assert target.identity == "wms http://wms.test"
