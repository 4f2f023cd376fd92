"""The sources' shared HTTP clients: one per source host and settings, and nothing of one
tenant (credentials, cookies) ever sent with another tenant's requests. A real HTTP
server on 127.0.0.1 answers as Siesa does and records what each request carried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.sources import open_source
from services.sources.clients import HttpClients, HttpPool
from services.sources.siesa.settings import SiesaSettings


class Recorder(BaseHTTPRequestHandler):
    """Answers one short page of Siesa rows and sets a session cookie each time."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps(
            {"codigo": 0, "mensaje": "ok", "detalle": {"Table": [{"f120_referencia": "A1"}]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", f"session={self.headers.get('ConniKey')}; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def siesa() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def settings(
    monkeypatch: pytest.MonkeyPatch, tenant: str, base_url: str, **more: Any
) -> SiesaSettings:
    monkeypatch.setenv(f"{tenant.upper()}_KEY", f"key-of-{tenant}")
    monkeypatch.setenv(f"{tenant.upper()}_TOKEN", f"token-of-{tenant}")
    return SiesaSettings.model_validate(
        {
            "base_url": base_url,
            "company": 1,
            "conni_key": {"env": f"{tenant.upper()}_KEY"},
            "conni_token": {"env": f"{tenant.upper()}_TOKEN"},
            **more,
        }
    )


def test_tenants_of_one_host_and_settings_share_one_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clients = HttpClients()
    host = "http://siesa.test:8081/api"
    a = settings(monkeypatch, "a", host)
    b = settings(monkeypatch, "b", "http://siesa.test:8081/other/")
    slow = settings(monkeypatch, "c", host, timeout_s=90)
    other = settings(monkeypatch, "d", "https://siesa.test/api")

    assert a.http_pool() == b.http_pool() == HttpPool("http://siesa.test:8081", 30.0)
    assert clients.client(a.http_pool()) is clients.client(b.http_pool())
    assert clients.client(slow.http_pool()) is not clients.client(a.http_pool())
    assert other.http_pool().origin == "https://siesa.test:443"
    sources = [open_source(t, s, clients=clients) for t, s in [("a", a), ("b", b), ("d", other)]]
    assert len(clients) == 3  # a and b's host, c's timeout, d's host
    for source in sources:
        source.close()  # a source never closes a shared client
    assert not clients.client(a.http_pool()).is_closed
    clients.close()
    assert len(clients) == 0


def test_a_shared_client_never_sends_one_tenants_credentials_or_cookies_for_another(
    monkeypatch: pytest.MonkeyPatch, siesa: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = siesa
    clients = HttpClients()
    try:
        first = open_source("a", settings(monkeypatch, "a", url), clients=clients)
        second = open_source("b", settings(monkeypatch, "b", url), clients=clients)
        assert len(clients) == 1
        for source in (first, second, first, second):
            assert [len(page) for page in source.pages()] == [1]
    finally:
        clients.close()

    assert [h["connikey"] for h in seen] == ["key-of-a", "key-of-b", "key-of-a", "key-of-b"]
    assert [h["connitoken"] for h in seen] == ["token-of-a", "token-of-b"] * 2
    assert all("cookie" not in h for h in seen)  # the session cookies set were kept by none
