"""Sync state on the compacted `sync.state.v1`: one `SyncState` per tenant and writer.

Writers (the extractor, each transformer and loader) put their own record, keyed
``<tenant>/<writer>``, so they never overwrite each other; readers merge them per
tenant. Every service keeps and writes its states one way, through a `StateWriter`.
`read_compacted` reads any compacted topic to its end (latest value per key), for state
restored at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer

from services.common.kafka import produce_in_transaction
from services.common.records import OutRecord
from services.common.scan import reader, scan
from services.common.serde import Serde, default_serde
from services.common.settings import KafkaSettings
from services.common.topics import STATE

SCHEMA = "SyncState"


def state_key(tenant: str, writer: str) -> bytes:
    return f"{tenant}/{writer}".encode()


def new_state(tenant: str, writer: str, **fields: Any) -> dict[str, Any]:
    """A SyncState dict with every field at its default, overridden by ``fields``."""
    state: dict[str, Any] = {
        "tenant": tenant,
        "writer": writer,
        "status": "idle",
        "cursor": None,
        "last_extract_at": None,
        "last_load_at": None,
        "extracted": 0,
        "changed": 0,
        "transformed": 0,
        "loaded": 0,
        "failed": 0,
        "dead_lettered": 0,
        "last_error": None,
        "updated_at": datetime.now(UTC),
    }
    state.update(fields)
    return state


def state_record(kafka: KafkaSettings, serde: Serde, state: dict[str, Any]) -> OutRecord:
    """The record that stores ``state`` (stamped ``updated_at`` now)."""
    value = serde.encode(SCHEMA, {**state, "updated_at": datetime.now(UTC)})
    return OutRecord(kafka.topic(STATE), state_key(state["tenant"], state["writer"]), value)


class StateWriter:
    """One writer's SyncState of each tenant, kept in memory and stored as records.

    The owner changes a tenant's state in place (`states[tenant]["loaded"] += 1`) or
    proposes a new one (`changed`), and stores it one of three ways: `records()` gives a
    record for each tenant whose state changed since its last record (to produce with a
    batch); `record(kafka, state)` the record of one state, e.g. a proposal produced in
    the transaction of the rows it counts, adopted with `keep` once committed; `store`
    stores a change alone, in a transaction of its own, and adopts it once committed.
    Each tenant's state is touched by one thread at a time.
    """

    def __init__(
        self, writer: str, serde: Serde | None = None, tenants: Iterable[str] | None = None
    ) -> None:
        """`tenants`: the only tenants this writer keeps (default: any)."""
        self.writer = writer
        self.serde = serde or default_serde()
        self.only = frozenset(tenants) if tenants is not None else None
        self._states: dict[str, dict[str, Any]] = {}
        self._written: dict[str, tuple[Any, ...]] = {}
        self._unwritten: set[str] = set()  # kept states never written nor restored
        for tenant in self.only or ():
            self._states[tenant] = new_state(tenant, writer)
            self._unwritten.add(tenant)

    def restore(self, stored: Iterable[dict[str, Any]]) -> None:
        """Carry on from this writer's stored states (a restarted writer of a stable name);
        the others' are ignored."""
        for state in stored:
            tenant = state["tenant"]
            if state["writer"] == self.writer and (self.only is None or tenant in self.only):
                self._states[tenant] = dict(state)
                self._written[tenant] = _signature(state)
                self._unwritten.discard(tenant)

    def __getitem__(self, tenant: str) -> dict[str, Any]:
        """The tenant's current state (every field at its default for a new one)."""
        state = self._states.get(tenant)
        if state is None:
            state = self._states[tenant] = new_state(tenant, self.writer)
            self._unwritten.add(tenant)
        return state

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def changed(self, tenant: str, **update: Any) -> dict[str, Any]:
        """The tenant's state with `update` applied, not kept yet (see `keep`)."""
        return {**self[tenant], **update}

    def keep(self, state: dict[str, Any]) -> None:
        """Adopt `state` (e.g. once the transaction that stored it is committed)."""
        self._states[state["tenant"]] = state
        if state["tenant"] not in self._written:
            self._unwritten.add(state["tenant"])

    def record(self, kafka: KafkaSettings, state: dict[str, Any]) -> OutRecord:
        """The record that stores `state`, stamped `updated_at` now."""
        self._written[state["tenant"]] = _signature(state)
        self._unwritten.discard(state["tenant"])
        return state_record(kafka, self.serde, state)

    def records(
        self, kafka: KafkaSettings, touched: Iterable[str] | None = None
    ) -> list[OutRecord]:
        """A record for each tenant whose state changed since its last record. `touched`:
        the only tenants whose state may have changed since the last call (besides those
        never written), so that a step of a writer of 1,000 tenants does not compare all
        of their states."""
        if touched is None:
            looked: Iterable[str] = list(self._states)
        else:
            looked = {*touched, *self._unwritten}
        return [
            self.record(kafka, self._states[tenant])
            for tenant in looked
            if tenant in self._states
            and self._written.get(tenant) != _signature(self._states[tenant])
        ]

    def store(
        self, producer: Producer, kafka: KafkaSettings, tenant: str, **update: Any
    ) -> dict[str, Any]:
        """Store the tenant's state with `update` alone, in a transaction of its own, and
        keep it once committed (a failure leaves the kept state as it was)."""
        state = self.changed(tenant, **update)
        produce_in_transaction(producer, [self.record(kafka, state)])
        self.keep(state)
        return state


def _signature(state: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted((k, repr(v)) for k, v in state.items() if k != "updated_at"))


def read_compacted(kafka: KafkaSettings, topic: str, timeout: float = 30.0) -> dict[bytes, bytes]:
    """The latest value of every key of ``topic`` (a full topic name), committed records
    only, read from the beginning to the end as it is now; tombstones remove keys."""
    consumer = reader(kafka)
    latest: dict[bytes, bytes] = {}
    try:
        for msg in scan(consumer, topic, timeout=timeout):
            key, value = msg.key() or b"", msg.value()
            if value is None:
                latest.pop(key, None)
            else:
                latest[key] = value
    finally:
        consumer.close()
    return latest


def read_states(kafka: KafkaSettings, serde: Serde, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every stored SyncState (one per tenant and writer), sorted by tenant, writer."""
    raw = read_compacted(kafka, kafka.topic(STATE), timeout)
    states = [serde.decode_as(SCHEMA, value) for value in raw.values()]
    return sorted(states, key=lambda s: (s["tenant"], s["writer"]))
