"""A scan's batches streamed into transactions (services/extractor/commit.py): each
batch is one transaction, in order, its state counting on from the batch before it
without waiting for that one's commit; a failed commit fails the scan and leaves nothing
of the batches after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.common.errors import RetriableError
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.tenants import Tenant
from services.extractor.memory import TenantMemory
from services.extractor.scan import Scanner
from services.sources.base import Row, SourceRow, Watermark
from tests.unit.fakes import FakeTransactionalProducer, set_secrets, tenant_config

SERDE = default_serde()
PAGES = [[{"ref": f"K{p}{i}", "name": f"item {p}{i}"} for i in range(5)] for p in range(6)]


class PagesSource:
    """Six pages of five rows, from memory."""

    key_name = "ref"
    requests = 0

    def pages(self, since: Watermark | None = None) -> Iterator[list[SourceRow]]:
        yield from PAGES

    def row(self, raw: SourceRow) -> Row:
        return {k: str(v) for k, v in raw.items()}

    def key(self, row: Row) -> str | None:
        return row["ref"]

    def changed_at(self, row: Row) -> str | None:
        return None

    def origin(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


class FailingSecondCommit(FakeTransactionalProducer):
    def commit_transaction(self, timeout: float) -> None:
        if len(self.transactions) == 1:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "broker gone"))
        super().commit_transaction(timeout)


@pytest.fixture
def tenant(monkeypatch: pytest.MonkeyPatch) -> Tenant:
    set_secrets(monkeypatch, "C", "k", "t", "u", "p")
    return Tenant.model_validate(tenant_config(env="C"))


def scanner(tenant: Tenant, producer: Any) -> Scanner:
    return Scanner(
        tenant=tenant,
        source=PagesSource(),
        producer=producer,
        serde=SERDE,
        kafka=KafkaSettings(),
        memory=TenantMemory(tenant.id),
        commit_rows=10,  # two pages a batch
        commit_interval_s=3600,
    )


def states(transaction: list[Any]) -> list[dict[str, Any]]:
    return [SERDE.decode_as("SyncState", v) for t, _, v, _ in transaction if t == "sync.state.v1"]


def test_each_batch_is_a_transaction_counting_on_from_the_one_before(tenant: Tenant) -> None:
    producer = FakeTransactionalProducer()
    scan = scanner(tenant, producer)

    scan.scan("diff")
    scan.close()

    assert [len(t) for t in producer.transactions] == [21, 21, 21, 1]  # rows, fps, state
    assert [s["changed"] for t in producer.transactions for s in states(t)] == [10, 20, 30, 30]
    assert len(scan.memory.fingerprints) == 30
    assert scan.memory.state["changed"] == 30


def test_a_failed_commit_fails_the_scan_and_stores_nothing_after_it(tenant: Tenant) -> None:
    producer = FailingSecondCommit()
    scan = scanner(tenant, producer)

    with pytest.raises(RetriableError, match="broker gone"):
        scan.scan("diff")
    scan.close()

    (stored,) = producer.transactions  # the first batch; its successors were aborted
    assert [s["changed"] for s in states(stored)] == [10]
    assert len(scan.memory.fingerprints) == 10
    assert scan.memory.state["changed"] == 10
