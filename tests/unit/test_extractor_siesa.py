"""The Siesa client against the real simulator app (in process) and hand-made answers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.testclient import TestClient

from services.common.errors import RetriableError
from services.common.stopper import Stopper
from services.sources.base import StopRequested
from services.sources.siesa.client import SiesaAuthError, SiesaClient, SiesaError
from services.sources.siesa.settings import SiesaSettings
from simulators.siesa import create_app
from tests import ROOT
from tests.unit.fakes import on_app, on_handler

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"  # noqa: S105 - a test credential
COMPANY = 8585
PAGE = json.loads((ROOT / "tests" / "fixtures" / "siesa-items-page.json").read_text())


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_CONNI_KEY", KEY)
    monkeypatch.setenv("T_CONNI_TOKEN", TOKEN)


def source(page_size: int = 100, **overrides: Any) -> SiesaSettings:
    return SiesaSettings.model_validate(
        {
            "base_url": "http://siesa.test/api/siesa/v3/",
            "company": COMPANY,
            "page_size": page_size,
            "conni_key": {"env": "T_CONNI_KEY"},
            "conni_token": {"env": "T_CONNI_TOKEN"},
            **overrides,
        }
    )


@pytest.fixture
def app() -> Any:
    return create_app(KEY, TOKEN)


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(SiesaClient.page.retry, "sleep", waits.append)  # type: ignore[attr-defined]
    return waits


def seed(admin: TestClient, count: int) -> None:
    response = admin.post(f"/_admin/companies/{COMPANY}/seed", json={"count": count, "seed": 7})
    assert response.status_code == 200


def envelope(rows: list[dict[str, Any]] | None, codigo: int = 0, mensaje: str = "ok") -> Any:
    return {"codigo": codigo, "mensaje": mensaje, "detalle": {"Table": rows}}


@pytest.mark.parametrize(
    ("count", "page_size", "pages"),
    [(250, 100, [100, 100, 50]), (200, 100, [100, 100, 0]), (0, 100, [0]), (7, 3, [3, 3, 1])],
)
def test_scan_reads_pages_until_the_short_or_empty_one(
    app: Any, admin: TestClient, count: int, page_size: int, pages: list[int]
) -> None:
    seed(admin, count)
    client = SiesaClient(source(page_size), tenant="acme", http=on_app(app))

    scanned = list(client.scan())

    assert [len(p) for p in scanned] == pages
    referencias = [r["f120_referencia"].strip() for p in scanned for r in p]
    assert len(set(referencias)) == count
    stored = admin.get(f"/_admin/companies/{COMPANY}/items").json()
    assert referencias == [r["f120_referencia"].strip() for r in stored]
    assert admin.get("/_admin/stats").json()["pages_served"] == len(pages)


def test_rows_come_back_as_siesa_serves_them(app: Any, admin: TestClient) -> None:
    rows = PAGE["detalle"]["Table"]
    admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=rows)
    client = SiesaClient(source(), tenant="acme", http=on_app(app))

    assert client.page(1) == rows  # padding kept: trimming is rows.normalize's job


def test_paginacion_is_one_percent_encoded_parameter() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=envelope([]))

    client = SiesaClient(source(page_size=50), tenant="acme", http=on_handler(handler))
    client.page(3)

    (request,) = seen
    assert request.url.path == "/api/siesa/v3/ejecutarconsultaestandar"
    assert b"paginacion=numPag%3D3%7CtamPag%3D50" in request.url.query
    params = parse_qs(request.url.query.decode())
    assert params == {
        "idCompania": [str(COMPANY)],
        "descripcion": ["API_v2_Items"],
        "paginacion": ["numPag=3|tamPag=50"],
    }
    assert request.headers["ConniKey"] == KEY
    assert request.headers["ConniToken"] == TOKEN


def test_wrong_credentials_raise_auth_error_once_and_never_show_them(app: Any) -> None:
    calls: list[int] = []
    wrong = TestClient(app)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        answer = wrong.get(str(request.url), headers={"ConniKey": "f" * 32, "ConniToken": "x"})
        return httpx.Response(answer.status_code, content=answer.content)

    client = SiesaClient(source(), tenant="acme", http=on_handler(handler))

    with pytest.raises(SiesaAuthError) as caught:
        client.page(1)

    assert "HTTP 401" in caught.value.message
    assert caught.value.tenant == "acme"
    assert KEY not in caught.value.message
    assert TOKEN not in caught.value.message
    assert len(calls) == 1  # not retried


def test_the_simulator_refuses_a_client_with_other_credentials(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("T_CONNI_TOKEN", "another-token")
    client = SiesaClient(source(), tenant="acme", http=on_app(app))

    with pytest.raises(SiesaAuthError):
        client.page(1)


def test_codigo_other_than_zero_in_http_200_raises_with_mensaje(app: Any) -> None:
    client = SiesaClient(source(consulta="API_v2_NoExiste"), tenant="acme", http=on_app(app))

    with pytest.raises(SiesaError) as caught:
        client.page(1)

    assert not isinstance(caught.value, RetriableError)
    assert "codigo 1" in caught.value.message
    assert "consulta no encontrada" in caught.value.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"codigo": 500, "mensaje": "Error interno: timeout SQL", "detalle": None}, "timeout SQL"),
        ({"codigo": "0", "mensaje": "raro"}, "codigo 0: raro"),
        ({"mensaje": "sin codigo"}, "codigo None: sin codigo"),
        ([1, 2, 3], "codigo None: None"),
        ({"codigo": 0, "detalle": {"Table": {"a": 1}}}, "detalle.Table is not a list"),
    ],
)
def test_error_envelopes_raise_siesa_error(body: Any, expected: str) -> None:
    client = SiesaClient(
        source(), tenant="acme", http=on_handler(lambda _r: httpx.Response(200, json=body))
    )

    with pytest.raises(SiesaError, match=expected):
        client.page(1)


def test_a_non_json_answer_raises_siesa_error() -> None:
    client = SiesaClient(
        source(),
        tenant="acme",
        http=on_handler(
            lambda _r: httpx.Response(200, text="<html>Service Unavailable</html>"),
        ),
    )

    with pytest.raises(SiesaError, match="not JSON"):
        client.page(1)


@pytest.mark.parametrize("detalle", [None, {}, {"Table": None}])
def test_a_success_without_rows_is_an_empty_page(detalle: Any) -> None:
    body = {"codigo": 0, "mensaje": "transacción exitosa", "detalle": detalle}
    client = SiesaClient(
        source(), tenant="acme", http=on_handler(lambda _r: httpx.Response(200, json=body))
    )

    assert list(client.scan()) == [[]]


def test_429_and_5xx_are_retried_honouring_retry_after(no_sleep: list[float]) -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}),
        httpx.Response(503),
        httpx.Response(200, json=envelope([{"f120_referencia": "A"}])),
    ]

    client = SiesaClient(source(), tenant="acme", http=on_handler(lambda _r: answers.pop(0)))

    assert client.page(1) == [{"f120_referencia": "A"}]
    assert answers == []
    assert no_sleep[0] == 2.0
    assert len(no_sleep) == 2


def test_a_lasting_outage_ends_in_a_retriable_error(no_sleep: list[float]) -> None:
    calls: list[int] = []

    def down(_request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(502)

    client = SiesaClient(source(), tenant="acme", http=on_handler(down))

    with pytest.raises(RetriableError, match="HTTP 502"):
        client.page(1)

    assert len(calls) == 8  # ATTEMPTS


def test_a_transport_failure_is_retried(no_sleep: list[float]) -> None:
    failures = [httpx.ConnectError("refused")]

    def handler(_request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop(0)
        return httpx.Response(200, json=envelope([]))

    client = SiesaClient(source(), tenant="acme", http=on_handler(handler))

    assert client.page(1) == []
    assert len(no_sleep) == 1


@pytest.mark.parametrize("status", [400, 403, 404])
def test_other_http_errors_raise_siesa_error_without_retry(
    no_sleep: list[float], status: int
) -> None:
    client = SiesaClient(
        source(), tenant="acme", http=on_handler(lambda _r: httpx.Response(status))
    )

    with pytest.raises(SiesaError, match=f"HTTP {status}"):
        client.page(1)

    assert no_sleep == []


@pytest.mark.parametrize("detalle", ["error", [1, 2]])
def test_a_malformed_detalle_raises_siesa_error(detalle: Any) -> None:
    body = {"codigo": 0, "mensaje": "transacción exitosa", "detalle": detalle}
    client = SiesaClient(
        source(), tenant="acme", http=on_handler(lambda _r: httpx.Response(200, json=body))
    )

    with pytest.raises(SiesaError):
        client.page(1)


def test_a_stop_ends_a_scan_waiting_for_a_siesa_that_does_not_answer() -> None:
    asked, release = threading.Event(), threading.Event()

    def hang(_: httpx.Request) -> httpx.Response:  # Siesa never answers (until the end)
        asked.set()
        release.wait(30)
        return httpx.Response(503)

    stopper = Stopper()
    client = SiesaClient(source(), tenant="acme", http=on_handler(hang), stopper=stopper)
    pages = client.scan()
    stopping = threading.Thread(target=lambda: asked.wait(30) and stopper.stop())
    stopping.start()
    started = time.monotonic()
    try:
        with pytest.raises(StopRequested, match="tenant acme: stopped waiting for Siesa"):
            next(pages)
        assert time.monotonic() - started < 5  # not the request's 30 s timeout
    finally:
        release.set()
        stopping.join()
