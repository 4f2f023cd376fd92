"""A scan's batches into Kafka transactions, committed behind the scan.

Each batch of a scan is one transaction holding its rows, their fingerprints and the
tenant's new state; memory follows only once it is committed. A batch handed over is
produced and committed by a helper thread while the scan reads on: batches commit in
order, one transaction at a time (a tenant has one transactional producer), and the
scan waits for a commit only when `MAX_PENDING` batches are still committing, or at
its end. A transaction is open only while its batch is being produced and committed
(never while the source is read), so read_committed consumers of the same partitions
are held back for as short a time as before, and a slow source can't outlast the
transaction timeout.

A batch's state counts on from the state of the batch handed over before it; if a
commit fails, the scan fails at its next hand-over or at its end, the batches after it
are not committed (their transactions are aborted or never begun), and the next scan
reads them again.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from confluent_kafka import Producer

from services.common.kafka import produce_in_transaction
from services.common.settings import KafkaSettings
from services.extractor.emit import Batch
from services.extractor.memory import TenantMemory, fingerprint_record

# Batches handed over and still committing before the scan waits for the oldest.
MAX_PENDING = 2


class Committer:
    """The transactions of one tenant's scans (see the module's doc)."""

    def __init__(self, producer: Producer, kafka: KafkaSettings, memory: TenantMemory) -> None:
        self.producer = producer
        self.kafka = kafka
        self.memory = memory
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{memory.tenant}")
        self._pending: deque[tuple[Batch, Future[None]]] = deque()
        self._failed = False

    def committing(self) -> list[Batch]:
        """The batches handed over and not known committed yet, newest first."""
        return [batch for batch, _ in reversed(self._pending)]

    def hand_over(self, batch: Batch, state: dict[str, Any]) -> None:
        """Commit `batch`, with `state` as the tenant's state once it is stored, after
        the batches handed over before it."""
        self._pending.append((batch, self._pool.submit(self._commit, batch, state)))
        self.settle(keep=MAX_PENDING)

    def settle(self, keep: int = 0) -> None:
        """Wait until at most `keep` batches handed over are still committing, oldest
        first; a commit error is raised here (and the batches after it are dropped)."""
        while len(self._pending) > keep:
            _, future = self._pending.popleft()
            try:
                future.result()
            except BaseException:
                for _, later in self._pending:  # they saw the failure: nothing stored
                    later.exception()
                self._pending.clear()
                self._failed = False
                raise

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _commit(self, batch: Batch, state: dict[str, Any]) -> None:
        if self._failed:
            return  # a batch before this one failed: the next scan reads this one again
        memory, kafka = self.memory, self.kafka
        outputs = [
            *batch.outputs,
            *(
                fingerprint_record(kafka, memory.tenant, k, fp)
                for k, fp in batch.fingerprints.items()
            ),
            memory.states.record(kafka, state),
        ]
        try:
            produce_in_transaction(self.producer, outputs)
        except BaseException:
            self._failed = True  # set on this thread, before the next batch's turn
            raise
        for key, fp in batch.fingerprints.items():
            if fp is None:
                memory.fingerprints.pop(key, None)
            else:
                memory.fingerprints[key] = fp
        memory.states.keep(state)
