"""Authentication strategies, each against the webhook simulator configured to demand it
(in process), through the session the loader builds: any target can use any of them.
And the webhook's signature: a receiver that checks it refuses a body signed otherwise."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from services.common.errors import RetriableError
from services.targets import open_target
from services.targets.auth import OAuth2Auth, authenticator
from services.targets.base import Target
from services.targets.config import parse_target
from services.targets.session import TargetSession
from simulators import webhook

# The session gives every request the target's timeout (an injected client may serve
# tenants with different ones); Starlette's test client warns about it, harmlessly.
pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

USER, PASSWORD = "client-1", "pa55-never-shown"
SIGNING_KEY = "whsec-unit"
BASE_URL = "http://hooks.test"


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_USER", USER)
    monkeypatch.setenv("A_PASSWORD", PASSWORD)
    monkeypatch.setenv("A_SIGNING_KEY", SIGNING_KEY)


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TargetSession.call.retry, "sleep", lambda _s: None)  # type: ignore[attr-defined]


STRATEGIES: dict[str, dict[str, Any]] = {
    "oauth2": {
        "type": "oauth2",
        "token_url": "/oauth/token",
        "client_id": USER,
        "client_secret": {"env": "A_PASSWORD"},
    },
    "oauth2-in-body": {
        "type": "oauth2",
        "token_url": f"{BASE_URL}/oauth/token",
        "client_id": USER,
        "client_secret": {"env": "A_PASSWORD"},
        "client_auth": "body",
    },
    "basic": {"type": "basic", "username": {"env": "A_USER"}, "password": {"env": "A_PASSWORD"}},
    "bearer": {"type": "bearer", "token": {"env": "A_PASSWORD"}},
    "api_key": {"type": "api_key", "key": {"env": "A_PASSWORD"}},
    "none": {"type": "none"},
}


def receiver(kind: str) -> Any:
    demand = kind.split("-")[0]
    return webhook.create_app(SIGNING_KEY, {USER: PASSWORD}, auth=demand)  # type: ignore[arg-type]


def hook(app: Any, auth: dict[str, Any], key_env: str = "A_SIGNING_KEY") -> Target:
    config = parse_target(
        {
            "type": "webhook",
            "base_url": BASE_URL,
            "auth": auth,
            "settings": {"path": "/products", "secret": {"env": key_env}},
        }
    )
    return open_target("acme", config, client=TestClient(app, base_url=BASE_URL))


def product(sku: str = "SKU-1", **overrides: Any) -> dict[str, Any]:
    return {
        "tenant": "acme",
        "sku": sku,
        "name": f"P {sku}",
        "display_name": None,
        "reference": sku,
        "group_code": None,
        "barcode": None,
        "barcode_type": None,
        "unit": "UNIT",
        "is_active": True,
        "weight_kg": None,
        "volume_m3": None,
        "attributes": {},
        "op": "UPSERT",
        "trace_id": "t",
        "sync_id": "s",
        **overrides,
    }


def held(app: Any) -> dict[str, dict[str, Any]]:
    with TestClient(app) as admin:
        return {p["sku"]: p for p in admin.get("/_admin/products").json()}


@pytest.mark.parametrize("kind", list(STRATEGIES))
def test_every_strategy_gets_through_to_a_receiver_demanding_it(kind: str) -> None:
    app = receiver(kind)

    result = hook(app, STRATEGIES[kind]).upsert(product())

    assert result.action == "created"
    assert held(app)["SKU-1"]["name"] == "P SKU-1"


@pytest.mark.parametrize("kind", ["oauth2", "basic", "bearer", "api_key"])
def test_wrong_credentials_are_retriable_and_never_shown(
    kind: str, monkeypatch: pytest.MonkeyPatch, no_sleep: None
) -> None:
    app = receiver(kind)
    monkeypatch.setenv("A_PASSWORD", "wrong-" + PASSWORD)

    with pytest.raises(RetriableError) as caught:
        hook(app, STRATEGIES[kind]).upsert(product())

    assert "401" in caught.value.message
    assert PASSWORD not in caught.value.message
    assert held(app) == {}


def test_a_body_signed_with_another_key_is_refused_as_the_tenants_problem(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = receiver("none")
    monkeypatch.setenv("A_OTHER_KEY", "not-the-receivers-key")

    with pytest.raises(RetriableError, match="HTTP 401"):
        hook(app, STRATEGIES["none"], key_env="A_OTHER_KEY").upsert(product())
    assert held(app) == {}


def test_one_version_is_applied_once_however_often_it_is_sent() -> None:
    app = receiver("none")
    target = hook(app, STRATEGIES["none"])
    target.upsert(product(name="v1", trace_id="t1"))
    target.upsert(product(name="v2", trace_id="t2"))

    replayed = target.upsert(product(name="v1", trace_id="t1"))  # a stale redelivery

    assert replayed.action == "created"  # the receiver's first answer, not applied again
    assert held(app)["SKU-1"]["name"] == "v2"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_oauth2_token_is_fetched_again_before_it_expires() -> None:
    clock = Clock()
    tokens: list[str] = []

    def send(what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        assert (method, url) == ("POST", f"{BASE_URL}/oauth/token")
        assert kwargs["data"] == {"grant_type": "client_credentials", "scope": "write"}
        tokens.append(f"tok-{len(tokens)}")
        return httpx.Response(200, json={"access_token": tokens[-1], "expires_in": 100})

    config = STRATEGIES["oauth2"] | {"scope": "write"}
    auth = authenticator(
        OAuth2Auth.model_validate(config),
        tenant="acme",
        label="webhook",
        base_url=BASE_URL,
        login=None,
        clock=clock,
    )

    first = auth.headers(send)
    clock.now = 80.0  # still valid
    assert auth.headers(send) == first
    clock.now = 91.0  # within the last 10% of its lifetime: fetched again
    assert auth.headers(send) == {"Authorization": "Bearer tok-1"}
    assert first == {"Authorization": "Bearer tok-0"}


@pytest.fixture
def oauth_app() -> Any:
    return receiver("oauth2")


def test_a_refused_oauth2_token_is_fetched_again_once(oauth_app: Any) -> None:
    target = hook(oauth_app, STRATEGIES["oauth2"])
    target.upsert(product("A"))
    oauth_app.state.simulator._tokens.clear()  # the receiver forgot every token

    target.upsert(product("B"))

    with TestClient(oauth_app) as admin:
        served = admin.get("/_admin/stats").json()["requests"]
    fetched = sum(r["count"] for r in served if r["route"] == "/oauth/token")
    refused = sum(r["count"] for r in served if r["status"] == 401)
    assert (fetched, refused) == (2, 1)
    assert sorted(held(oauth_app)) == ["A", "B"]
