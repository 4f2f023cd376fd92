"""The Kong simulator: token login, the SKU API and the admin API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from simulators.kong import create_app

USERS = {"integrator": "s3cret-pass"}
SKUS = "/inventory/skus/"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(USERS)) as test_client:
        yield test_client


def login(client: TestClient) -> str:
    response = client.post(
        "/auth/token/login/", json={"username": "integrator", "password": "s3cret-pass"}
    )
    assert response.status_code == 201
    token: str = response.json()["auth_token"]
    return token


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    return {"Authorization": f"Token {login(client)}"}


def sku(external_id: str = "CAM-OXF-001", **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "name": "CAMISA", "type_id": 1, "customer_id": 100} | fields


def create(client: TestClient, auth: dict[str, str], **fields: Any) -> dict[str, Any]:
    response = client.post(SKUS, json=sku(**fields), headers=auth)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_login_issues_a_40_hex_token(client: TestClient) -> None:
    assert re.fullmatch(r"[0-9a-f]{40}", login(client))
    assert login(client) != login(client)


@pytest.mark.parametrize(
    "body",
    [
        {"username": "integrator", "password": "wrong"},
        {"username": "nobody", "password": "s3cret-pass"},
        {"username": "integrator", "password": 12},
    ],
)
def test_bad_login_is_400(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/auth/token/login/", json=body)
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Unable to log in with provided credentials."]}


def test_login_without_fields_lists_them(client: TestClient) -> None:
    response = client.post("/auth/token/login/", json={})
    assert response.status_code == 400
    assert set(response.json()) == {"username", "password"}


@pytest.mark.parametrize(
    "scheme", ["Bearer {token}", "Token not-a-token", "{token}", "Token", None]
)
def test_only_token_scheme_with_an_issued_token_passes(
    client: TestClient, scheme: str | None
) -> None:
    token = login(client)
    headers = {} if scheme is None else {"Authorization": scheme.format(token=token)}
    for response in (
        client.get(SKUS, headers=headers),
        client.post(SKUS, json=sku(), headers=headers),
        client.get(f"{SKUS}1/", headers=headers),
    ):
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid token."}
    assert client.get(SKUS, headers={"Authorization": f"Token {token}"}).status_code == 200


def test_create_stores_defaults_and_ignores_unknown_and_read_only(
    client: TestClient, auth: dict[str, str]
) -> None:
    created = create(
        client, auth, ean="7701234000011", id=999, created="1999", color="red", serial_count=5
    )
    assert created["id"] == 1
    assert created["external_id"] == "CAM-OXF-001"
    assert created["is_active"] is True
    assert created["filter"] == 1
    assert created["serial_count"] == 0
    assert created["gtin_code"] == "07701234000011"
    assert "color" not in created
    assert "_stored_at" not in created
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", created["created"])
    assert created["modified"] == created["created"]
    assert create(client, auth, external_id="B")["id"] == 2


def test_duplicate_external_id_is_400_already_exists(
    client: TestClient, auth: dict[str, str]
) -> None:
    create(client, auth)
    response = client.post(SKUS, json=sku(), headers=auth)
    assert response.status_code == 400
    assert response.json() == {"external_id": ["sku with this external id already exists."]}
    assert "already exists" in response.text


def test_array_body_is_400(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post(SKUS, json=[sku()], headers=auth)
    assert response.status_code == 400
    assert response.json() == {
        "non_field_errors": ["Invalid data. Expected a dictionary, but got list."]
    }


def test_missing_and_invalid_fields_are_all_listed(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = client.post(SKUS, json={"display_name": "x"}, headers=auth)
    assert response.status_code == 400
    assert response.json() == {
        field: ["This field is required."]
        for field in ("external_id", "name", "type_id", "customer_id")
    }
    bad = sku(type_id="abc", customer_id=None, filter=9, is_active="maybe", name="")
    errors = client.post(SKUS, json=bad, headers=auth).json()
    assert errors == {
        "type_id": ["A valid integer is required."],
        "customer_id": ["This field may not be null."],
        "filter": ["Ensure this value is less than or equal to 7."],
        "is_active": ["Must be a valid boolean."],
        "name": ["This field may not be blank."],
    }
    assert client.post(SKUS, content=b"{not json", headers=auth).status_code == 400


def test_lookup_by_external_id_and_customer(client: TestClient, auth: dict[str, str]) -> None:
    create(client, auth, external_id="A")
    create(client, auth, external_id="B", customer_id=200)
    create(client, auth, external_id="C")
    found = client.get(SKUS, params={"external_id": "B"}, headers=auth).json()
    assert found["count"] == 1
    assert [s["external_id"] for s in found["results"]] == ["B"]
    assert found["next"] is None
    assert found["previous"] is None
    missing = client.get(SKUS, params={"external_id": "Z"}, headers=auth).json()
    assert missing == {"count": 0, "next": None, "previous": None, "results": []}
    by_customer = client.get(SKUS, params={"customer_id": 100}, headers=auth).json()
    assert [s["external_id"] for s in by_customer["results"]] == ["A", "C"]


def test_pages_are_ordered_by_id_with_links(client: TestClient, auth: dict[str, str]) -> None:
    for n in range(5):
        create(client, auth, external_id=f"P{n}")
    first = client.get(SKUS, params={"page_size": 2}, headers=auth).json()
    assert first["count"] == 5
    assert [s["id"] for s in first["results"]] == [1, 2]
    assert first["previous"] is None
    assert "page=2" in first["next"]
    last = client.get(first["next"].replace("page=2", "page=3"), headers=auth).json()
    assert [s["id"] for s in last["results"]] == [5]
    assert last["next"] is None
    assert "page=2" in last["previous"]
    second = client.get(last["previous"], headers=auth).json()
    assert "page=" not in second["previous"]
    beyond = client.get(SKUS, params={"page_size": 2, "page": 4}, headers=auth)
    assert beyond.status_code == 404


def test_patch_put_and_not_found(client: TestClient, auth: dict[str, str]) -> None:
    created = create(client, auth)
    create(client, auth, external_id="OTHER")
    url = f"{SKUS}{created['id']}/"
    patched = client.patch(url, json={"name": "NUEVO", "is_active": False}, headers=auth)
    assert patched.status_code == 200
    assert patched.json()["name"] == "NUEVO"
    assert patched.json()["is_active"] is False
    assert patched.json()["type_id"] == 1
    assert client.get(url, headers=auth).json() == patched.json()
    clash = client.patch(url, json={"external_id": "OTHER"}, headers=auth)
    assert clash.status_code == 400
    assert "already exists" in clash.text
    same = client.patch(url, json={"external_id": "CAM-OXF-001"}, headers=auth)
    assert same.status_code == 200
    incomplete = client.put(url, json={"name": "X"}, headers=auth)
    assert incomplete.status_code == 400
    assert set(incomplete.json()) == {"external_id", "type_id", "customer_id"}
    put = client.put(url, json=sku("RENAMED", name="PUESTO"), headers=auth)
    assert put.status_code == 200
    found = client.get(SKUS, params={"external_id": "RENAMED"}, headers=auth).json()
    assert found["results"][0]["id"] == created["id"]
    assert (
        client.get(SKUS, params={"external_id": "CAM-OXF-001"}, headers=auth).json()["count"] == 0
    )
    for method in ("GET", "PATCH", "PUT"):
        response = client.request(method, f"{SKUS}999/", json=sku(), headers=auth)
        assert response.status_code == 404
        assert response.json() == {"detail": "Not found."}


def test_admin_listing_has_stored_at(client: TestClient, auth: dict[str, str]) -> None:
    created = create(client, auth)
    first = client.get("/_admin/skus").json()
    assert len(first) == 1
    assert isinstance(first[0]["_stored_at"], float)
    assert {k: v for k, v in first[0].items() if k != "_stored_at"} == created
    client.patch(f"{SKUS}1/", json={"name": "B"}, headers=auth)
    second = client.get("/_admin/skus").json()
    assert second[0]["_stored_at"] >= first[0]["_stored_at"]
    assert second[0]["name"] == "B"


def test_admin_listing_since_a_time_holds_only_what_was_stored_since(
    client: TestClient, auth: dict[str, str]
) -> None:
    create(client, auth, external_id="A")
    create(client, auth, external_id="B")
    since = client.get("/_admin/skus").json()[1]["_stored_at"]
    client.patch(f"{SKUS}1/", json={"name": "A2"}, headers=auth)
    later = client.get("/_admin/skus", params={"stored_since": since}).json()
    assert sorted(s["external_id"] for s in later) == ["A", "B"]
    edited_at = client.get("/_admin/skus").json()[0]["_stored_at"]
    only = client.get("/_admin/skus", params={"stored_since": edited_at}).json()
    assert [(s["external_id"], s["name"]) for s in only] == [("A", "A2")]
    assert client.get("/_admin/skus", params={"stored_since": "soon"}).status_code == 400


def test_stats_count_by_route_template_and_status(client: TestClient, auth: dict[str, str]) -> None:
    create(client, auth, external_id="A")
    create(client, auth, external_id="B")
    client.post(SKUS, json=sku("A"), headers=auth)
    client.patch(f"{SKUS}1/", json={"name": "x"}, headers=auth)
    client.patch(f"{SKUS}2/", json={"name": "y"}, headers=auth)
    client.get(f"{SKUS}3/", headers=auth)
    client.get(SKUS, headers={"Authorization": "Bearer nope"})
    client.get("/_admin/skus")
    stats = client.get("/_admin/stats").json()
    assert stats["requests"] == [
        {"route": "/auth/token/login/", "method": "POST", "status": 201, "count": 1},
        {"route": SKUS, "method": "GET", "status": 401, "count": 1},
        {"route": SKUS, "method": "POST", "status": 201, "count": 2},
        {"route": SKUS, "method": "POST", "status": 400, "count": 1},
        {"route": "/inventory/skus/{id}/", "method": "GET", "status": 404, "count": 1},
        {"route": "/inventory/skus/{id}/", "method": "PATCH", "status": 200, "count": 2},
    ]
    assert stats["skus"] == 2
    assert stats["tokens"] == 1
    assert stats["in_flight"] == 0
    assert stats["peak_concurrency"] == 1
    assert stats["served_429"] == 0


def test_reset_clears_skus_and_tokens_but_keeps_users(
    client: TestClient, auth: dict[str, str]
) -> None:
    create(client, auth)
    assert client.post("/_admin/reset").status_code == 200
    assert client.get("/_admin/skus").json() == []
    assert client.get("/_admin/stats").json()["requests"] == []
    assert client.get(SKUS, headers=auth).status_code == 401
    fresh = {"Authorization": f"Token {login(client)}"}
    assert create(client, fresh)["id"] == 1
