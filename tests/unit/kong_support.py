"""What the Kong tests share: a Kong tenant's target, an adapter on the simulator app (in
process, through the session the loader builds), a canonical product, what Kong holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from services.common.errors import ConfigError
from services.common.settings import ROOT
from services.common.tenants import load_tenants
from services.targets import open_target
from services.targets.config import parse_target
from services.targets.kong import KongAdapter, KongSettings

FIXTURES = ROOT / "tests" / "fixtures"
USERNAME, PASSWORD = "integrator", "s3cret-pass-xyz"
BASE_URL = "http://kong.test"
VOLATILE = ("modified", "_stored_at")


def config(settings: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "kong",
        "base_url": BASE_URL,
        "auth": {"username": {"env": "K_USER"}, "password": {"env": "K_PASSWORD"}},
        "settings": {"type_id": 1, "customer_id": 100} if settings is None else settings,
    }


def target(settings: dict[str, Any] | None = None) -> KongSettings:
    parsed = parse_target(config(settings))
    assert isinstance(parsed, KongSettings)
    return parsed


def kong_on(app: Any, settings: dict[str, Any] | None = None, tenant: str = "acme") -> KongAdapter:
    """A Kong adapter whose calls go to the simulator `app` (the session injected)."""
    return through(TestClient(app, base_url=BASE_URL), settings, tenant)


def through(
    client: httpx.Client, settings: dict[str, Any] | None = None, tenant: str = "acme"
) -> KongAdapter:
    kong = open_target(tenant, target(settings), client=client)
    assert isinstance(kong, KongAdapter)
    return kong


def problems_loading(tmp_path: Path, settings: dict[str, Any]) -> tuple[Path, list[str]]:
    """The problems a tenants file with a Kong tenant of these settings has."""
    tenant = {
        "id": "acme",
        "siesa": {
            "base_url": "http://siesa.test",
            "company": 1,
            "conni_key": {"env": "K_USER"},
            "conni_token": {"env": "K_USER"},
        },
        "target": config(settings),
    }
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [tenant]}))
    with pytest.raises(ConfigError) as caught:
        load_tenants(path)
    return path, caught.value.problems


def product(**overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "sku": "CAM-OXF-001",
        "name": "CAMISA OXFORD MANGA LARGA AZUL",
        "display_name": "Camisa Oxford Azul",
        "reference": "CAM-OXF-001",
        "group_code": "10",
        "barcode": "7701234000011",
        "barcode_type": "EAN13",
        "unit": "UNIT",
        "is_active": True,
        "weight_kg": 0.35,
        "volume_m3": 0.002,
        "attributes": {},
        "op": "UPSERT",
        "mapping_name": "siesa-items",
        "mapping_version": "1",
        "sync_id": "s",
        "trace_id": "t",
        "source_fingerprint": "f",
        **overrides,
    }


def payload(canonical: dict[str, Any], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    kong = open_target("acme", target(settings))
    assert isinstance(kong, KongAdapter)
    try:
        return kong.payload(canonical)
    finally:
        kong.close()


def forwarding(
    app: Any, intercept: Callable[[httpx.Request], httpx.Response | None]
) -> httpx.MockTransport:
    """Answers with `intercept(request)` when it gives one, else with the simulator's."""
    simulator = TestClient(app)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = intercept(request)
        if answer is not None:
            return answer
        served = simulator.request(
            request.method, str(request.url), headers=dict(request.headers), content=request.content
        )
        return httpx.Response(served.status_code, headers=served.headers, content=served.content)

    return httpx.MockTransport(handler)


def stored(admin: TestClient) -> list[dict[str, Any]]:
    skus: list[dict[str, Any]] = admin.get("/_admin/skus").json()
    return skus


def requests(admin: TestClient, method: str | None = None, status: int | None = None) -> int:
    return sum(
        r["count"]
        for r in admin.get("/_admin/stats").json()["requests"]
        if (method is None or r["method"] == method) and (status is None or r["status"] == status)
    )


def logins(admin: TestClient) -> int:
    return sum(
        r["count"]
        for r in admin.get("/_admin/stats").json()["requests"]
        if r["route"] == "/auth/token/login/"
    )
