"""The Kong adapter: payload from a canonical product plus tenant settings, and upserts
against the real Kong simulator app (in process)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from services.common.errors import ConfigError, RetriableError, SkippableError
from services.common.tenants import Target
from services.loader.adapters import ADAPTERS
from services.loader.adapters.base import TargetRejected
from services.loader.adapters.kong import KongAdapter
from services.loader.session import TargetSession
from simulators.kong import create_app
from tests import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
USERNAME, PASSWORD = "integrator", "s3cret-pass-xyz"
BASE_URL = "http://kong.test"
VOLATILE = ("modified", "_stored_at")


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_USER", USERNAME)
    monkeypatch.setenv("K_PASSWORD", PASSWORD)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(TargetSession.call.retry, "sleep", waits.append)  # type: ignore[attr-defined]
    return waits


def target(settings: dict[str, Any] | None = None) -> Target:
    return Target.model_validate(
        {
            "type": "kong",
            "base_url": BASE_URL,
            "username": {"env": "K_USER"},
            "password": {"env": "K_PASSWORD"},
            "settings": {"type_id": 1, "customer_id": 100} if settings is None else settings,
        }
    )


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
    kong = KongAdapter("acme", target(settings))
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


@pytest.fixture
def app() -> Any:
    return create_app({USERNAME: PASSWORD})


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def connect(adapter: KongAdapter, app: Any) -> KongAdapter:
    adapter.session.http.close()
    adapter.session.http = TestClient(app, base_url=BASE_URL)
    return adapter


@pytest.fixture
def adapter(app: Any) -> Iterator[KongAdapter]:
    kong = connect(KongAdapter("acme", target()), app)
    yield kong
    kong.close()


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


# -- the payload ----------------------------------------------------------------------


def test_the_adapter_is_registered_as_kong() -> None:
    assert ADAPTERS["kong"] is KongAdapter


def test_a_full_product_becomes_a_kong_sku_with_tenant_settings() -> None:
    body = payload(product(attributes={"color": "AZUL"}), {"type_id": 7, "customer_id": 42})

    assert body == {
        "external_id": "CAM-OXF-001",
        "name": "CAMISA OXFORD MANGA LARGA AZUL",
        "display_name": "Camisa Oxford Azul",
        "reference": "CAM-OXF-001",
        "type_id": 7,
        "customer_id": 42,
        "is_active": True,
        "group_external_id": "10",
        "ean": "7701234000011",
        "properties": {"color": "AZUL", "unit": "UNIT", "weight_kg": 0.35, "volume_m3": 0.002},
    }


@pytest.mark.parametrize(
    ("barcode", "kind", "field"),
    [
        ("7701234000011", "EAN13", "ean"),
        ("96385074", "EAN8", "ean"),
        ("012345678905", "UPC_A", "upc"),
    ],
)
def test_gtins_go_to_ean_or_upc(barcode: str, kind: str, field: str) -> None:
    body = payload(product(barcode=barcode, barcode_type=kind))

    (other,) = {"ean", "upc"} - {field}
    assert body[field] == barcode
    assert other not in body
    assert "barcode" not in body.get("properties", {})


def test_an_other_barcode_is_kept_as_a_property_only() -> None:
    body = payload(product(barcode="ABC-123", barcode_type="OTHER"))

    assert "ean" not in body
    assert "upc" not in body
    assert body["properties"]["barcode"] == "ABC-123"


def test_a_bare_product_falls_back_and_leaves_optional_fields_out() -> None:
    bare = product(
        display_name=None,
        reference=None,
        group_code=None,
        barcode=None,
        barcode_type=None,
        unit=None,
        weight_kg=None,
        volume_m3=None,
        is_active=False,
    )

    body = payload(bare)

    assert body == {
        "external_id": "CAM-OXF-001",
        "name": "CAMISA OXFORD MANGA LARGA AZUL",
        "display_name": "CAMISA OXFORD MANGA LARGA AZUL",
        "reference": "CAM-OXF-001",
        "type_id": 1,
        "customer_id": 100,
        "is_active": False,
    }


@pytest.mark.parametrize(
    ("settings", "missing"),
    [
        ({"customer_id": 100}, ["type_id"]),
        ({"type_id": 1}, ["customer_id"]),
        ({}, ["type_id", "customer_id"]),
        ({"type_id": "1", "customer_id": 100}, ["type_id"]),
        ({"type_id": True, "customer_id": 100}, ["type_id"]),
    ],
)
def test_missing_or_bad_settings_are_config_errors_naming_tenant_and_field(
    settings: dict[str, Any], missing: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        KongAdapter("acme", target(settings))

    problems = caught.value.problems
    assert len(problems) == len(missing)
    for problem, name in zip(problems, missing, strict=True):
        assert problem.startswith(f"tenant acme: target.settings.{name}:")


# -- upserts against the simulator ----------------------------------------------------


def test_create_stores_the_sku(adapter: KongAdapter, admin: TestClient) -> None:
    result = adapter.upsert(product())

    (sku,) = stored(admin)
    assert result.action == "created"
    assert result.target_id == str(sku["id"])
    assert sku["external_id"] == "CAM-OXF-001"
    assert sku["ean"] == "7701234000011"
    assert sku["gtin_code"] == "07701234000011"
    assert (sku["type_id"], sku["customer_id"], sku["group_external_id"]) == (1, 100, "10")
    assert sku["properties"] == {"unit": "UNIT", "weight_kg": 0.35, "volume_m3": 0.002}


def test_an_update_of_the_same_sku_patches_it_with_one_call(
    adapter: KongAdapter, admin: TestClient
) -> None:
    adapter.upsert(product())
    before = requests(admin)

    result = adapter.upsert(product(name="CAMISA OXFORD & CO", is_active=False))

    (sku,) = stored(admin)
    assert result.action == "updated"
    assert (sku["name"], sku["is_active"]) == ("CAMISA OXFORD & CO", False)
    assert requests(admin) - before == 1
    assert requests(admin, "PATCH", 200) == 1


def test_a_fresh_adapter_finds_the_existing_sku_instead_of_duplicating(
    app: Any, adapter: KongAdapter, admin: TestClient
) -> None:
    adapter.upsert(product())
    fresh = connect(KongAdapter("acme", target()), app)

    result = fresh.upsert(product(display_name="Nueva"))

    (sku,) = stored(admin)
    assert result.action == "updated"
    assert sku["display_name"] == "Nueva"
    assert requests(admin, "POST", 400) == 0


def test_a_replayed_upsert_is_idempotent(adapter: KongAdapter, admin: TestClient) -> None:
    adapter.upsert(product())
    first = [{k: v for k, v in s.items() if k not in VOLATILE} for s in stored(admin)]

    for _ in range(3):
        adapter.upsert(product())

    again = [{k: v for k, v in s.items() if k not in VOLATILE} for s in stored(admin)]
    assert again == first
    assert len(again) == 1


def test_delete_inactivates_and_keeps_the_rest(adapter: KongAdapter, admin: TestClient) -> None:
    adapter.upsert(product())
    delete = product(
        op="DELETE", name="CAM-OXF-001", display_name=None, barcode=None, is_active=False
    )

    result = adapter.upsert(delete)

    (sku,) = stored(admin)
    assert result.action == "inactivated"
    assert sku["is_active"] is False
    assert sku["name"] == "CAMISA OXFORD MANGA LARGA AZUL"
    assert sku["ean"] == "7701234000011"


def test_delete_of_an_unknown_sku_creates_nothing(adapter: KongAdapter, admin: TestClient) -> None:
    result = adapter.upsert(product(op="DELETE", sku="NEVER-SEEN", is_active=False))

    assert result.action == "absent"
    assert stored(admin) == []


def test_a_dropped_token_triggers_one_re_login(adapter: KongAdapter, admin: TestClient) -> None:
    adapter.upsert(product())
    assert logins(admin) == 1
    admin.post("/_admin/reset")  # forgets tokens (and SKUs, and stats)

    result = adapter.upsert(product(name="OTRA VEZ"))

    assert logins(admin) == 1
    assert requests(admin, status=401) == 1
    (sku,) = stored(admin)
    assert sku["name"] == "OTRA VEZ"
    assert result.action == "created"  # the cached id was gone too: looked up, then posted


def test_many_threads_meeting_one_expired_token_log_in_once(
    adapter: KongAdapter, admin: TestClient
) -> None:
    for i in range(8):
        adapter.upsert(product(sku=f"SKU-{i}"))
    admin.post("/_admin/reset")  # every thread's token is now refused

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(adapter.upsert, [product(sku=f"SKU-{i}") for i in range(8)]))

    assert [r.action for r in results] == ["created"] * 8
    assert logins(admin) == 1
    assert len(stored(admin)) == 8


def test_a_sku_created_meanwhile_is_looked_up_and_patched(app: Any, admin: TestClient) -> None:
    hidden = [True]

    def hide_first_lookup(request: httpx.Request) -> httpx.Response | None:
        if request.method == "GET" and hidden:
            hidden.clear()
            return httpx.Response(
                200, json={"count": 0, "next": None, "previous": None, "results": []}
            )
        return None

    other = TestClient(app)
    token = other.post("/auth/token/login/", json={"username": USERNAME, "password": PASSWORD})
    other.post(
        "/inventory/skus/",
        json={"external_id": "CAM-OXF-001", "name": "OLD", "type_id": 1, "customer_id": 100},
        headers={"Authorization": f"Token {token.json()['auth_token']}"},
    )
    kong = KongAdapter("acme", target())
    kong.session.http.close()
    kong.session.http = httpx.Client(
        base_url=BASE_URL, transport=forwarding(app, hide_first_lookup)
    )

    result = kong.upsert(product())

    (sku,) = stored(admin)
    assert result.action == "updated"
    assert sku["name"] == "CAMISA OXFORD MANGA LARGA AZUL"
    assert requests(admin, "POST", 400) == 1


def test_a_validation_error_rejects_only_that_record(
    adapter: KongAdapter, admin: TestClient
) -> None:
    with pytest.raises(TargetRejected) as caught:
        adapter.upsert(product(name="   "))

    assert isinstance(caught.value, SkippableError)
    assert "item CAM-OXF-001" in caught.value.message
    assert "HTTP 400" in caught.value.message
    assert "may not be blank" in caught.value.message
    assert adapter.upsert(product(sku="OK-1")).action == "created"


def test_an_external_id_held_by_another_customer_is_rejected(app: Any, admin: TestClient) -> None:
    owner = connect(KongAdapter("other", target({"type_id": 1, "customer_id": 999})), app)
    owner.upsert(product())
    kong = connect(KongAdapter("acme", target()), app)

    with pytest.raises(TargetRejected, match="already exists"):
        kong.upsert(product(name="MINE"))

    (sku,) = stored(admin)
    assert (sku["customer_id"], sku["name"]) == (999, "CAMISA OXFORD MANGA LARGA AZUL")


def test_refused_credentials_are_retriable_and_never_shown(
    app: Any, admin: TestClient, monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    monkeypatch.setenv("K_PASSWORD", "wrong-" + PASSWORD)
    kong = connect(KongAdapter("acme", target()), app)

    with pytest.raises(RetriableError) as caught:
        kong.upsert(product())

    assert not isinstance(caught.value, SkippableError)
    assert PASSWORD not in caught.value.message
    assert "credentials refused" in caught.value.message
    assert stored(admin) == []


def test_a_transient_failure_is_retried(app: Any, admin: TestClient, no_sleep: list[float]) -> None:
    failures = [httpx.Response(503, headers={"Retry-After": "1"}), httpx.Response(429)]

    def flaky(request: httpx.Request) -> httpx.Response | None:
        if request.url.path == "/inventory/skus/" and request.method == "POST" and failures:
            return failures.pop(0)
        return None

    kong = KongAdapter("acme", target())
    kong.session.http.close()
    kong.session.http = httpx.Client(base_url=BASE_URL, transport=forwarding(app, flaky))

    assert kong.upsert(product()).action == "created"
    assert len(stored(admin)) == 1
    assert no_sleep[0] == 1.0


def test_a_401_that_survives_re_login_is_not_blamed_on_the_record(
    app: Any, no_sleep: list[float]
) -> None:
    def refuse_tokens(request: httpx.Request) -> httpx.Response | None:
        if request.url.path != "/auth/token/login/":
            return httpx.Response(401, json={"detail": "Invalid token."})
        return None

    kong = KongAdapter("acme", target())
    kong.session.http.close()
    kong.session.http = httpx.Client(base_url=BASE_URL, transport=forwarding(app, refuse_tokens))

    with pytest.raises(RetriableError):
        kong.upsert(product())


def test_the_golden_products_land_in_kong_as_expected(
    adapter: KongAdapter, admin: TestClient
) -> None:
    products = json.loads((FIXTURES / "expected-canonical.json").read_text())["products"]
    expected = json.loads((FIXTURES / "expected-kong.json").read_text())["skus"]

    for canonical in products:
        adapter.upsert({**canonical, "sync_id": "s", "trace_id": "t"})

    by_id = {s["external_id"]: s for s in stored(admin)}
    assert sorted(by_id) == sorted(e["external_id"] for e in expected)
    for sku in expected:
        held = by_id[sku["external_id"]]
        assert {k: held[k] for k in sku} == sku
    assert by_id["PAN-DRL-032"]["ean"] is None
    assert by_id["PAN-DRL-032"]["upc"] is None
    assert by_id["TUB-PVC-2030"]["ean"] is None


@pytest.mark.parametrize(
    ("group_field", "expected"),
    [
        (None, {"group_external_id": "10"}),
        ("group_id", {"group_id": 10}),
        ("none", {}),
    ],
)
def test_the_group_goes_where_the_tenant_says(
    group_field: str | None, expected: dict[str, Any]
) -> None:
    settings: dict[str, Any] = {"type_id": 1, "customer_id": 100}
    if group_field is not None:
        settings["group_field"] = group_field
    body = payload(product(), settings)
    assert {k: v for k, v in body.items() if k.startswith("group")} == expected


def test_an_unknown_group_field_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"tenant acme: target\.settings\.group_field"):
        KongAdapter("acme", target({"type_id": 1, "customer_id": 100, "group_field": "x"}))
