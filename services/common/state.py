"""Sync state on the compacted `sync.state.v1`: one `SyncState` per tenant and writer.

Writers (the extractor, each loader) put their own record, keyed ``<tenant>/<writer>``,
so they never overwrite each other; readers merge them per tenant. `read_compacted`
reads any compacted topic to its end (latest value per key), for state restored at
start-up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.common.records import OutRecord
from services.common.scan import reader, scan
from services.common.serde import Serde
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
