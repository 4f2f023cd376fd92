"""The WMS simulator follows the API as external-apis.md describes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from simulators.wms import create_app

USERS = {"wms-user": "wms-pass-123"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(USERS)) as test_client:
        yield test_client


def login(client: TestClient) -> dict[str, str]:
    answer = client.post("/auth", json={"username": "wms-user", "password": "wms-pass-123"})
    assert answer.status_code == 200
    assert answer.json()["token"].count(".") == 2  # a JWT
    return {"Authorization": f"Bearer {answer.json()['token']}"}


def test_login_refuses_wrong_credentials_and_calls_need_the_bearer_token(
    client: TestClient,
) -> None:
    wrong = client.post("/auth", json={"username": "wms-user", "password": "nope"})
    assert wrong.status_code == 401
    assert client.get("/products").status_code == 401
    token = login(client)["Authorization"].split(" ", 1)[1]
    assert client.get("/products", headers={"Authorization": f"Token {token}"}).status_code == 401
    assert client.get("/products", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_create_look_up_and_patch(client: TestClient) -> None:
    auth = login(client)
    body = {"name": "A", "external_id": "X-1", "properties": {"weigth": 1.5}}
    created = client.post("/products", json=body, headers=auth)
    assert created.status_code == 200
    product = created.json()
    assert len(product["id"]) == 32
    assert product["status"] == "ACTIVE"
    assert product["created_by_username"] == "wms-user"

    found = client.get("/products", params={"external_id__eq": "X-1"}, headers=auth).json()
    assert [r["id"] for r in found["results"]] == [product["id"]]
    assert set(found) == {"results", "count", "warnings", "limit", "last_evaluated_key_id"}

    no_id = client.patch(f"/products/{product['id']}", json={"name": "B"}, headers=auth)
    assert no_id.status_code == 422
    patched = client.patch(
        f"/products/{product['id']}",
        json={"external_id": "X-1", "status": "INACTIVE"},
        headers=auth,
    )
    assert patched.json()["status"] == "INACTIVE"
    assert patched.json()["name"] == "A"


def test_a_duplicate_post_answers_already_exists(client: TestClient) -> None:
    auth = login(client)
    client.post("/products", json={"name": "A", "external_id": "X-1"}, headers=auth)
    again = client.post("/products", json={"name": "A", "external_id": "X-1"}, headers=auth)
    assert again.status_code == 400
    assert "already exists" in again.json()["message"]


def test_listing_pages_with_a_cursor(client: TestClient) -> None:
    auth = login(client)
    for i in range(5):
        client.post("/products", json={"name": f"N{i}", "external_id": f"X-{i}"}, headers=auth)
    first = client.get("/products", params={"limit": 3}, headers=auth).json()
    assert first["count"] == 3
    rest = client.get(
        "/products",
        params={"limit": 3, "last_evaluated_key_id": first["last_evaluated_key_id"]},
        headers=auth,
    ).json()
    assert [r["external_id"] for r in first["results"] + rest["results"]] == [
        f"X-{i}" for i in range(5)
    ]
    assert rest["last_evaluated_key_id"] is None


def test_admin_listing_since_a_time_holds_only_what_was_stored_since(
    client: TestClient,
) -> None:
    auth = login(client)
    for i in range(3):
        client.post("/products", json={"name": f"N{i}", "external_id": f"X-{i}"}, headers=auth)
    stored = client.get("/_admin/products").json()
    assert len(stored) == 3
    client.patch(
        f"/products/{stored[0]['id']}", json={"external_id": "X-0", "name": "M"}, headers=auth
    )
    edited_at = max(p["_stored_at"] for p in client.get("/_admin/products").json())
    only = client.get("/_admin/products", params={"stored_since": edited_at}).json()
    assert [(p["external_id"], p["name"]) for p in only] == [("X-0", "M")]
    everything = client.get("/_admin/products", params={"stored_since": 0}).json()
    assert len(everything) == 3
    assert client.get("/_admin/products", params={"stored_since": "x"}).status_code == 400


def test_faults_token_ttl_and_rejections(client: TestClient) -> None:
    auth = login(client)
    client.post("/_admin/faults", json={"reject_external_ids": ["BAD"], "reject_status": 422})
    refused = client.post("/products", json={"name": "A", "external_id": "BAD"}, headers=auth)
    assert refused.status_code == 422
    assert "BAD" in refused.json()["message"]
    client.post("/_admin/faults", json={"token_ttl_s": 0.001})
    assert client.get("/products", headers=auth).status_code == 401
    stats = client.get("/_admin/stats").json()
    assert stats["products"] == 0
