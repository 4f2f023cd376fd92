"""Injected faults, as the Kong simulator serves them through `POST /_admin/faults`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from devtools.procs import wait_until
from simulators.kong import create_app

USERS = {"integrator": "s3cret-pass"}
SKUS = "/inventory/skus/"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(USERS)) as test_client:
        yield test_client


def token(client: TestClient) -> dict[str, str]:
    answer = client.post(
        "/auth/token/login/", json={"username": "integrator", "password": "s3cret-pass"}
    )
    return {"Authorization": f"Token {answer.json()['auth_token']}"}


def statuses(client: TestClient, n: int, headers: dict[str, str]) -> list[int]:
    return [client.get(SKUS, headers=headers).status_code for _ in range(n)]


def test_no_faults_by_default(client: TestClient) -> None:
    assert statuses(client, 20, token(client)) == [200] * 20


def test_error_rules_answer_their_share_with_retry_after(client: TestClient) -> None:
    auth = token(client)
    faults = {"errors": [{"rate": 0.2, "status": 429, "retry_after_s": 1}], "error_rate": 0.05}
    assert client.post("/_admin/faults", json=faults | {"seed": 7}).status_code == 200
    answers = [client.get(SKUS, headers=auth) for _ in range(1000)]
    by_status = {s: sum(a.status_code == s for a in answers) for s in (200, 429, 503)}
    assert 150 <= by_status[429] <= 250
    assert 20 <= by_status[503] <= 80
    assert by_status[200] == 1000 - by_status[429] - by_status[503]
    assert all(a.headers["Retry-After"] == "1" for a in answers if a.status_code == 429)
    stats = client.get("/_admin/stats").json()
    assert stats["served_429"] == by_status[429]


def test_rate_limit_answers_429_beyond_the_limit(client: TestClient) -> None:
    auth = token(client)
    client.post("/_admin/faults", json={"rate_limit_rps": 5})
    answers = [client.get(SKUS, headers=auth) for _ in range(20)]
    limited = [a for a in answers if a.status_code == 429]
    assert 10 <= len(limited) <= 15  # a burst of 5, plus what refills meanwhile
    assert all(int(a.headers["Retry-After"]) >= 1 for a in limited)


def test_outage_answers_error_status_then_ends(client: TestClient) -> None:
    auth = token(client)
    client.post("/_admin/faults", json={"outage_s": 30, "error_status": 503})
    answer = client.get(SKUS, headers=auth)
    assert answer.status_code == 503
    assert 1 <= int(answer.headers["Retry-After"]) <= 30
    client.post("/_admin/faults", json={})
    assert client.get(SKUS, headers=auth).status_code == 200


def test_admin_routes_are_never_faulted(client: TestClient) -> None:
    client.post("/_admin/faults", json={"outage_s": 30})
    assert client.get("/_admin/stats").status_code == 200
    assert client.get("/_admin/faults").json()["settings"]["outage_s"] == 30


def test_expired_tokens_are_refused(client: TestClient) -> None:
    client.post("/_admin/faults", json={"token_ttl_s": 1})
    auth = token(client)
    assert client.get(SKUS, headers=auth).status_code == 200
    wait_until(lambda: client.get(SKUS, headers=auth).status_code == 401, timeout=5)
    client.post("/_admin/faults", json={})
    assert client.get(SKUS, headers=auth).status_code == 200


def test_bad_fault_settings_are_refused_by_name(client: TestClient) -> None:
    answer = client.post("/_admin/faults", json={"error_rate": 2, "nope": 1})
    assert answer.status_code == 400
    assert "error_rate" in answer.json()["detail"]
    assert "nope" in answer.json()["detail"]


def test_reset_clears_faults(client: TestClient) -> None:
    client.post("/_admin/faults", json={"outage_s": 30})
    client.post("/_admin/reset")
    assert client.get("/_admin/faults").json()["settings"]["outage_s"] == 0
