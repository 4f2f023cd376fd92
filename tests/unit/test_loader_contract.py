"""The contract every target plugin passes, run against each target's real simulator app
(in process), through the session the loader builds (`open_target`): idempotent upsert,
a replayed batch creates no duplicates, 401 → one re-login, per-record results (a
permanent refusal fails that record only), DELETE inactivates, the golden page lands as
the fixture says, one call per new product and per update by a kept id, a target that
lost its data never lets one product overwrite another, and a bad setting is named when
the tenants file loads.

Adding a target: one `Contract` entry below."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from services.common.errors import ConfigError, RetriableError, SkippableError
from services.common.settings import ROOT
from services.common.tenants import load_tenants
from services.targets import TARGETS, open_target
from services.targets.base import Target, TargetRejected
from services.targets.config import parse_target
from simulators import kong, webhook, wms

# The session gives every request the target's timeout (an injected client may serve
# tenants with different ones); Starlette's test client warns about it, harmlessly.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

FIXTURES = ROOT / "tests" / "fixtures"
USERNAME, PASSWORD = "integrator", "s3cret-pass-xyz"
SIGNING_KEY = "whsec-contract-key"  # the webhook's HMAC key (a test value)
LOGIN = {"type": "login", "username": {"env": "C_USER"}, "password": {"env": "C_PASSWORD"}}


@dataclass(frozen=True)
class Contract:
    type: str
    create_app: Callable[[dict[str, str]], Any]
    config: dict[str, Any]  # `target:` but type and base_url
    login_route: str
    stored_path: str
    golden_file: str
    golden_key: str
    is_active: Callable[[dict[str, Any]], bool]
    has_ids: bool  # whether the target gives ids the loader keeps
    bad_settings: dict[str, Any]  # a `settings:` the tenants file refuses...
    bad_field: str  # ...naming this field
    # What a replay of the same record reports: an update, or (webhook) the receiver's
    # first answer again, as an idempotency key asks.
    replayed: str = "updated"


CONTRACTS = [
    Contract(
        "kong",
        lambda users: kong.create_app(users),
        {"auth": LOGIN, "settings": {"type_id": 1, "customer_id": 100}},
        "/auth/token/login/",
        "/_admin/skus",
        "expected-kong.json",
        "skus",
        lambda held: held["is_active"] is True,
        has_ids=True,
        bad_settings={"type_id": "one", "customer_id": 100},
        bad_field="target.settings.type_id",
    ),
    Contract(
        "wms",
        lambda users: wms.create_app(users),
        {"auth": LOGIN, "settings": {}},
        "/auth",
        "/_admin/products",
        "expected-wms.json",
        "products",
        lambda held: held["status"] == "ACTIVE",
        has_ids=True,
        bad_settings={"group_type": "aisle"},
        bad_field="target.settings.group_type",
    ),
    Contract(
        "webhook",
        lambda users: webhook.create_app(SIGNING_KEY, users, auth="oauth2"),
        {
            "auth": {
                "type": "oauth2",
                "token_url": "/oauth/token",
                "client_id": USERNAME,
                "client_secret": {"env": "C_PASSWORD"},
            },
            "settings": {"path": "/products", "secret": {"env": "C_SIGNING_KEY"}},
        },
        "/oauth/token",
        "/_admin/products",
        "expected-webhook.json",
        "products",
        lambda held: held["is_active"] is True,
        has_ids=False,
        bad_settings={"path": "/products"},
        bad_field="target.settings.secret",
        replayed="created",
    ),
]


def test_every_registered_target_has_a_contract() -> None:
    assert sorted(TARGETS) == sorted(c.type for c in CONTRACTS)


@pytest.fixture(params=CONTRACTS, ids=[c.type for c in CONTRACTS])
def contract(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Contract:
    monkeypatch.setenv("C_USER", USERNAME)
    monkeypatch.setenv("C_PASSWORD", PASSWORD)
    monkeypatch.setenv("C_SIGNING_KEY", SIGNING_KEY)
    given: Contract = request.param
    return given


@pytest.fixture
def app(contract: Contract) -> Any:
    return contract.create_app({USERNAME: PASSWORD})


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def make_adapter(contract: Contract, app: Any, **target: Any) -> Target:
    config = parse_target(
        {"type": contract.type, "base_url": "http://target.test", **contract.config, **target}
    )
    return open_target("acme", config, client=TestClient(app, base_url="http://target.test"))


@pytest.fixture
def adapter(contract: Contract, app: Any) -> Iterator[Target]:
    made = make_adapter(contract, app)
    yield made
    made.close()


def stored(contract: Contract, admin: TestClient) -> dict[str, dict[str, Any]]:
    items: list[dict[str, Any]] = admin.get(contract.stored_path).json()
    by_id = {item["external_id"]: item for item in items}
    assert len(by_id) == len(items), "the target holds duplicate external ids"
    return by_id


def requests(contract: Contract, admin: TestClient) -> dict[str, int]:
    """Requests served so far: logins apart from the rest."""
    served = admin.get("/_admin/stats").json()["requests"]
    login = sum(r["count"] for r in served if r["route"] == contract.login_route)
    return {"logins": login, "calls": sum(r["count"] for r in served) - login}


def logins(contract: Contract, admin: TestClient) -> int:
    return requests(contract, admin)["logins"]


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
        "trace_id": f"t-{sku}-{overrides.get('name', '')}",
        "source_fingerprint": "f",
        **overrides,
    }


def test_an_upsert_is_idempotent(contract: Contract, adapter: Target, admin: TestClient) -> None:
    first = adapter.upsert(product())
    again = adapter.upsert(product(name="RENAMED"), first.target_id)

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
    # A second loader (no ids kept) replays the same batch after a rebalance.
    second = make_adapter(contract, app)
    with ThreadPoolExecutor(4) as pool:
        replayed = list(pool.map(second.upsert, batch))

    assert {r.action for r in replayed} == {contract.replayed}
    assert len(stored(contract, admin)) == 20


def test_a_401_leads_to_one_re_login(
    contract: Contract, app: Any, adapter: Target, admin: TestClient
) -> None:
    ids = [adapter.upsert(product(f"SKU-{i}")).target_id for i in range(4)]
    assert logins(contract, admin) == 1
    app.state.simulator._tokens.clear()  # every token the adapter holds is now refused

    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(adapter.upsert, [product(f"SKU-{i}", name="X") for i in range(4)], ids)
        )

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


def test_results_are_per_record(contract: Contract, adapter: Target, admin: TestClient) -> None:
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
    contract: Contract, adapter: Target, admin: TestClient
) -> None:
    adapter.upsert(product("SKU-1"))

    gone = adapter.upsert(product("SKU-1", op="DELETE"))
    never = adapter.upsert(product("NEVER-SEEN", op="DELETE"))

    assert (gone.action, never.action) == ("inactivated", "absent")
    held = stored(contract, admin)
    assert list(held) == ["SKU-1"]
    assert not contract.is_active(held["SKU-1"])


def test_the_golden_page_lands_as_the_fixture_says(
    contract: Contract, adapter: Target, admin: TestClient
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


def test_a_new_product_and_an_update_by_its_kept_id_cost_one_call_each(
    contract: Contract, adapter: Target, admin: TestClient
) -> None:
    adapter.upsert(product("WARM"))  # logged in
    before = requests(contract, admin)["calls"]

    created = [adapter.upsert(product(f"N-{i}")) for i in range(10)]
    after_create = requests(contract, admin)["calls"]
    updated = [adapter.upsert(product(r.sku, name="NEW"), r.target_id) for r in created]

    assert {r.action for r in created} == {"created"}
    assert {r.action for r in updated} == {"updated"}
    assert after_create - before == 10
    assert requests(contract, admin)["calls"] - after_create == 10
    assert all((r.target_id is not None) == contract.has_ids for r in created)


def test_a_target_that_lost_its_data_never_lets_one_product_overwrite_another(
    contract: Contract, app: Any, adapter: Target, admin: TestClient
) -> None:
    kept = {r.sku: r.target_id for r in (adapter.upsert(product(f"OLD-{i}")) for i in range(30))}
    admin.post("/_admin/reset")  # restored to empty: ids are handed out from the start again
    # Others' new products take the ids the old ones had, while the kept ids go out.
    other = make_adapter(contract, app)
    fresh = [product(f"NEW-{i}", name=f"NEW {i}") for i in range(30)]
    old = [product(sku, name=f"{sku} v2") for sku in kept]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(other.upsert, fresh[:10]))  # some before any kept id is used...
        writes = [pool.submit(other.upsert, p) for p in fresh[10:]]  # ...some meanwhile
        writes += [pool.submit(adapter.upsert, p, kept[p["sku"]]) for p in old]
        results = [w.result() for w in writes]

    held = stored(contract, admin)
    assert sorted(held) == sorted(p["sku"] for p in fresh + old)
    assert {k: v["name"] for k, v in held.items()} == {p["sku"]: p["name"] for p in fresh + old}
    assert {r.action for r in results[20:]} == {"created"}


def test_a_bad_setting_is_named_when_the_tenants_file_loads(
    contract: Contract, tmp_path: Path
) -> None:
    target = {"type": contract.type, "base_url": "http://target.test", **contract.config}
    target["settings"] = contract.bad_settings
    tenant = {
        "id": "acme",
        "siesa": {
            "base_url": "http://siesa.test",
            "company": 1,
            "conni_key": {"env": "C_USER"},
            "conni_token": {"env": "C_PASSWORD"},
        },
        "target": target,
    }
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": [tenant]}))

    with pytest.raises(ConfigError) as caught:
        load_tenants(path)

    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: tenant acme: {contract.bad_field}:")
    assert PASSWORD not in problem


def test_the_wms_auth_scheme_is_the_tenants_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("C_USER", USERNAME)
    monkeypatch.setenv("C_PASSWORD", PASSWORD)
    contract = next(c for c in CONTRACTS if c.type == "wms")
    app = wms.create_app({USERNAME: PASSWORD}, auth_scheme="JWT")

    with pytest.raises(RetriableError, match="HTTP 401 after logging in again"):
        make_adapter(contract, app).upsert(product())  # Bearer, the default, is refused
    jwt = make_adapter(contract, app, auth={**LOGIN, "scheme": "JWT"})
    assert jwt.upsert(product()).action == "created"
