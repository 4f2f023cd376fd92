"""Scans on the in-process Siesa simulator, with a fake transactional producer: what
each scan emits, and that rows, fingerprints and state go out in one transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.common import tracing
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.tenants import Tenant
from services.extractor.memory import TenantMemory
from services.extractor.rows import fingerprint, legacy_fingerprint
from services.extractor.scan import Scanner
from services.sources.base import SourceError
from services.sources.siesa import rows as siesa_rows
from services.sources.siesa.rows import normalize
from services.sources.siesa.source import SiesaSource
from simulators.siesa import create_app
from tests import ROOT
from tests.unit.fakes import (
    FakeTransactionalProducer,
    on_apps,
    set_secrets,
    tenant_config,
)

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "jwt-token"  # noqa: S105 - a test credential
COMPANY = 8585
SERDE = default_serde()
ROWS: list[dict[str, Any]] = json.loads(
    (ROOT / "tests" / "fixtures" / "siesa-items-page.json").read_text()
)["detalle"]["Table"]


@pytest.fixture
def tenant(monkeypatch: pytest.MonkeyPatch) -> Tenant:
    set_secrets(monkeypatch, "P", KEY, TOKEN, "u", "p")
    return Tenant.model_validate(
        tenant_config("acme", env="P", source__company=COMPANY, source__page_size=3)
    )


@pytest.fixture
def app() -> Any:
    return create_app(KEY, TOKEN)


@pytest.fixture
def admin(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        client.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=ROWS)
        yield client


@pytest.fixture
def producer() -> FakeTransactionalProducer:
    return FakeTransactionalProducer()


KAFKA = KafkaSettings()
TOPICS = {"siesa.items.raw.v1": "raw", "products.dlq.v1": "dlq"}


class ScanOnce:
    """A diff-mode scanner with the old poller's face: `scan_once()`, `fingerprints`."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self.source = scanner.source

    def scan_once(self) -> Any:
        return self.scanner.scan("diff")

    @property
    def fingerprints(self) -> dict[str, str]:
        return self.scanner.memory.fingerprints


@pytest.fixture
def apps(app: Any) -> list[Any]:
    """The apps the poller's requests go to: the last one answers."""
    return [app]


@pytest.fixture
def poller(tenant: Tenant, apps: list[Any], producer: FakeTransactionalProducer) -> ScanOnce:
    return ScanOnce(
        Scanner(
            tenant=tenant,
            source=SiesaSource(tenant.source, tenant=tenant.id, http=on_apps(apps)),
            producer=producer,  # type: ignore[arg-type]
            serde=SERDE,
            kafka=KAFKA,
            memory=TenantMemory("acme"),
            max_field_length=200,
        )
    )


def rows_of(transaction: list[Any]) -> list[Any]:
    """The raw and DLQ records of a transaction (not fingerprints or state), topics
    shortened to raw/dlq."""
    return [(TOPICS[t], k, v, h) for t, k, v, h in transaction if t in TOPICS]


def emitted(transaction: list[Any]) -> list[tuple[str, str, str]]:
    """(topic, key, op) of each record; op is the DLQ's error.class for dead letters."""
    out = []
    for topic, key, value, headers in rows_of(transaction):
        if topic == "dlq":
            out.append((topic, (key or b"").decode(), headers["error.class"]))
        else:
            item = SERDE.decode_as("RawItem", value)
            assert key == f"acme/{item['key']}".encode()
            out.append((topic, item["key"], item["op"]))
    return out


def test_the_first_scan_emits_every_row_in_one_transaction(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    poller.scan_once()

    (transaction,) = producer.transactions
    assert emitted(transaction) == [
        ("raw", "CAM-OXF-001", "UPSERT"),
        ("raw", "PAN-DRL-032", "UPSERT"),
        ("raw", "SHP-ACD-400", "UPSERT"),
        ("raw", "TUB-PVC-2030", "UPSERT"),
    ]
    items = [SERDE.decode_as("RawItem", value) for _, _, value, _ in rows_of(transaction)]
    assert len({item["sync_id"] for item in items}) == 1
    assert len({item["trace_id"] for item in items}) == 4
    shampoo = items[2]
    assert shampoo["row"]["f120_referencia"] == "SHP-ACD-400"
    assert shampoo["row"]["f120_descripcion"] == 'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML'
    assert (shampoo["tenant"], shampoo["origin"]["company"], shampoo["origin"]["consulta"]) == (
        "acme",
        str(COMPANY),
        "API_v2_Items",
    )
    assert shampoo["source_system"] == "siesa"
    headers = rows_of(transaction)[2][3]
    assert headers["trace_id"] == shampoo["trace_id"].encode()
    # The row's trace starts at the read: W3C trace context, its trace id the item's.
    started = tracing.parse(headers["traceparent"])
    assert started is not None
    assert started.trace_id == shampoo["trace_id"]
    assert headers["tenant"] == b"acme"


def test_an_unchanged_catalogue_emits_nothing(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    poller.scan_once()
    poller.scan_once()

    first, second = producer.transactions
    assert len(rows_of(first)) == 4
    assert rows_of(second) == []  # the state alone: counts, scan times
    (state,) = [SERDE.decode_as("SyncState", v) for t, _, v, _ in second if t == "sync.state.v1"]
    assert (state["status"], state["seen"], state["changed"], state["pages"]) == ("idle", 8, 4, 4)


def test_a_changed_row_and_a_vanished_row_are_emitted(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    poller.scan_once()
    changed = {**ROWS[0], "f120_descripcion": "CAMISA OXFORD MANGA LARGA AZUL & BLANCO"}
    admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=[changed])
    assert admin.delete(f"/_admin/companies/{COMPANY}/items/TUB-PVC-2030").status_code == 204

    poller.scan_once()

    assert emitted(producer.transactions[1]) == [
        ("raw", "CAM-OXF-001", "UPSERT"),
        ("raw", "TUB-PVC-2030", "DELETE"),
    ]
    deleted = SERDE.decode_as("RawItem", rows_of(producer.transactions[1])[1][2])
    assert deleted["row"] == {"f120_referencia": "TUB-PVC-2030"}


def test_fingerprints_of_the_first_release_are_taken_over_without_re_emitting(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    """An upgraded extractor restores the fingerprints the first release stored (SHA-256
    of a row's JSON): unchanged rows are not emitted again, only their new fingerprint
    is stored; a row changed meanwhile is."""
    for row in ROWS:
        text = normalize(row)
        poller.fingerprints[str(siesa_rows.key(text))] = legacy_fingerprint(text)
    changed = {**ROWS[0], "f120_descripcion": "CAMISA OXFORD MANGA LARGA AZUL & BLANCO"}
    admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=[changed])

    poller.scan_once()

    (transaction,) = producer.transactions
    assert emitted(transaction) == [("raw", "CAM-OXF-001", "UPSERT")]
    stored = {k: v for t, k, v, _ in transaction if t == "siesa.fingerprints.v1"}
    current = [changed, *ROWS[1:]]
    assert stored == {
        f"acme/{siesa_rows.key(normalize(r))}".encode(): fingerprint(normalize(r)).encode()
        for r in current
    }
    producer.transactions.clear()
    poller.scan_once()
    assert rows_of(producer.transactions[0]) == []  # nothing left to take over


def test_a_rejected_row_is_dead_lettered_in_the_same_transaction(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    too_long = {**ROWS[1], "f120_descripcion": "X" * 201}
    admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=[too_long])

    poller.scan_once()

    (transaction,) = producer.transactions
    assert ("dlq", "acme/PAN-DRL-032", "invalid_row") in emitted(transaction)
    (dead,) = [t for t in rows_of(transaction) if t[0] == "dlq"]
    assert json.loads(dead[2])["f120_referencia"] == "PAN-DRL-032"  # the row, as Siesa sent it
    assert dead[3]["error.stage"] == "extract"
    assert "f120_descripcion is 201 characters long" in dead[3]["error.message"]
    assert [key for topic, key, _ in emitted(transaction) if topic == "raw"] == [
        "CAM-OXF-001",
        "SHP-ACD-400",
        "TUB-PVC-2030",
    ]


def test_a_failed_scan_emits_nothing_and_keeps_what_it_knew(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer, apps: list[Any]
) -> None:
    poller.scan_once()
    known = dict(poller.fingerprints)
    admin.delete(f"/_admin/companies/{COMPANY}/items/CAM-OXF-001")
    # Siesa now refuses the tenant's credentials: the scan fails before it completes.
    apps.append(create_app("f" * 32, "other"))

    with pytest.raises(SourceError):
        poller.scan_once()

    assert len(producer.transactions) == 1  # no DELETE for what an incomplete scan missed
    assert poller.fingerprints == known


def test_a_rejected_row_is_not_taken_for_a_vanished_one(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    poller.scan_once()
    too_long = {**ROWS[1], "f120_descripcion": "X" * 201}
    admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=[too_long])

    poller.scan_once()

    assert ("raw", "PAN-DRL-032", "DELETE") not in emitted(producer.transactions[1])


def test_an_empty_answer_is_not_taken_for_a_wholesale_deletion(
    admin: TestClient, poller: ScanOnce, producer: FakeTransactionalProducer
) -> None:
    poller.scan_once()
    known = dict(poller.fingerprints)
    for row in ROWS:
        admin.delete(f"/_admin/companies/{COMPANY}/items/{row['f120_referencia'].strip()}")

    with pytest.raises(SourceError, match="no rows while 4 were known"):
        poller.scan_once()

    assert len(producer.transactions) == 1
    assert poller.fingerprints == known


def test_a_row_shifted_past_a_page_boundary_mid_scan_is_not_taken_for_deleted(
    admin: TestClient,
    poller: ScanOnce,
    producer: FakeTransactionalProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poller.scan_once()  # pages of 3: CAM, PAN, SHP | TUB
    real_page = poller.source.client.page
    deleted: list[str] = []

    def page(number: int, parametros: str | None = None) -> Any:
        if number == 2 and not deleted:
            # CAM (already read) goes while the scan runs: TUB moves onto page 1, which
            # was read too, so this scan never sees TUB.
            admin.delete(f"/_admin/companies/{COMPANY}/items/CAM-OXF-001")
            deleted.append("CAM-OXF-001")
        return real_page(number, parametros)

    monkeypatch.setattr(poller.source.client, "page", page)

    poller.scan_once()

    assert emitted(producer.transactions[-1]) == []  # TUB, missed by this read, stays
    poller.scan_once()
    assert emitted(producer.transactions[-1]) == [("raw", "CAM-OXF-001", "DELETE")]
