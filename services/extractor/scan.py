"""One scan of a tenant's source: read pages, emit what changed, commit in batches.

``diff`` reads the whole catalogue: new and changed rows go out as UPSERT and, once the
scan is complete, rows that vanished as DELETE. ``filter`` asks the source only for rows
changed since the watermark and emits those whose fingerprint is new (a source may
answer with more than what changed: Siesa's filter is day-granular, so the same rows
come back all day).

Every batch of pages is one Kafka transaction holding its rows, their fingerprints and
the tenant's new state, so the stored state never counts what was not committed. The
watermark (the greatest (change date, key) seen) and the reconcile time move only with
the last batch of a complete scan: a scan cut short is simply read again.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from confluent_kafka import Producer

from services.common import tracing
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.sizes import DEFAULT_MAX_BYTES
from services.common.stopper import Stopper
from services.common.tenants import Tenant
from services.extractor.commit import Committer, Transactions
from services.extractor.emit import Batch, Emitter
from services.extractor.memory import Cursor, TenantMemory
from services.sources.base import Source, SourceError

log = logging.getLogger(__name__)

ScanKind = Literal["diff", "filter"]


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScanResult:
    kind: ScanKind
    sync_id: str
    pages: int = 0
    seen: int = 0
    changed: int = 0
    deleted: int = 0
    rejected: int = 0
    complete: bool = False


@dataclass
class Scanner:
    tenant: Tenant
    source: Source
    producer: Producer | None  # its own transactions' (None: `transactions` given)
    serde: Serde
    kafka: KafkaSettings
    memory: TenantMemory
    max_field_length: int = 4000
    commit_rows: int = 1000
    commit_interval_s: float = 2.0
    max_bytes: int = DEFAULT_MAX_BYTES  # the most a record may hold (common/sizes.py)
    # The instance's transactions, shared by its tenants (services/extractor/commit.py);
    # None: the scanner commits through `producer` on a commit thread of its own.
    transactions: Transactions | None = None

    _committer: Committer = field(init=False)
    _emitter: Emitter = field(init=False)
    # The state the last batch handed over stores (None: none pending; memory's holds).
    _state: dict[str, Any] | None = None
    # Rows dead-lettered in committed batches (emit.py, `Emitter.refused`), and the
    # batches handed over since the last settle.
    _refused: set[bytes] = field(default_factory=set)
    _handed: list[Batch] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._own = self.transactions is None
        if self.transactions is None:
            if self.producer is None:
                raise ValueError("a Scanner needs a producer or transactions")
            self.transactions = Transactions(self.producer, name=f"commit-{self.tenant.id}")
        self._committer = Committer(self.transactions, self.kafka, self.memory)

    def close(self) -> None:
        if self._own and self.transactions is not None:
            self.transactions.close()
        self.source.close()

    def store_state(self, **update: Any) -> None:
        """Store the tenant's state with `update` alone, in a transaction of its own
        (through the same producer as its batches), kept once committed."""
        self._committer.store_state(**update)

    def scan(
        self, kind: ScanKind, *, reemit: bool = False, stopper: Stopper | None = None
    ) -> ScanResult:
        """One scan; `result.complete` is False when a stop cut it short (what was read
        so far is committed). Raises the source's errors; then the batch in hand is
        dropped and the next scan reads it again.

        Batches are committed by a helper thread while the scan reads on, in order
        (services/extractor/commit.py), so the broker's round trips overlap with the
        source's pages. The scan is a trace whose id is its sync id: its requests to the
        source carry it (each row read is a trace of its own, services/common/tracing.py)."""
        sync_id = uuid.uuid4().hex
        try:
            with tracing.active(tracing.of_id(sync_id)):
                return self._scan(kind, sync_id, reemit=reemit, stopper=stopper)
        except BaseException:
            try:
                self._settle()
            except Exception as exc:  # noqa: BLE001 - the scan's own error goes up
                log.warning("tenant %s: a batch was not committed: %s", self.tenant.id, exc)
            raise

    def _scan(
        self, kind: ScanKind, sync_id: str, *, reemit: bool, stopper: Stopper | None
    ) -> ScanResult:
        result = ScanResult(kind, sync_id)
        self._state = None
        started = time.monotonic()
        cursor = self.memory.cursor
        since = cursor.watermark if kind == "filter" else None
        begun = {"status": "syncing", "last_scan_started_at": now_utc()}
        seen: set[str] = set()
        watermark = cursor.watermark
        batch = Batch()
        committed_at = time.monotonic()
        emitter = self._emitter = Emitter(
            tenant=self.tenant.id,
            source=self.source,
            source_type=self.tenant.source.type,
            serde=self.serde,
            kafka=self.kafka,
            memory=self.memory,
            sync_id=result.sync_id,
            max_field_length=self.max_field_length,
            reemit=reemit,
            max_bytes=self.max_bytes,
            refused=self._refused,
        )
        emit = emitter.row
        for page in self.source.pages(since):
            result.pages += 1
            batch.pages += 1
            batch.seen += len(page)
            result.seen += len(page)
            inflight = self._committer.committing()
            for raw in page:
                key, changed_at = emit(raw, batch, inflight)
                if key is not None:
                    seen.add(key)
                    if changed_at and (watermark is None or (changed_at, key) > watermark):
                        watermark = (changed_at, key)
            result.changed, result.rejected = emitter.changed, emitter.rejected
            if stopper is not None and stopper.stopped:
                log.info("tenant %s: scan interrupted by shutdown", self.tenant.id)
                self._hand_off(batch, {**begun, "status": "idle"})
                self._settle()
                return result
            full = len(batch.outputs) >= self.commit_rows
            if full or time.monotonic() - committed_at >= self.commit_interval_s:
                if batch.outputs or batch.fingerprints:
                    self._hand_off(batch, begun)
                    batch = Batch()
                committed_at = time.monotonic()
        end_cursor = Cursor(watermark, cursor.reconciled_at_ms)
        self._settle()  # every fingerprint of this scan is in memory now
        if kind == "diff":
            self._deletions(seen, result, batch)
            end_cursor.reconciled_at_ms = int(time.time() * 1000)
            result.deleted = batch.deleted
        ended = now_utc()
        self._hand_off(
            batch,
            {
                **begun,
                "status": "idle",
                "cursor": end_cursor.dump(),
                "last_scan_ended_at": ended,
                "last_extract_at": ended,
                "last_error": None,
            },
        )
        self._settle()
        result.complete = True
        log.info(
            "tenant %s: %s scan done: %d pages, %d rows, %d changed, %d deleted, %d rejected, "
            "%.2fs",
            self.tenant.id,
            kind,
            result.pages,
            result.seen,
            result.changed,
            result.deleted,
            result.rejected,
            time.monotonic() - started,
            extra={"tenant": self.tenant.id, "sync_id": result.sync_id},
        )
        return result

    def _deletions(self, seen: set[str], result: ScanResult, batch: Batch) -> None:
        known = set(self.memory.fingerprints) | {
            k for k, fp in batch.fingerprints.items() if fp is not None
        }
        if not seen and known:
            raise SourceError(
                f"tenant {self.tenant.id}: the source returned no rows while {len(known)} "
                "were known; not taking the whole catalogue for deleted",
                tenant=self.tenant.id,
            )
        missing = known - seen
        if missing:
            # A row deleted in the source while the scan ran shifts the rows after it one
            # place back, so one of them can slip between two pages: only rows missing
            # from a second complete read are taken for deleted (that read emits nothing).
            again: set[str] = set()
            for page in self.source.pages():
                result.pages += 1
                batch.pages += 1
                again.update(map(self._emitter.key_of, page))
            missing -= again
        for key in sorted(missing):
            self._emitter.deleted(key, batch)

    def _hand_off(self, batch: Batch, update: dict[str, Any]) -> None:
        """Commit `batch` in the background, after the batches handed over before it;
        its state counts on from theirs."""
        base = self._state if self._state is not None else self.memory.state
        self._state = {**base, **batch.counters(base), **update}
        self._handed.append(batch)
        self._committer.hand_over(batch, self._state)

    def _settle(self) -> None:
        """Wait for every batch handed over; a commit error is raised here."""
        handed, self._handed = self._handed, []
        self._committer.settle()
        self._state = None  # memory holds what was stored
        for batch in handed:
            self._refused |= batch.refused
