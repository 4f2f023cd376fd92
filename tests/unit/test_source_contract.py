"""The contract every source passes, against its own simulator app (in process): a full
read gives every row once, page by page; rows as text with a key; a filtered read gives
(at least) what changed since the watermark; refused credentials raise
`CredentialsRefused` without showing them; an HTTP client it is given stays open.

Adding a source: one `Contract` entry below."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from services.sources import SOURCES, open_source
from services.sources.base import CredentialsRefused, Source, Watermark
from simulators import siesa

KEY, TOKEN = "0123456789abcdef0123456789abcdef", "contract-token"  # a test credential pair
COMPANY = 77


def siesa_seed(admin: TestClient, count: int) -> None:
    seeded = admin.post(f"/_admin/companies/{COMPANY}/seed", json={"count": count, "seed": 5})
    assert seeded.status_code == 200


def siesa_change(admin: TestClient, index: int) -> str:
    row = admin.get(f"/_admin/companies/{COMPANY}/items").json()[index]
    row["f120_descripcion"] = "CAMBIADO EN EL CONTRATO"
    assert admin.post(f"/_admin/companies/{COMPANY}/items", json=[row]).status_code == 200
    return str(row["f120_referencia"]).strip()


@dataclass(frozen=True)
class Contract:
    type: str
    create_app: Callable[[str, str], Any]  # accepting these credentials
    settings: dict[str, Any]  # secrets from C_SECRET_1 / C_SECRET_2, 7 rows a page
    seed: Callable[[TestClient, int], None]  # a catalogue of n rows
    change: Callable[[TestClient, int], str]  # edit the n-th row now; its key


CONTRACTS = [
    Contract(
        "siesa",
        lambda key, token: siesa.create_app(key, token),
        {
            "type": "siesa",
            "base_url": "http://siesa.test/api/siesa/v3",
            "company": COMPANY,
            "page_size": 7,
            "change_date_column": "f120_fecha_actualizacion",
            "conni_key": {"env": "C_SECRET_1"},
            "conni_token": {"env": "C_SECRET_2"},
        },
        lambda admin, n: (
            admin.post(
                f"/_admin/companies/{COMPANY}/seed", json={"count": n, "seed": 5}
            ).raise_for_status()
            and None
        ),
        siesa_change,
    ),
]


def test_every_registered_source_has_a_contract() -> None:
    assert sorted(c.type for c in CONTRACTS) == sorted(SOURCES)


@pytest.fixture(params=CONTRACTS, ids=[c.type for c in CONTRACTS])
def contract(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Contract:
    monkeypatch.setenv("C_SECRET_1", KEY)
    monkeypatch.setenv("C_SECRET_2", TOKEN)
    given: Contract = request.param
    return given


@pytest.fixture
def app(contract: Contract) -> Any:
    return contract.create_app(KEY, TOKEN)


@pytest.fixture
def admin(app: Any, contract: Contract) -> Iterator[TestClient]:
    with TestClient(app) as client:
        contract.seed(client, 23)
        yield client


@pytest.fixture
def http(app: Any) -> Iterator[httpx.Client]:
    with TestClient(app) as client:
        yield client


def source_of(contract: Contract, http: httpx.Client) -> Source:
    settings = SOURCES[contract.type].settings.model_validate(contract.settings)
    return open_source("acme", settings, http=http)


def read(source: Source, since: Watermark | None = None) -> dict[str, dict[str, str | None]]:
    rows = [source.row(raw) for page in source.pages(since) for raw in page]
    keyed = {source.key(row): row for row in rows}
    assert None not in keyed, "every row has a key"
    assert len(keyed) == len(rows), "no row twice"
    return {str(k): row for k, row in keyed.items()}


def test_a_full_read_gives_every_row_once_page_by_page(
    contract: Contract, admin: TestClient, http: httpx.Client
) -> None:
    source = source_of(contract, http)

    pages = list(source.pages())
    rows = read(source)

    assert [len(p) for p in pages] == [7, 7, 7, 2]
    assert len(rows) == 23
    assert all(isinstance(v, str | None) for row in rows.values() for v in row.values())
    assert source.requests == 8  # two full reads of four pages


def test_a_filtered_read_gives_what_changed_since_the_watermark(
    contract: Contract, admin: TestClient, http: httpx.Client
) -> None:
    source = source_of(contract, http)
    rows = read(source)
    stamps = [(source.changed_at(row), key) for key, row in rows.items()]
    watermark = max((stamp, key) for stamp, key in stamps if stamp is not None)

    changed = contract.change(admin, 5)
    since = read(source, watermark)

    assert changed in since
    assert rows[changed] != since[changed]
    stamp = source.changed_at(since[changed])
    assert stamp is not None
    assert (stamp, changed) > watermark


def test_refused_credentials_raise_credentials_refused_without_showing_them(
    contract: Contract,
) -> None:
    other = contract.create_app("f" * 32, "another-token")
    with TestClient(other) as refusing:
        source = source_of(contract, refusing)
        with pytest.raises(CredentialsRefused) as caught:
            list(source.pages())

    assert caught.value.tenant == "acme"
    assert KEY not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_closing_a_source_leaves_the_client_it_was_given_open(
    contract: Contract, admin: TestClient, http: httpx.Client
) -> None:
    source = source_of(contract, http)
    list(source.pages())

    source.close()

    assert not http.is_closed


def test_origin_gives_the_names_the_plugin_declares(contract: Contract, http: httpx.Client) -> None:
    origin = source_of(contract, http).origin()

    assert sorted(origin) == sorted(SOURCES[contract.type].origin)
    assert all(isinstance(v, str) for v in origin.values())
