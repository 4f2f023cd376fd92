"""The contract every target adapter passes, run against each target's real simulator
app (in process): idempotent upsert, a replayed batch creates no duplicates, 401 → one
re-login, per-record results (a permanent refusal fails that record only), DELETE
inactivates, and the golden page lands as the fixture says.

Adding a target: one `Contract` entry below."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.common.errors import RetriableError, SkippableError
from services.common.tenants import Target
from services.loader.adapters import ADAPTERS
from services.loader.adapters.base import Adapter, TargetRejected
from simulators import kong, wms
from tests import ROOT

FIXTURES = ROOT / "tests" / "fixtures"
USERNAME, PASSWORD = "integrator", "s3cret-pass-xyz"


@dataclass(frozen=True)
class Contract:
    type: str
    create_app: Callable[[dict[str, str]], Any]
    settings: dict[str, Any]
    login_route: str
    stored_path: str
    golden_file: str
    golden_key: str
    is_active: Callable[[dict[str, Any]], bool]


CONTRACTS = [
    Contract(
        "kong",
        lambda users: kong.create_app(users),
        {"type_id": 1, "customer_id": 100},
        "/auth/token/login/",
        "/_admin/skus",
        "expected-kong.json",
        "skus",
        lambda held: held["is_active"] is True,
    ),
    Contract(
        "wms",
        lambda users: wms.create_app(users),
        {},
        "/auth",
        "/_admin/products",
        "expected-wms.json",
        "products",
        lambda held: held["status"] == "ACTIVE",
    ),
]


@pytest.fixture(params=CONTRACTS, ids=[c.type for c in CONTRACTS])
def contract(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Contract:
    monkeypatch.setenv("C_USER", USERNAME)
    monkeypatch.setenv("C_PASSWORD", PASSWORD)
    given: Contract = request.param
    return given


@pytest.fixture
def app(contract: Contract) -> Any:
    return contract.create_app({USERNAME: PASSWORD})


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def make_adapter(contract: Contract, app: Any, **target: Any) -> Adapter:
    config = Target.model_validate(
        {
            "type": contract.type,
            "base_url": "http://target.test",
            "username": {"env": "C_USER"},
            "password": {"env": "C_PASSWORD"},
            "settings": contract.settings,
            **target,
        }
    )
    adapter = ADAPTERS[contract.type]("acme", config)
    session = adapter.session  # type: ignore[attr-defined]
    session.http.close()
    session.http = TestClient(app, base_url="http://target.test")
    return adapter


@pytest.fixture
def adapter(contract: Contract, app: Any) -> Iterator[Adapter]:
    made = make_adapter(contract, app)
    yield made
    made.close()


def stored(contract: Contract, admin: TestClient) -> dict[str, dict[str, Any]]:
    items: list[dict[str, Any]] = admin.get(contract.stored_path).json()
    by_id = {item["external_id"]: item for item in items}
    assert len(by_id) == len(items), "the target holds duplicate external ids"
    return by_id


def logins(contract: Contract, admin: TestClient) -> int:
    stats = admin.get("/_admin/stats").json()["requests"]
    return sum(r["count"] for r in stats if r["route"] == contract.login_route)


def product(sku: str = "SKU-1", **overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "sku": sku,
        "name": f"PRODUCT {sku}",
        "display_name": None,
        "reference": sku,
        "group_code": "7",
        "barcode": "7701234000011",
        "barcode_type": "EAN13",
        "unit": "UNIT",
        "is_active": True,
        "weight_kg": 1.5,
        "volume_m3": None,
        "attributes": {},
        "op": "UPSERT",
        "mapping_name": "siesa-items",
        "mapping_version": "1",
        "sync_id": "s",
        "trace_id": "t",
        "source_fingerprint": "f",
        **overrides,
    }


def test_an_upsert_is_idempotent(contract: Contract, adapter: Adapter, admin: TestClient) -> None:
    first = adapter.upsert(product())
    again = adapter.upsert(product(name="RENAMED"))

    assert (first.action, again.action) == ("created", "updated")
    assert first.target_id == again.target_id
    held = stored(contract, admin)
    assert list(held) == ["SKU-1"]
    assert held["SKU-1"]["name"] == "RENAMED"


def test_a_replayed_batch_creates_no_duplicates(
    contract: Contract, app: Any, admin: TestClient
) -> None:
    batch = [product(f"SKU-{i}") for i in range(20)]
    first = make_adapter(contract, app)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(first.upsert, batch))
    # A second loader (empty id cache) replays the same batch after a rebalance.
    second = make_adapter(contract, app)
    with ThreadPoolExecutor(4) as pool:
        replayed = list(pool.map(second.upsert, batch))

    assert {r.action for r in replayed} == {"updated"}
    assert len(stored(contract, admin)) == 20


def test_a_401_leads_to_one_re_login(
    contract: Contract, app: Any, adapter: Adapter, admin: TestClient
) -> None:
    for i in range(4):
        adapter.upsert(product(f"SKU-{i}"))
    assert logins(contract, admin) == 1
    app.state.simulator._tokens.clear()  # every token the adapter holds is now refused

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(adapter.upsert, [product(f"SKU-{i}", name="X") for i in range(4)]))

    assert {r.action for r in results} == {"updated"}
    assert logins(contract, admin) == 2
    assert {h["name"] for h in stored(contract, admin).values()} == {"X"}


def test_refused_credentials_are_retriable_and_never_shown(
    contract: Contract, app: Any, monkeypatch: pytest.MonkeyPatch, admin: TestClient
) -> None:
    monkeypatch.setenv("C_PASSWORD", "wrong-" + PASSWORD)
    adapter = make_adapter(contract, app)

    with pytest.raises(RetriableError) as caught:
        adapter.upsert(product())

    assert not isinstance(caught.value, SkippableError)
    assert PASSWORD not in caught.value.message
    assert stored(contract, admin) == {}


def test_results_are_per_record(contract: Contract, adapter: Adapter, admin: TestClient) -> None:
    admin.post("/_admin/faults", json={"reject_external_ids": ["BAD-1"]})

    outcomes: dict[str, str] = {}
    for sku in ("OK-1", "BAD-1", "OK-2"):
        try:
            outcomes[sku] = adapter.upsert(product(sku)).action
        except TargetRejected as exc:
            outcomes[sku] = exc.message

    assert outcomes["OK-1"] == outcomes["OK-2"] == "created"
    assert "item BAD-1" in outcomes["BAD-1"]
    assert "HTTP 400" in outcomes["BAD-1"]
    assert "rejected: this product is blocked in the target (BAD-1)" in outcomes["BAD-1"]
    assert sorted(stored(contract, admin)) == ["OK-1", "OK-2"]


def test_delete_inactivates_and_an_unknown_one_creates_nothing(
    contract: Contract, adapter: Adapter, admin: TestClient
) -> None:
    adapter.upsert(product("SKU-1"))

    gone = adapter.upsert(product("SKU-1", op="DELETE"))
    never = adapter.upsert(product("NEVER-SEEN", op="DELETE"))

    assert (gone.action, never.action) == ("inactivated", "absent")
    held = stored(contract, admin)
    assert list(held) == ["SKU-1"]
    assert not contract.is_active(held["SKU-1"])


def test_the_golden_page_lands_as_the_fixture_says(
    contract: Contract, adapter: Adapter, admin: TestClient
) -> None:
    products = json.loads((FIXTURES / "expected-canonical.json").read_text())["products"]
    expected = json.loads((FIXTURES / contract.golden_file).read_text())[contract.golden_key]

    for canonical in products:
        adapter.upsert({**canonical, "sync_id": "s", "trace_id": "t"})

    held = stored(contract, admin)
    assert sorted(held) == sorted(e["external_id"] for e in expected)
    for want in expected:
        got = held[want["external_id"]]
        assert {k: got.get(k) for k in want} == want


def test_the_wms_auth_scheme_is_the_tenants_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C_USER", USERNAME)
    monkeypatch.setenv("C_PASSWORD", PASSWORD)
    contract = next(c for c in CONTRACTS if c.type == "wms")
    app = wms.create_app({USERNAME: PASSWORD}, auth_scheme="JWT")

    with pytest.raises(RetriableError, match="HTTP 401 after logging in again"):
        make_adapter(contract, app).upsert(product())  # Bearer, the default, is refused
    assert make_adapter(contract, app, auth_scheme="JWT").upsert(product()).action == "created"
