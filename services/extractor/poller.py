"""One tenant's polling loop: scan Siesa, emit what changed, in one transaction a scan.

This first cut is `diff` mode with fingerprints kept in memory: every poll reads the
whole catalogue, emits new and changed rows as UPSERT and rows gone from a complete
scan as DELETE. (After a restart the first scan re-emits everything; downstream upserts
are idempotent, so that costs time, not correctness.)
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Producer

from services.common.dlq import dead_letter_record
from services.common.errors import FatalError, SiesaSyncError
from services.common.kafka import produce_in_transaction
from services.common.records import OutRecord, trace_headers
from services.common.runloop import Stopper
from services.common.serde import Serde
from services.common.tenants import Tenant
from services.extractor import rows
from services.extractor.siesa import SiesaClient, SiesaError

log = logging.getLogger(__name__)


@dataclass
class ScanResult:
    pages: int = 0
    seen: int = 0
    changed: int = 0
    deleted: int = 0
    rejected: int = 0


@dataclass
class TenantPoller:
    tenant: Tenant
    client: SiesaClient
    producer: Producer
    serde: Serde
    raw_topic: str
    dlq_topic: str
    max_field_length: int = 4000
    max_backoff_s: float = 60.0
    fingerprints: dict[str, str] = field(default_factory=dict)

    def run(self, stopper: Stopper) -> None:
        failures = 0
        while not stopper.stopped:
            started = time.monotonic()
            try:
                self.scan_once(stopper)
                failures = 0
                delay = self.tenant.siesa.poll_interval_s - (time.monotonic() - started)
            except FatalError:
                raise
            except SiesaSyncError as exc:
                failures += 1
                delay = self._backoff(failures, exc.message, exc.error_class)
            except Exception as exc:  # this tenant's scan failed; the others go on
                failures += 1
                log.exception("tenant %s: unexpected error in a scan", self.tenant.id)
                delay = self._backoff(failures, f"{type(exc).__name__}: {exc}", "unexpected")
            stopper.wait(max(0.0, delay))
        self.client.close()

    def _backoff(self, failures: int, reason: str, error_class: str) -> float:
        delay = min(self.max_backoff_s, self.tenant.siesa.poll_interval_s * 2.0**failures)
        log.error(
            "tenant %s: scan failed (%d in a row), next try in %.0fs: %s",
            self.tenant.id,
            failures,
            delay,
            reason,
            extra={"tenant": self.tenant.id, "error_class": error_class},
        )
        return delay

    def scan_once(self, stopper: Stopper | None = None) -> ScanResult | None:
        """One complete scan, emitted in one transaction; None if stopped half-way (then
        nothing is emitted and the next scan starts over)."""
        sync_id = uuid.uuid4().hex
        started = time.monotonic()
        result = ScanResult()
        outputs: list[OutRecord] = []
        seen: dict[str, str] = {}
        for page in self.client.scan():
            if stopper is not None and stopper.stopped:
                log.info("tenant %s: scan interrupted by shutdown", self.tenant.id)
                return None
            result.pages += 1
            for raw in page:
                record = self._record(raw, sync_id, seen, result)
                if record is not None:
                    outputs.append(record)
        if not seen and self.fingerprints:
            raise SiesaError(
                f"tenant {self.tenant.id}: Siesa returned no rows while {len(self.fingerprints)} "
                "were known; not taking the whole catalogue for deleted",
                tenant=self.tenant.id,
            )
        for key in self.fingerprints.keys() - seen.keys():
            result.deleted += 1
            outputs.append(self._raw_item(key, {rows.KEY_FIELD: key}, "", "DELETE", sync_id))
        self._commit(outputs)
        self.fingerprints = seen
        log.info(
            "tenant %s: scan done: %d pages, %d rows, %d changed, %d deleted, %d rejected, %.2fs",
            self.tenant.id,
            result.pages,
            result.seen,
            result.changed,
            result.deleted,
            result.rejected,
            time.monotonic() - started,
            extra={"tenant": self.tenant.id, "sync_id": sync_id},
        )
        return result

    def _record(
        self, raw: dict[str, object], sync_id: str, seen: dict[str, str], result: ScanResult
    ) -> OutRecord | None:
        result.seen += 1
        row = rows.normalize(raw)
        try:
            key = rows.row_key(row, tenant=self.tenant.id, max_field_length=self.max_field_length)
        except rows.RowError as exc:
            result.rejected += 1
            if exc.key is not None:
                # Still in Siesa: keep what the target has, never take it for a deletion.
                seen[exc.key] = self.fingerprints.get(exc.key, "")
            return dead_letter_record(
                key=f"{self.tenant.id}/{exc.key}".encode() if exc.key else None,
                value=json.dumps(raw, ensure_ascii=False, default=str).encode(),
                error=exc,
                stage="extract",
                dlq_topic=self.dlq_topic,
                tenant=self.tenant.id,
            )
        fp = rows.fingerprint(row)
        seen[key] = fp
        if self.fingerprints.get(key) == fp:
            return None
        result.changed += 1
        return self._raw_item(key, row, fp, "UPSERT", sync_id)

    def _raw_item(
        self, key: str, row: dict[str, str | None], fp: str, op: str, sync_id: str
    ) -> OutRecord:
        trace_id = uuid.uuid4().hex
        value = self.serde.encode(
            "RawItem",
            {
                "tenant": self.tenant.id,
                "source_system": "siesa",
                "company": str(self.tenant.siesa.company),
                "consulta": self.tenant.siesa.consulta,
                "key": key,
                "row": row,
                "fingerprint": fp,
                "op": op,
                "sync_id": sync_id,
                "extracted_at": int(time.time() * 1000),
                "trace_id": trace_id,
            },
        )
        return OutRecord(
            topic=self.raw_topic,
            key=f"{self.tenant.id}/{key}".encode(),
            value=value,
            headers=trace_headers(self.tenant.id, trace_id, sync_id),
        )

    def _commit(self, outputs: list[OutRecord]) -> None:
        """All of a scan's records in one transaction: all land, or none do."""
        if outputs:
            produce_in_transaction(self.producer, outputs)
