"""What the extractor remembers of a tenant between polls and across restarts.

- fingerprints: ``<tenant>/<referencia>`` → fingerprint of the row last emitted, on the
  compacted `siesa.fingerprints.v1` (a DELETE writes a tombstone);
- its `SyncState` (writer ``extractor``) on the compacted `sync.state.v1`, whose
  ``cursor`` holds the filter watermark (timestamp, key) and the last reconcile time.

Both are written in the same Kafka transactions as the rows they describe, and read
back (committed records only) at start-up, so a crash never makes the extractor believe
it sent something it did not.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from services.common import topics
from services.common.records import OutRecord
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.state import StateWriter, read_compacted, read_states

log = logging.getLogger(__name__)

WRITER = "extractor"

Watermark = tuple[str, str]  # (change date YYYYMMDDHHMMSS, key)


@dataclass
class Cursor:
    """The extractor's position, kept as JSON in SyncState.cursor."""

    watermark: Watermark | None = None
    reconciled_at_ms: int | None = None

    def dump(self) -> str:
        return json.dumps(
            {
                "watermark": list(self.watermark) if self.watermark else None,
                "reconciled_at_ms": self.reconciled_at_ms,
            }
        )

    @classmethod
    def load(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            mark = data.get("watermark")
            watermark = (str(mark[0]), str(mark[1])) if mark else None
            reconciled = data.get("reconciled_at_ms")
            return cls(watermark, int(reconciled) if reconciled is not None else None)
        except (ValueError, TypeError, IndexError, AttributeError):
            log.warning("unreadable extractor cursor %r: starting without one", text)
            return cls()


@dataclass
class TenantMemory:
    """A tenant's fingerprints, and its state (as committed) kept by `states`."""

    tenant: str
    fingerprints: dict[str, str] = field(default_factory=dict)
    states: StateWriter = field(default_factory=lambda: StateWriter(WRITER))

    @property
    def state(self) -> dict[str, Any]:
        return self.states[self.tenant]

    @property
    def cursor(self) -> Cursor:
        return Cursor.load(self.state.get("cursor"))


def fingerprint_record(kafka: KafkaSettings, tenant: str, key: str, fp: str | None) -> OutRecord:
    """The record storing ``fp`` for one row; None stores a tombstone (row deleted)."""
    return OutRecord(
        kafka.topic(topics.FINGERPRINTS),
        f"{tenant}/{key}".encode(),
        fp.encode() if fp is not None else None,
    )


def restore(kafka: KafkaSettings, serde: Serde, tenants: list[str]) -> dict[str, TenantMemory]:
    """Every tenant's committed fingerprints and state, as stored on the broker."""
    states = StateWriter(WRITER, serde, tenants)
    states.restore(read_states(kafka, serde))
    memories = {tenant: TenantMemory(tenant, states=states) for tenant in tenants}
    for raw_key, value in read_compacted(kafka, kafka.topic(topics.FINGERPRINTS), 120).items():
        tenant, _, key = raw_key.decode(errors="replace").partition("/")
        if tenant in memories and key:
            memories[tenant].fingerprints[key] = value.decode()
    for memory in memories.values():
        log.info(
            "tenant %s: restored %d fingerprints, cursor %s",
            memory.tenant,
            len(memory.fingerprints),
            memory.state.get("cursor"),
            extra={"tenant": memory.tenant},
        )
    return memories
