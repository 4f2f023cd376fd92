"""A scan's rows as records: the extractor's per-row path.

Every row of every first scan goes through `Emitter.row`, so it does the least it can:
the row as text, in key order; its key checked; its `row` field encoded once (the bytes
both its fingerprint and its RawItem are made of), the fields the scan shares written
once per scan (`rows.raw_writer`); nothing copied that is not needed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from services.common import topics, tracing
from services.common.dlq import dead_letter_record
from services.common.records import OutRecord
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.extractor import rows
from services.extractor.memory import TenantMemory
from services.sources.base import Row, Source, SourceRow

MISSING: Any = object()


@dataclass
class Batch:
    """What the next transaction holds."""

    outputs: list[OutRecord] = field(default_factory=list)
    fingerprints: dict[str, str | None] = field(default_factory=dict)
    pages: int = 0
    seen: int = 0
    changed: int = 0
    deleted: int = 0
    rejected: int = 0

    def counters(self, state: dict[str, Any]) -> dict[str, Any]:
        return {
            "pages": state.get("pages", 0) + self.pages,
            "seen": state.get("seen", 0) + self.seen,
            "extracted": state["extracted"] + self.changed + self.deleted,
            "changed": state["changed"] + self.changed,
            "deleted": state.get("deleted", 0) + self.deleted,
            "dead_lettered": state["dead_lettered"] + self.rejected,
        }


class Emitter:
    """The records of one scan of one tenant's source."""

    def __init__(
        self,
        *,
        tenant: str,
        source: Source,
        source_type: str,
        serde: Serde,
        kafka: KafkaSettings,
        memory: TenantMemory,
        sync_id: str,
        max_field_length: int,
        reemit: bool,
    ) -> None:
        self.tenant = tenant
        self.source = source
        self.memory = memory
        self.sync_id = sync_id
        self.max_field_length = max_field_length
        self.reemit = reemit
        self.serde = serde
        self.kafka = kafka
        self.writer = rows.raw_writer(
            serde, tenant=tenant, source=source_type, origin=source.origin(), sync_id=sync_id
        )
        self.in_order = rows.KeyOrder()
        self.changed = self.rejected = 0
        self._raw_topic = kafka.topic(topics.RAW)
        self._prefix = f"{tenant}/"
        self._tenant = tenant.encode()
        self._sync = sync_id.encode()

    def row(
        self, raw: SourceRow, batch: Batch, inflight: list[Batch]
    ) -> tuple[str | None, str | None]:
        """Emit one row if new or changed (into `batch`; `inflight`: the batches handed
        over and not known committed, newest first); (its key, its change stamp)."""
        source = self.source
        row = self.in_order(source.row(raw))
        key = source.key(row)
        if not key or self._too_long(row):
            return self._reject(raw, row, key, batch), None
        encoded = self.writer.group(0, {"row": row})
        fp = rows.fingerprint_of(encoded)
        known = batch.fingerprints.get(key, MISSING)
        for earlier in inflight:
            if known is not MISSING:
                break
            known = earlier.fingerprints.get(key, MISSING)
        if known is MISSING:
            known = self.memory.fingerprints.get(key)
        if known != fp or self.reemit:
            if known is not None and not self.reemit and rows.legacy_fingerprint(row) == known:
                batch.fingerprints[key] = fp  # unchanged since the first release wrote it
            else:
                batch.changed += 1
                self.changed += 1
                batch.outputs.append(self._record(key, encoded, fp, "UPSERT"))
                batch.fingerprints[key] = fp
        return key, source.changed_at(row)

    def deleted(self, key: str, batch: Batch) -> None:
        """A DELETE for a row gone from the source (only its key is known)."""
        row = {self.source.key_name: key}
        batch.deleted += 1
        batch.outputs.append(self._record(key, self.writer.group(0, {"row": row}), "", "DELETE"))
        batch.fingerprints[key] = None

    def _record(self, key: str, encoded_row: bytes, fp: str, op: str) -> OutRecord:
        # Each version of a product read from the source is a trace of its own.
        trace = tracing.start()
        trace_id = trace.trace_id
        rest = {
            "key": key,
            "fingerprint": fp,
            "op": op,
            "extracted_at": int(time.time() * 1000),
            "trace_id": trace_id,
        }
        value = self.writer.join((encoded_row, self.writer.group(1, rest)))
        headers: list[tuple[str, str | bytes | None]] = [
            ("tenant", self._tenant),
            ("trace_id", trace_id.encode()),
            ("sync_id", self._sync),
            (tracing.TRACEPARENT, trace.traceparent.encode()),
        ]
        return OutRecord(self._raw_topic, (self._prefix + key).encode(), value, headers)

    def _too_long(self, row: Row) -> bool:
        limit = self.max_field_length
        for value in row.values():
            if value is not None and len(value) > limit:
                return True
        return False

    def _reject(self, raw: SourceRow, row: Row, key: str | None, batch: Batch) -> str | None:
        """Dead-letter a row that can't be emitted (the row as the source sent it, JSON);
        its key, if it has one (a row still in the source: never taken for deleted)."""
        try:
            rows.row_key(
                row,
                key,
                key_name=self.source.key_name,
                tenant=self.tenant,
                max_field_length=self.max_field_length,
            )
        except rows.RowError as exc:
            batch.rejected += 1
            self.rejected += 1
            batch.outputs.append(
                dead_letter_record(
                    key=f"{self.tenant}/{exc.key}".encode() if exc.key else None,
                    value=json.dumps(raw, ensure_ascii=False, default=str).encode(),
                    error=exc,
                    stage="extract",
                    dlq_topic=self.kafka.topic(topics.DLQ),
                    tenant=self.tenant,
                )
            )
            return exc.key
        raise AssertionError("a row refused by _too_long passes row_key")  # pragma: no cover
