"""A scan's rows as records: the extractor's per-row path.

Every row of every first scan goes through `Emitter.row`, so it does the least it can:
the row as text, in key order; its key checked; its `row` field encoded once (the bytes
both its fingerprint and its RawItem are made of), the fields the scan shares written
once per scan (`rows.raw_writer`); nothing copied that is not needed.

Every row stands on its own: whatever one row's steps raise (normalize, key,
fingerprint, encode), that row is dead-lettered with the reason (tenant, key if known,
field) and the scan goes on. A row holding text that is not valid Unicode is refused
(docs/design.md, "Malformed text: refused, never repaired"), and so is one whose RawItem
would be over the size the raw topic takes; its dead letter is cut to fit the DLQ
(services/common/dlq.py).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

from services.common import topics, tracing
from services.common.dlq import dead_letter_record
from services.common.records import OutRecord
from services.common.serde import EncodeError, Serde
from services.common.settings import KafkaSettings
from services.common.sizes import DEFAULT_MAX_BYTES
from services.common.text import escaped, first_malformed, json_bytes
from services.extractor import rows
from services.extractor.memory import TenantMemory
from services.sources.base import Row, Source, SourceRow

log = logging.getLogger(__name__)

MISSING: Any = object()
MAX_REFUSED = 100_000


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
    # Marks of the rows dead-lettered (`Emitter.refused`).
    refused: set[bytes] = field(default_factory=set)

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
        max_bytes: int = DEFAULT_MAX_BYTES,
        refused: set[bytes] | None = None,
    ) -> None:
        self.tenant = tenant
        self.source = source
        self.memory = memory
        self.sync_id = sync_id
        self.max_field_length = max_field_length
        self.reemit = reemit
        self.max_bytes = max_bytes  # the most a record may hold (services/common/sizes.py)
        # Marks (row and reason) of rows dead-lettered by earlier scans, committed: a row
        # is dead-lettered once, not at every scan, until it or its reason changes (or
        # the process restarts, or more than MAX_REFUSED are remembered).
        self.refused = refused if refused is not None else set()
        if len(self.refused) > MAX_REFUSED:
            self.refused.clear()
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
        over and not known committed, newest first); (its key, its change stamp). A row
        that can't be emitted is dead-lettered: (its key if known, None)."""
        try:
            return self._emit(raw, batch, inflight)
        except rows.RowError as exc:
            return self._dead_letter(raw, exc, batch), None
        except Exception as exc:  # one row's bug never stops its tenant's scan
            key = self._raw_key(raw)
            log.exception("tenant %s: unexpected error on item %s", self.tenant, escaped(key or ""))
            error = rows.RowError(
                f"tenant {self.tenant}: item {key}: unexpected {type(exc).__name__}: {exc}",
                tenant=self.tenant,
                key=key,
            )
            error.error_class = "unexpected"
            return self._dead_letter(raw, error, batch), None

    def _emit(
        self, raw: SourceRow, batch: Batch, inflight: list[Batch]
    ) -> tuple[str | None, str | None]:
        source = self.source
        row = self.in_order(source.row(raw))
        key = source.key(row)
        if not key or self._too_long(row):
            self._refuse(row, key)
        try:
            encoded = self.writer.group(0, {"row": row})
        except (EncodeError, UnicodeEncodeError):
            self._refuse_malformed(row, key)
            raise
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
                record = self._record(key, encoded, fp, "UPSERT")
                self._check_size(record, key)
                batch.changed += 1
                self.changed += 1
                batch.outputs.append(record)
                batch.fingerprints[key] = fp
        return key, source.changed_at(row)

    def key_of(self, raw: SourceRow) -> str:
        """The key of a row read again (a diff's second read), "" when it has none; a row
        whose steps fail counts with the key the source sent, if any."""
        try:
            return self.source.key(self.source.row(raw)) or ""
        except Exception:  # noqa: BLE001 - dead-lettered by the first read: only its key counts
            return self._raw_key(raw) or ""

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

    def _refuse(self, row: Row, key: str | None) -> NoReturn:
        """Raise the RowError of a row with no key or an over-long field."""
        rows.row_key(
            row,
            key,
            key_name=self.source.key_name,
            tenant=self.tenant,
            max_field_length=self.max_field_length,
        )
        raise AssertionError("a row refused by _too_long passes row_key")  # pragma: no cover

    def _refuse_malformed(self, row: Row, key: str | None) -> None:
        """Raise the RowError of a row holding text that is not valid Unicode (a lone
        surrogate: bytes that were not UTF-8, or a ``\\ud800`` escape), naming the field."""
        for name, value in row.items():
            at = first_malformed(name) if value is None else first_malformed(name + value)
            if at is not None:
                where = "name" if at < len(name) else f"character {at - len(name)}"
                raise rows.RowError(
                    f"tenant {self.tenant}: item {key}: field {name}: text that is not valid "
                    f"Unicode ({where}); the row is refused, not repaired",
                    tenant=self.tenant,
                    key=key,
                )

    def _check_size(self, record: OutRecord, key: str) -> None:
        size = len(record.value or b"") + len(record.key or b"") + 100  # headers: < 100
        if size > self.max_bytes:
            raise rows.RowError(
                f"tenant {self.tenant}: item {key}: its RawItem would be {size} bytes, over "
                f"the {self.max_bytes} a record may hold",
                tenant=self.tenant,
                key=key,
            )

    def _raw_key(self, raw: SourceRow) -> str | None:
        value = raw.get(self.source.key_name) if isinstance(raw, dict) else None
        return value.strip() or None if isinstance(value, str) else None

    def _dead_letter(self, raw: SourceRow, exc: rows.RowError, batch: Batch) -> str | None:
        """Dead-letter a row that can't be emitted (the row as the source sent it, JSON,
        cut to fit the DLQ); its key, if it has one (a row still in the source: never
        taken for deleted)."""
        self.rejected += 1
        key = exc.key
        value = json_bytes(raw)
        mark = hashlib.blake2b(value + exc.message.encode(), digest_size=16).digest()
        if mark in self.refused:
            return key  # dead-lettered by an earlier scan, unchanged since
        batch.refused.add(mark)
        batch.rejected += 1
        batch.outputs.append(
            dead_letter_record(
                key=f"{self.tenant}/{escaped(key)}".encode() if key else None,
                value=value,
                error=exc,
                stage="extract",
                dlq_topic=self.kafka.topic(topics.DLQ),
                tenant=self.tenant,
                max_bytes=self.max_bytes,
            )
        )
        return key
