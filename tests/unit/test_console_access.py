"""The console's access control, in process: anonymous requests refused on every page
and action, viewers can look but not act, every POST needs the session's CSRF token,
cookies are HttpOnly and SameSite, logins are throttled. (The pages' data is a fake
here; the browser test runs the console on the real pipeline.)"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from services.common.settings import KafkaSettings
from services.console.activity import Activity
from services.console.app import create_app
from services.console.auth import Throttle
from services.console.sampler import Sampler
from services.console.settings import ConsoleSettings
from services.console.users import write_user

PASSWORDS = {"olga": "operator-password-1", "vic": "viewer-password-22"}
METRICS = """\
# TYPE siesa_sync_breaker_state gauge
siesa_sync_breaker_state{tenant="acme",target="kong"} 2.0
"""


class FakeData:
    """What the pages read, without a broker."""

    def __init__(self) -> None:
        self.kafka = KafkaSettings(bootstrap_servers="127.0.0.1:1")
        self.sampler = Sampler(["fake"], fetch=lambda _url: METRICS)
        self.sampler.sample()
        self.changes = 0
        self.settings = ConsoleSettings(users_file=Path("users.yaml"))

    def rows(self) -> list[dict[str, Any]]:
        at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        return [
            {
                "tenant": "acme",
                "target": "kong",
                "status": "paused",
                "paused": True,
                "paused_since": at,
                "paused_by": "olga",
                "extracted": 10,
                "transformed": 10,
                "loaded": 9,
                "failed": 1,
                "dead_lettered": 1,
                "dead_lettered_total": 1,
                "lag_by_stage": {"transform": 0, "load": 0},
                "freshness": None,
                "breaker": self.sampler.breaker("acme"),
                "last_extract_at": at,
                "last_load_at": at,
                "last_error": None,
            }
        ]

    def row(self, tenant: str) -> dict[str, Any] | None:
        return next((r for r in self.rows() if r["tenant"] == tenant), None)

    def audit(self, tenant: str | None = None, limit: int = 50) -> list[Any]:
        return []

    def tenant_config(self, tenant: str) -> dict[str, Any] | None:
        if tenant != "acme":
            return None
        return {"id": tenant, "target": {"type": "kong", "base_url": "http://127.0.0.1:1"}}

    def mapping_text(self, name: str) -> str | None:
        return None

    def activity(self) -> Activity:
        return Activity(since=datetime(2026, 12, 1, 9, 0, tzinfo=UTC), minutes=61)

    def changed(self) -> None:
        self.changes += 1


def console(tmp_path: Path, **settings: Any) -> tuple[Starlette, FakeData]:
    users = tmp_path / "users.yaml"
    write_user(users, "olga", "operator", PASSWORDS["olga"])
    write_user(users, "vic", "viewer", PASSWORDS["vic"])
    data = FakeData()
    config = ConsoleSettings(users_file=users, metrics_urls="", **settings)
    return create_app(config, sampler=data.sampler, data=data), data  # type: ignore[arg-type]


def csrf(client: TestClient, path: str = "/login") -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def login(client: TestClient, name: str) -> None:
    response = client.post(
        "/login",
        data={"username": name, "password": PASSWORDS[name], "csrf": csrf(client), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def app_paths(app: Starlette) -> list[tuple[str, str]]:
    """(method, a concrete path) for every route but the public login page."""
    sample = {"tenant": "acme", "action": "resync", "partition": "0", "offset": "1"}
    found = []
    for route in app.routes:
        if isinstance(route, Mount) or not isinstance(route, Route) or route.path == "/login":
            continue
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: sample[m.group(1)], route.path)
        for method in sorted(route.methods or []):
            if method != "HEAD":
                found.append((method, path))
    return found


def test_anonymous_requests_to_every_page_and_action_are_refused(tmp_path: Path) -> None:
    app, data = console(tmp_path)
    paths = app_paths(app)
    assert len(paths) >= 11  # every page and action of pages.py, and logout
    with TestClient(app) as client:
        for method, path in paths:
            response = client.request(method, path, follow_redirects=False)
            if method == "GET":
                assert response.status_code == 303, path
                assert response.headers["location"].startswith("/login"), path
            else:
                assert response.status_code == 403, (method, path)
            assert "acme" not in response.text, path
    assert data.changes == 0


def test_a_viewer_sees_the_pages_but_gets_403_on_every_action(tmp_path: Path) -> None:
    app, data = console(tmp_path)
    with TestClient(app) as client:
        login(client, "vic")
        page = client.get("/")
        assert page.status_code == 200
        assert "acme" in page.text
        assert "paused" in page.text
        token = csrf(client, "/")
        for method, path in app_paths(app):
            if method == "POST" and path != "/logout":
                response = client.post(path, data={"csrf": token, "stage": "load", "from": "1h"})
                assert response.status_code == 403, path
                assert "operator role" in response.text
    assert data.changes == 0


def test_every_post_without_the_csrf_token_is_refused(tmp_path: Path) -> None:
    app, data = console(tmp_path)
    with TestClient(app) as client:
        anonymous = client.post("/login", data={"username": "olga", "password": PASSWORDS["olga"]})
        assert anonymous.status_code == 403
        login(client, "olga")
        for method, path in app_paths(app):
            if method == "POST":
                response = client.post(path, data={"csrf": "forged"}, follow_redirects=False)
                assert response.status_code == 403, path
                assert "CSRF" in response.text
        assert client.get("/").status_code == 200  # still logged in: logout was refused
    assert data.changes == 0


def test_session_cookie_is_httponly_and_samesite_strict(tmp_path: Path) -> None:
    app, _data = console(tmp_path)
    with TestClient(app) as client:
        cookie = client.get("/login").headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP on loopback unless configured


def test_logins_are_throttled_after_repeated_failures(tmp_path: Path) -> None:
    app, _data = console(tmp_path, login_attempts=3)
    with TestClient(app) as client:
        for _ in range(3):
            wrong = client.post(
                "/login", data={"username": "olga", "password": "guess", "csrf": csrf(client)}
            )
            assert wrong.status_code == 401
        right = client.post(
            "/login",
            data={"username": "olga", "password": PASSWORDS["olga"], "csrf": csrf(client)},
        )
        assert right.status_code == 429
        assert client.get("/", follow_redirects=False).status_code == 303


def test_throttle_window_passes() -> None:
    now = [0.0]
    throttle = Throttle(limit=2, window_s=300, clock=lambda: now[0])
    throttle.failed("user:a")
    throttle.failed("user:a")
    assert throttle.blocked("user:a")
    assert not throttle.blocked("user:b")
    now[0] = 301.0
    assert not throttle.blocked("user:a")


def test_anonymous_viewing_only_when_configured_and_never_acting(tmp_path: Path) -> None:
    app, data = console(tmp_path, anonymous_role="viewer")
    with TestClient(app) as client:
        assert client.get("/").status_code == 200
        token = csrf(client, "/login")
        response = client.post("/tenants/acme/actions/pause", data={"csrf": token})
        assert response.status_code == 403
    assert data.changes == 0


def test_a_user_removed_from_the_file_is_out_at_the_next_request(tmp_path: Path) -> None:
    app, _data = console(tmp_path)
    with TestClient(app) as client:
        login(client, "vic")
        assert client.get("/").status_code == 200
        users = tmp_path / "users.yaml"
        users.unlink()
        write_user(users, "olga", "operator", PASSWORDS["olga"])  # the file without vic
        assert client.get("/", follow_redirects=False).status_code == 303


def test_a_bad_users_file_names_the_user_and_field(tmp_path: Path) -> None:
    from services.common.errors import ConfigError
    from services.console.users import parse_users

    users = tmp_path / "users.yaml"
    users.write_text("users:\n  - {name: eve, role: admin, password_hash: plain}\n")
    with pytest.raises(ConfigError) as error:
        parse_users(users)
    assert "user eve: role" in str(error.value)
    assert "user eve: password_hash" in str(error.value)


def test_an_action_on_a_tenant_that_is_not_configured_is_refused(tmp_path: Path) -> None:
    app, data = console(tmp_path)
    with TestClient(app) as client:
        login(client, "olga")
        response = client.post("/tenants/nobody/actions/pause", data={"csrf": csrf(client, "/")})
    assert response.status_code == 404
    assert "no tenant &#39;nobody&#39;" in response.text  # escaped in the page
    assert data.changes == 0
