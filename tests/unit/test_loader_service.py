"""The loader's batch step with a fake target: newest version per key, per-record
failures, and a retriable failure sending the whole batch round again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from services.common.errors import RetriableError
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.tenants import Tenant
from services.loader.service import Loader
from services.targets.base import TargetRejected, UpsertResult
from tests.unit.fakes import FakeMessage, set_secrets, tenant_config

SERDE = default_serde()


class FakeTarget:
    """Holds products by sku (its id: `id-<sku>`); refuses names starting with '!', fails
    on 'DOWN', and a DELETE of a product it does not hold is absent."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, Any]] = {}
        self.writes: list[str] = []
        self.calls: list[str] = []
        self.known: dict[str, str | None] = {}  # the id the loader gave with each call
        self._lock = threading.Lock()

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        self.calls.append(product["sku"])
        self.known[product["sku"]] = known_id
        if product["op"] == "DELETE" and product["sku"] not in self.held:
            return UpsertResult(product["sku"], "absent", None)
        if product["name"].startswith("!"):
            raise TargetRejected(f"item {product['sku']}: refused", tenant=product["tenant"])
        if product["name"] == "DOWN":
            raise RetriableError("target down", tenant=product["tenant"])
        with self._lock:
            action = "updated" if product["sku"] in self.held else "created"
            self.held[product["sku"]] = product
            self.writes.append(product["sku"])
        return UpsertResult(product["sku"], action, f"id-{product['sku']}")  # type: ignore[arg-type]

    def close(self) -> None:
        pass


@pytest.fixture
def target() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch, target: FakeTarget) -> Iterator[Loader]:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    tenant = Tenant.model_validate(
        tenant_config("acme", env="L", siesa__base_url="http://siesa.test", siesa__company=1)
    )
    loader = Loader(
        serde=SERDE, tenants={"acme": tenant}, max_in_flight=4, targets={"acme": target}
    )
    yield loader
    loader.close()


def message(
    offset: int,
    sku: str,
    name: str = "X",
    tenant: str = "acme",
    partition: int = 0,
    op: str = "UPSERT",
) -> FakeMessage:
    product = {
        "tenant": tenant,
        "sku": sku,
        "name": name,
        "op": op,
        "mapping_name": "m",
        "mapping_version": "1",
        "sync_id": "s",
        "trace_id": "t",
        "source_fingerprint": "f",
    }
    return FakeMessage(
        _key=f"{tenant}/{sku}".encode(),
        _value=SERDE.encode("CanonicalProduct", product),
        _offset=offset,
        _partition=partition,
    )


def test_only_the_newest_version_of_each_key_is_written(loader: Loader, target: FakeTarget) -> None:
    batch = [
        message(1, "A", "v1"),
        message(2, "B", "b"),
        message(3, "A", "v2"),
        message(4, "A", "v3"),
    ]

    result = loader.handle_batch(batch)  # type: ignore[arg-type]

    assert result.failures == []
    assert sorted(target.writes) == ["A", "B"]
    assert target.held["A"]["name"] == "v3"


def test_failures_are_per_record_and_the_rest_lands(loader: Loader, target: FakeTarget) -> None:
    batch = [
        message(1, "A"),
        FakeMessage(_key=b"acme/G", _value=b"garbage", _offset=2),
        message(3, "R", "!refused"),
        message(4, "Z", tenant="ghost"),
        message(5, "B"),
    ]

    result = loader.handle_batch(batch)  # type: ignore[arg-type]

    assert sorted(target.held) == ["A", "B"]
    assert sorted((m.offset(), e.error_class) for m, e in result.failures) == [
        (2, "deserialization"),
        (3, "target_rejected"),
        (4, "unknown_tenant"),
    ]


def test_a_retriable_failure_parks_the_record_and_holds_its_offset(
    loader: Loader, target: FakeTarget
) -> None:
    batch = [message(1, "A"), message(2, "D", "DOWN"), message(3, "B")]

    result = loader.handle_batch(batch)  # type: ignore[arg-type]

    assert result.failures == []
    assert sorted(target.held) == ["A", "B"]
    assert result.counts["parked"] == 1
    # Offsets are committed only below the parked record, never past it.
    assert loader.holds() == {("siesa.items.raw.v1", 0): 2}
    # A newer version of the parked product replaces it; once it lands, nothing is held.
    loader.handle_batch([message(4, "D", "up again")])  # type: ignore[list-item]
    assert target.held["D"]["name"] == "up again"
    assert loader.holds() == {}


def test_the_breaker_opens_and_parks_the_tenant_without_calls(
    loader: Loader, target: FakeTarget
) -> None:
    failures = loader.tenants["acme"].target.breaker_failures
    down = [message(i, f"D{i}", "DOWN") for i in range(failures)]
    loader.handle_batch(down)  # type: ignore[arg-type]
    assert loader.breakers["acme"].state == "open"
    calls = len(target.calls)

    loader.handle_batch([message(100, "LATER")])  # type: ignore[list-item]

    assert len(target.calls) == calls  # the target is left alone while the breaker is open
    assert loader.parked() == failures + 1
    assert loader.states["acme"]["status"] == "degraded"


def test_revoked_partitions_drop_what_is_parked(loader: Loader, target: FakeTarget) -> None:
    loader.handle_batch([message(7, "D", "DOWN")])  # type: ignore[list-item]
    assert loader.parked() == 1

    loader.revoked([TopicPartition("siesa.items.raw.v1", 0)])

    assert loader.parked() == 0
    assert loader.holds() == {}


def test_a_newer_version_supersedes_an_older_poison_one(loader: Loader, target: FakeTarget) -> None:
    batch = [message(1, "A", "!old and refused"), message(2, "A", "fixed")]

    result = loader.handle_batch(batch)  # type: ignore[arg-type]

    assert result.failures == []
    assert target.held["A"]["name"] == "fixed"


def test_state_records_carry_on_from_the_stored_counts(loader: Loader, target: FakeTarget) -> None:
    loader.kafka = KafkaSettings(topic_prefix="p.")
    loader.restore([{**loader.states["acme"], "loaded": 40, "failed": 2, "dead_lettered": 2}])

    result = loader.handle_batch([message(1, "A"), message(2, "R", "!refused")])  # type: ignore[list-item]

    (record,) = result.outputs
    assert (record.topic, record.key) == ("p.sync.state.v1", b"acme/loader")
    state = SERDE.decode_as("SyncState", record.value)
    assert (state["loaded"], state["failed"], state["dead_lettered"]) == (41, 3, 3)
    assert state["status"] == "idle"
    assert state["last_load_at"] is not None
    # Nothing changed: no new state record.
    assert loader.handle_batch([]).outputs == []


# -- target ids ---------------------------------------------------------------------


def test_an_update_is_given_the_id_the_product_got_when_it_was_created(
    loader: Loader, target: FakeTarget
) -> None:
    loader.handle_batch([message(1, "A", "v1")])  # type: ignore[list-item]
    assert target.known["A"] is None  # never written: created first

    loader.handle_batch([message(2, "A", "v2")])  # type: ignore[list-item]

    assert target.known["A"] == "id-A"
    assert target.held["A"]["name"] == "v2"


@pytest.fixture
def keeping(monkeypatch: pytest.MonkeyPatch, target: FakeTarget) -> Iterator[Loader]:
    """A loader that keeps ids on `p.loader.target-ids.v1` (no broker is touched unless
    partitions are assigned)."""
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    tenant = Tenant.model_validate(
        tenant_config("acme", env="L", siesa__base_url="http://siesa.test", siesa__company=1)
    )
    made = Loader(
        serde=SERDE,
        tenants={"acme": tenant},
        kafka=KafkaSettings(topic_prefix="p."),
        targets={"acme": target},
    )
    yield made
    made.close()


def test_a_new_id_is_written_to_the_ids_topic_once(keeping: Loader, target: FakeTarget) -> None:
    loader = keeping
    first = loader.handle_batch([message(1, "A", partition=3)])  # type: ignore[list-item]
    again = loader.handle_batch([message(2, "A", "v2", partition=3)])  # type: ignore[list-item]

    (kept,) = [r for r in first.outputs if r.topic == "p.loader.target-ids.v1"]
    assert kept.key == b"acme/A"
    stored = SERDE.decode_as("TargetId", kept.value)
    assert (stored["tenant"], stored["sku"], stored["target_id"]) == ("acme", "A", "id-A")
    assert stored["target"] == "kong http://kong.test"
    assert [r for r in again.outputs if r.topic == "p.loader.target-ids.v1"] == []


def test_revoked_partitions_forget_their_ids(loader: Loader, target: FakeTarget) -> None:
    loader.handle_batch([message(1, "A", partition=0), message(2, "B", partition=1)])  # type: ignore[list-item]

    loader.revoked([TopicPartition("siesa.items.raw.v1", 1)])
    loader.handle_batch([message(3, "A", "v2", partition=0), message(4, "B", "v2", partition=1)])  # type: ignore[list-item]

    assert (target.known["A"], target.known["B"]) == ("id-A", None)


def test_a_product_the_target_does_not_hold_loses_its_kept_id(
    keeping: Loader, target: FakeTarget
) -> None:
    loader = keeping
    loader.handle_batch([message(1, "A")])  # type: ignore[list-item]
    target.held.clear()  # the target lost it

    result = loader.handle_batch([message(2, "A", op="DELETE")])  # type: ignore[list-item]

    (tombstone,) = [r for r in result.outputs if r.topic == "p.loader.target-ids.v1"]
    assert (tombstone.key, tombstone.value) == (b"acme/A", None)
    assert loader.ids.known("acme", "A") is None
