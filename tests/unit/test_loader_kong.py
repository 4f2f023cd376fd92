"""The Kong adapter's upserts against the real Kong simulator app (in process), through
the session the loader builds (its settings and payload: test_targets_kong.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from services.common.errors import RetriableError, SkippableError
from services.targets.base import TargetRejected
from services.targets.kong import KongAdapter
from services.targets.session import TargetSession
from simulators.kong import create_app
from tests.unit.kong_support import (
    BASE_URL,
    FIXTURES,
    PASSWORD,
    USERNAME,
    VOLATILE,
    forwarding,
    kong_on,
    logins,
    product,
    requests,
    stored,
    through,
)

# The session gives every request the target's timeout (an injected client may serve
# tenants with different ones); Starlette's test client warns about it, harmlessly.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("K_USER", USERNAME)
    monkeypatch.setenv("K_PASSWORD", PASSWORD)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(TargetSession.call.retry, "sleep", waits.append)  # type: ignore[attr-defined]
    return waits


@pytest.fixture
def app() -> Any:
    return create_app({USERNAME: PASSWORD})


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def adapter(app: Any) -> Iterator[KongAdapter]:
    kong = kong_on(app)
    yield kong
    kong.close()


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
    created = adapter.upsert(product())
    before = requests(admin)

    result = adapter.upsert(product(name="CAMISA OXFORD & CO", is_active=False), created.target_id)

    (sku,) = stored(admin)
    assert result.action == "updated"
    assert (sku["name"], sku["is_active"]) == ("CAMISA OXFORD & CO", False)
    assert requests(admin) - before == 1
    assert requests(admin, "PATCH", 200) == 1


def test_a_fresh_adapter_finds_the_existing_sku_instead_of_duplicating(
    app: Any, adapter: KongAdapter, admin: TestClient
) -> None:
    created = adapter.upsert(product())
    fresh = kong_on(app)  # a restarted loader: the id comes back from loader.target-ids.v1

    result = fresh.upsert(product(display_name="Nueva"), created.target_id)

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
    created = adapter.upsert(product())
    assert logins(admin) == 1
    admin.post("/_admin/reset")  # forgets tokens (and SKUs, and stats)

    result = adapter.upsert(product(name="OTRA VEZ"), created.target_id)

    assert logins(admin) == 1
    assert requests(admin, status=401) == 1
    (sku,) = stored(admin)
    assert sku["name"] == "OTRA VEZ"
    assert result.action == "created"  # the kept id was gone too: 404, then posted


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
    # Another writer created it; this loader has no id for it: its create answers
    # "already exists", then it looks the SKU up and patches it.
    other = TestClient(app)
    token = other.post("/auth/token/login/", json={"username": USERNAME, "password": PASSWORD})
    other.post(
        "/inventory/skus/",
        json={"external_id": "CAM-OXF-001", "name": "OLD", "type_id": 1, "customer_id": 100},
        headers={"Authorization": f"Token {token.json()['auth_token']}"},
    )
    kong = kong_on(app)

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
    owner = kong_on(app, {"type_id": 1, "customer_id": 999}, tenant="other")
    owner.upsert(product())
    kong = kong_on(app)

    with pytest.raises(TargetRejected, match="already exists"):
        kong.upsert(product(name="MINE"))

    (sku,) = stored(admin)
    assert (sku["customer_id"], sku["name"]) == (999, "CAMISA OXFORD MANGA LARGA AZUL")


def test_refused_credentials_are_retriable_and_never_shown(
    app: Any, admin: TestClient, monkeypatch: pytest.MonkeyPatch, no_sleep: list[float]
) -> None:
    monkeypatch.setenv("K_PASSWORD", "wrong-" + PASSWORD)
    kong = kong_on(app)

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

    kong = through(httpx.Client(base_url=BASE_URL, transport=forwarding(app, flaky)))

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

    kong = through(httpx.Client(base_url=BASE_URL, transport=forwarding(app, refuse_tokens)))

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


def test_an_update_by_a_kept_id_is_conditional_on_the_sku_still_being_ours(
    app: Any, adapter: KongAdapter, admin: TestClient
) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> None:
        seen.append(request)

    created = adapter.upsert(product())
    admin.post("/_admin/reset")  # Kong lost its data; ids start again at 1
    other = kong_on(app)
    taken = other.upsert(product(sku="SOMEONE-ELSE", name="NOT YOURS"))
    assert taken.target_id == created.target_id  # the kept id now names another SKU
    kong = through(httpx.Client(base_url=BASE_URL, transport=forwarding(app, lambda r: record(r))))

    result = kong.upsert(product(name="MINE"), created.target_id)

    patch = next(r for r in seen if r.method == "PATCH")
    assert dict(patch.url.params) == {"external_id": "CAM-OXF-001", "customer_id": "100"}
    by_id = {s["external_id"]: s for s in stored(admin)}
    assert by_id["SOMEONE-ELSE"]["name"] == "NOT YOURS"
    assert by_id["CAM-OXF-001"]["name"] == "MINE"
    assert result.action == "created"
    assert result.target_id != created.target_id


def test_without_conditional_updates_a_kept_id_is_looked_up_first(
    app: Any, admin: TestClient
) -> None:
    settings = {"type_id": 1, "customer_id": 100, "conditional_update": False}
    kong = kong_on(app, settings)
    created = kong.upsert(product())
    admin.post("/_admin/reset")
    kong_on(app).upsert(product(sku="SOMEONE-ELSE", name="NOT YOURS"))  # takes the id
    before = requests(admin)

    result = kong.upsert(product(name="MINE"), created.target_id)

    assert result.action == "created"
    assert requests(admin) - before == 4  # 401 (token reset), login, look-up (absent), create
    by_id = {s["external_id"]: s["name"] for s in stored(admin)}
    assert by_id == {"SOMEONE-ELSE": "NOT YOURS", "CAM-OXF-001": "MINE"}
    looked_up = requests(admin, "GET")
    again = kong.upsert(product(name="MINE 2"), result.target_id)
    assert again.action == "updated"
    assert requests(admin, "GET") == looked_up + 1  # every update by a kept id looks up first


def test_a_product_never_written_is_created_first_with_one_call(
    adapter: KongAdapter, admin: TestClient
) -> None:
    adapter.upsert(product(sku="WARM"))  # logged in
    before = requests(admin)

    result = adapter.upsert(product())

    assert result.action == "created"
    assert requests(admin) - before == 1
    assert requests(admin, "GET") == 0
