"""The Siesa simulator: consultas API, paging, auth and admin API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from simulators.siesa import create_app

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"  # noqa: S105 - test value
AUTH = {"ConniKey": KEY, "ConniToken": TOKEN}
BASE = "/api/siesa/v3/ejecutarconsultaestandar"
FIXTURE = Path(__file__).parent.parent / "fixtures" / "siesa-items-page.json"


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(KEY, TOKEN)) as test_client:
        yield test_client


@pytest.fixture
def fixture_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["detalle"]["Table"]
    return rows


def consulta(
    client: TestClient,
    paginacion: str = "numPag=1|tamPag=100",
    company: int = 1,
    descripcion: str = "API_v2_Items",
    extra: str = "",
    headers: dict[str, str] | None = None,
) -> Any:
    """One consulta; the query string is written raw so tests control its encoding."""
    url = f"{BASE}?idCompania={company}&descripcion={descripcion}&paginacion={paginacion}{extra}"
    return client.get(url, headers=AUTH if headers is None else headers)


def table(client: TestClient, **kwargs: Any) -> list[dict[str, Any]]:
    response = consulta(client, **kwargs)
    assert response.status_code == 200
    body = response.json()
    assert body["codigo"] == 0, body
    assert body["mensaje"] == "transacción exitosa"
    rows: list[dict[str, Any]] = body["detalle"]["Table"]
    return rows


def seed(client: TestClient, count: int, company: int = 1, seed: int = 7) -> None:
    response = client.post(f"/_admin/companies/{company}/seed", json={"count": count, "seed": seed})
    assert response.status_code == 200
    assert response.json() == {"count": count}


def load_fixture(client: TestClient, rows: list[dict[str, Any]]) -> None:
    response = client.post("/_admin/companies/1/items?keep_dates=true", json=rows)
    assert response.status_code == 200
    assert response.json() == {"upserted": len(rows)}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"ConniKey": KEY},
        {"ConniKey": "ffffffffffffffffffffffffffffffff", "ConniToken": TOKEN},
        {"ConniKey": KEY, "ConniToken": "wrong-token-value"},
        {"Authorization": f"Bearer {TOKEN}"},
    ],
)
def test_missing_or_wrong_credentials_get_401_without_echo(
    client: TestClient, headers: dict[str, str]
) -> None:
    response = consulta(client, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["codigo"] != 0
    assert body["mensaje"]
    for secret in headers.values():
        assert secret.removeprefix("Bearer ") not in response.text


def test_bearer_is_accepted_alongside_conni_headers(client: TestClient) -> None:
    seed(client, 3)
    headers = {**AUTH, "Authorization": f"Bearer {TOKEN}"}
    assert len(table(client, headers=headers)) == 3


@pytest.mark.parametrize(("count", "sizes"), [(250, [100, 100, 50]), (200, [100, 100, 0])])
def test_pages_end_with_a_short_or_empty_page(
    client: TestClient, count: int, sizes: list[int]
) -> None:
    seed(client, count)
    pages = [table(client, paginacion=f"numPag={n}|tamPag=100") for n in (1, 2, 3)]
    assert [len(page) for page in pages] == sizes
    rowids = [row["f120_rowid"] for page in pages for row in page]
    assert rowids == sorted(rowids)
    assert len(set(rowids)) == count


@pytest.mark.parametrize(
    "paginacion",
    [
        "numPag=2|tamPag=100",
        "numPag%3D2%7CtamPag%3D100",
        "numPag%253D2%257CtamPag%253D100",
    ],
    ids=["raw", "percent-encoded", "double-encoded"],
)
def test_paginacion_is_accepted_raw_or_encoded(client: TestClient, paginacion: str) -> None:
    seed(client, 250)
    rows = table(client, paginacion=paginacion)
    assert [row["f120_rowid"] for row in rows] == list(range(101, 201))


@pytest.mark.parametrize(
    ("paginacion", "descripcion"),
    [
        ("numPag=1|tamPag=101", "API_v2_Items"),
        ("", "API_v2_Items"),
        ("numPag=1", "API_v2_Items"),
        ("garbage", "API_v2_Items"),
        ("numPag=0|tamPag=100", "API_v2_Items"),
        ("numPag=x|tamPag=100", "API_v2_Items"),
        ("numPag=1|tamPag=100", "API_v2_Bodegas"),
    ],
)
def test_bad_requests_answer_codigo_in_http_200(
    client: TestClient, paginacion: str, descripcion: str
) -> None:
    seed(client, 5)
    response = consulta(client, paginacion=paginacion, descripcion=descripcion)
    assert response.status_code == 200
    body = response.json()
    assert body["codigo"] != 0
    assert body["mensaje"]
    assert not body.get("detalle")


def test_unknown_company_has_an_empty_table(client: TestClient) -> None:
    seed(client, 5, company=1)
    assert table(client, company=8020) == []


def test_fixture_rows_come_back_verbatim(
    client: TestClient, fixture_rows: list[dict[str, Any]]
) -> None:
    load_fixture(client, fixture_rows)
    assert table(client) == fixture_rows
    assert client.get("/_admin/companies/1/items").json() == fixture_rows
    padded = table(client)[2]
    assert padded["f120_referencia"] == "SHP-ACD-400  "
    assert padded["f120_unidad_medida"] == "UN   "


def test_items_wrapper_body_is_accepted(
    client: TestClient, fixture_rows: list[dict[str, Any]]
) -> None:
    response = client.post("/_admin/companies/1/items", json={"items": fixture_rows})
    assert response.json() == {"upserted": 4}
    assert [r["f120_referencia"] for r in table(client)] == [
        r["f120_referencia"] for r in fixture_rows
    ]


def test_upsert_stamps_the_date_and_merges_by_trimmed_referencia(
    client: TestClient, fixture_rows: list[dict[str, Any]]
) -> None:
    load_fixture(client, fixture_rows)
    before = datetime.now().strftime("%Y%m%d%H%M%S")
    changed = {
        "f120_referencia": "SHP-ACD-400",
        "f120_descripcion": "SHAMPOO NUEVO",
        "f120_fecha_actualizacion": "20000101000000",
    }
    new = {"f120_referencia": "NEW-001  ", "f120_descripcion": "NUEVO"}
    response = client.post("/_admin/companies/1/items", json=[changed, new])
    after = datetime.now().strftime("%Y%m%d%H%M%S")
    assert response.json() == {"upserted": 2}
    rows = {r["f120_referencia"].strip(): r for r in table(client)}
    assert len(rows) == 5
    shampoo = rows["SHP-ACD-400"]
    assert before <= shampoo["f120_fecha_actualizacion"] <= after
    assert shampoo["f120_descripcion"] == "SHAMPOO NUEVO"
    assert shampoo["f120_rowid"] == 10460
    assert shampoo["f120_codigo_barras"] == "7701234000028"
    assert rows["NEW-001"]["f120_rowid"] == 10472
    assert rows["NEW-001"]["f120_referencia"] == "NEW-001  "
    assert before <= rows["NEW-001"]["f120_fecha_actualizacion"] <= after


def test_keep_dates_without_a_date_still_stamps(client: TestClient) -> None:
    before = datetime.now().strftime("%Y%m%d%H%M%S")
    row = {"f120_referencia": "X-1", "f120_descripcion": "X"}
    client.post("/_admin/companies/1/items?keep_dates=true", json=[row])
    assert table(client)[0]["f120_fecha_actualizacion"] >= before


@pytest.mark.parametrize(
    "body",
    [{"f120_referencia": "X"}, [{"f120_descripcion": "no key"}], [{"f120_referencia": "  "}]],
)
def test_bad_upsert_bodies_are_refused_whole(client: TestClient, body: Any) -> None:
    response = client.post("/_admin/companies/1/items", json=body)
    assert response.status_code == 400
    assert client.get("/_admin/companies/1/items").json() == []


def test_delete_by_trimmed_referencia(
    client: TestClient, fixture_rows: list[dict[str, Any]]
) -> None:
    load_fixture(client, fixture_rows)
    assert client.delete("/_admin/companies/1/items/SHP-ACD-400").status_code == 204
    assert client.delete("/_admin/companies/1/items/SHP-ACD-400").status_code == 404
    assert client.delete("/_admin/companies/9/items/SHP-ACD-400").status_code == 404
    remaining = [r["f120_referencia"] for r in table(client)]
    assert remaining == ["CAM-OXF-001", "PAN-DRL-032", "TUB-PVC-2030"]


@pytest.mark.parametrize(
    "parametros",
    ["FechaInicio=20261121|FechaFin=20261123", "FechaInicio%3D20261121%7CFechaFin%3D20261123"],
)
def test_date_filter_is_inclusive_start_exclusive_end(
    client: TestClient, fixture_rows: list[dict[str, Any]], parametros: str
) -> None:
    load_fixture(client, fixture_rows)
    rows = table(client, extra=f"&parametros={parametros}")
    assert [r["f120_referencia"].strip() for r in rows] == ["PAN-DRL-032", "SHP-ACD-400"]
    since = table(client, extra="&parametros=FechaInicio=20261123")
    assert [r["f120_referencia"] for r in since] == ["TUB-PVC-2030"]


@pytest.mark.parametrize("parametros", ["Color=AZUL", "FechaInicio=2026-11-21", "FechaFin"])
def test_bad_parametros_answer_codigo(
    client: TestClient, fixture_rows: list[dict[str, Any]], parametros: str
) -> None:
    load_fixture(client, fixture_rows)
    body = consulta(client, extra=f"&parametros={parametros}").json()
    assert body["codigo"] != 0


def test_seed_is_deterministic_and_replaces(client: TestClient) -> None:
    seed(client, 30, seed=1)
    first = table(client)
    seed(client, 30, seed=1)
    assert table(client) == first
    seed(client, 10, seed=2)
    second = table(client)
    assert len(second) == 10
    assert second != first[:10]
    bad = client.post("/_admin/companies/1/seed", json={"count": "many", "seed": 1})
    assert bad.status_code == 400


def test_stats_and_reset(client: TestClient) -> None:
    seed(client, 150, company=8585)
    seed(client, 2, company=8020)
    for page in (1, 2):
        table(client, company=8585, paginacion=f"numPag={page}|tamPag=100")
    consulta(client, headers={})
    consulta(client, paginacion="numPag=1|tamPag=500")
    stats = client.get("/_admin/stats").json()
    assert stats["rows_by_company"] == {"8020": 2, "8585": 150}
    assert stats["pages_served"] == 2
    assert stats["requests"] == [
        {"route": BASE, "method": "GET", "status": 200, "count": 3},
        {"route": BASE, "method": "GET", "status": 401, "count": 1},
    ]
    assert stats["in_flight"] == 0
    assert stats["peak_concurrency"] == 1
    assert stats["served_429"] == 0
    assert client.post("/_admin/reset").status_code == 200
    stats = client.get("/_admin/stats").json()
    assert stats["rows_by_company"] == {}
    assert stats["pages_served"] == 0
    assert stats["requests"] == []
    assert table(client, company=8585) == []


def test_base_path_is_configurable() -> None:
    with TestClient(create_app(KEY, TOKEN, base_path="/siesa/")) as client:
        response = client.get(
            "/siesa/ejecutarconsultaestandar?idCompania=1&descripcion=API_v2_Items"
            "&paginacion=numPag=1|tamPag=100",
            headers=AUTH,
        )
        assert response.json()["codigo"] == 0
