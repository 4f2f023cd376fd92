"""Stand-ins and builders shared by the unit tests: a consumed Kafka message, a
transactional producer, and a tenant's entry of config/tenants.yaml."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from confluent_kafka import KafkaError
from starlette.testclient import TestClient

Header = tuple[str, str | bytes | None]
# What a FakeTransactionalProducer keeps of one record: (topic, key, value, headers).
Produced = tuple[str, bytes | None, bytes | None, dict[str, Any]]


@dataclass(kw_only=True)
class FakeMessage:
    """The parts of confluent_kafka.Message the services read. Every part has a default,
    so a test names only those it looks at: `FakeMessage(_value=b"...", _offset=2)`."""

    _topic: str = "siesa.items.raw.v1"
    _partition: int = 0
    _offset: int = 0
    _key: bytes | None = None
    _value: bytes | None = None
    _headers: Sequence[Header] | None = field(default_factory=list)
    _error: KafkaError | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Sequence[Header] | None:
        return self._headers

    def error(self) -> KafkaError | None:
        return self._error


@dataclass
class FakeTransactionalProducer:
    """A transactional producer that keeps what each committed transaction held (an
    aborted one leaves nothing)."""

    transactions: list[list[Produced]] = field(default_factory=list)
    _open: list[Produced] | None = None

    def begin_transaction(self) -> None:
        assert self._open is None
        self._open = []

    def produce(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: Any = None, **_: Any
    ) -> None:
        assert self._open is not None, "produced outside a transaction"
        self._open.append((topic, key, value, dict(headers or [])))

    def poll(self, _timeout: float) -> int:
        return 0

    def commit_transaction(self, _timeout: float) -> None:
        assert self._open is not None
        self.transactions.append(self._open)
        self._open = None

    def abort_transaction(self, _timeout: float) -> None:
        assert self._open is not None
        self._open = None  # nothing of it was stored


def set_secrets(
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    conni_key: str,
    conni_token: str,
    kong_user: str,
    kong_password: str,
    /,
) -> None:
    """Sets the four environment variables `tenant_config(env=env)` refers to."""
    monkeypatch.setenv(f"{env}_CONNI_KEY", conni_key)
    monkeypatch.setenv(f"{env}_CONNI_TOKEN", conni_token)
    monkeypatch.setenv(f"{env}_KONG_USER", kong_user)
    monkeypatch.setenv(f"{env}_KONG_PASSWORD", kong_password)


def tenant_config(tenant_id: str = "acme", *, env: str = "T", **overrides: Any) -> dict[str, Any]:
    """One entry of config/tenants.yaml: Siesa company 8585 in, Kong (type 1, customer 100)
    out, every secret a reference to an `{env}_...` variable (see `set_secrets`). An
    override names a nested key with `__`: `tenant_config(source__page_size=3)`."""
    config: dict[str, Any] = {
        "id": tenant_id,
        "source": {
            "type": "siesa",
            "base_url": "http://siesa.test/api/siesa/v3",
            "company": 8585,
            "conni_key": {"env": f"{env}_CONNI_KEY"},
            "conni_token": {"env": f"{env}_CONNI_TOKEN"},
        },
        "target": {
            "type": "kong",
            "base_url": "http://kong.test",
            "username": {"env": f"{env}_KONG_USER"},
            "password": {"env": f"{env}_KONG_PASSWORD"},
            "settings": {"type_id": 1, "customer_id": 100},
        },
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def on_app(app: Any) -> httpx.Client:
    """An HTTP client whose requests (to any URL) go to `app` in process: inject it into
    a client under test (`http=on_app(app)`)."""
    return TestClient(app)


def on_handler(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    """An HTTP client whose requests `handler` answers: inject it (`http=...`)."""
    return httpx.Client(transport=httpx.MockTransport(handler))


def on_apps(apps: list[Any]) -> httpx.Client:
    """An HTTP client whose requests go to the last app of `apps`, in process: append
    another app to switch (e.g. to a simulator that refuses the credentials)."""
    clients: dict[int, TestClient] = {}

    def forward(request: httpx.Request) -> httpx.Response:
        app = apps[-1]
        client = clients.setdefault(id(app), TestClient(app))
        answer = client.request(
            request.method, str(request.url), headers=request.headers, content=request.content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return on_handler(forward)
