"""A scan's batches into Kafka transactions, streamed.

Each batch of a scan is one transaction holding its rows, their fingerprints and the
tenant's new state. The transaction is open while the batch is being read: the rows go
to the producer as the scan makes them (a page at a time), so the broker has most of
them when the scan hands the batch over, and committing it costs little more than the
commit itself. The fingerprints and the state go last, once the batch is handed over;
memory follows only once the transaction is committed.

One thread makes every producer call, in order: a tenant has one transactional producer,
and one transaction at a time. Rows of the next batch read while a batch commits wait
in that batch until its transaction opens; the scan does not wait for a commit unless
`MAX_PENDING` batches handed over are still committing. A batch abandoned (the scan
failed or stopped) has its transaction aborted: nothing of it is stored, the next scan
reads it again.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from services.common.errors import RetriableError
from services.common.kafka import produce_in_transaction
from services.common.records import OutRecord
from services.common.settings import KafkaSettings
from services.extractor.emit import Batch
from services.extractor.memory import TenantMemory, fingerprint_record

# How long a batch's stream waits for more rows before looking again (a wake-up is sent
# with every page; this only bounds a missed one).
IDLE_S = 0.5
# Batches handed over and still committing before the scan waits for the oldest.
MAX_PENDING = 2


class _Stream:
    """The records of one batch, as the scan appends them, until it is handed over."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.state: dict[str, Any] | None = None
        self.abandoned = False
        self._changed = threading.Condition()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify()

    def close(self, state: dict[str, Any]) -> None:
        with self._changed:
            self.state = state
            self._changed.notify()

    def abandon(self) -> None:
        with self._changed:
            self.abandoned = True
            self._changed.notify()

    def records(self, kafka: KafkaSettings, memory: TenantMemory) -> Iterator[OutRecord]:
        outputs = self.batch.outputs
        sent = 0
        while True:
            with self._changed:
                while sent == len(outputs) and self.state is None and not self.abandoned:
                    self._changed.wait(IDLE_S)
                if self.abandoned:
                    # Through the transaction's own error path: it is aborted.
                    raise KafkaException(KafkaError(KafkaError._PURGE_QUEUE, "batch abandoned"))
                state, until = self.state, len(outputs)
            yield from outputs[sent:until]
            sent = until
            if state is not None and sent == len(outputs):
                break
        for key, fp in self.batch.fingerprints.items():
            yield fingerprint_record(kafka, memory.tenant, key, fp)
        assert state is not None  # noqa: S101 - the loop ends only once closed
        yield memory.states.record(kafka, state)


class Committer:
    """The transactions of one tenant's scans (see the module's doc)."""

    def __init__(self, producer: Producer, kafka: KafkaSettings, memory: TenantMemory) -> None:
        self.producer = producer
        self.kafka = kafka
        self.memory = memory
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{memory.tenant}")
        self._open: tuple[_Stream, Future[None]] | None = None
        self._closed: deque[tuple[Batch, Future[None]]] = deque()

    def begin(self, batch: Batch) -> None:
        """Stream `batch` into a transaction of its own (after the one before it)."""
        stream = _Stream(batch)
        self._open = (stream, self._pool.submit(self._commit, stream))

    def more(self) -> None:
        """The open batch has new rows."""
        if self._open is not None:
            self._open[0].wake()

    def committing(self) -> list[Batch]:
        """The batches handed over and not known committed yet, newest first."""
        return [batch for batch, _ in reversed(self._closed)]

    def hand_over(self, state: dict[str, Any]) -> None:
        """Commit the open batch, with `state` as the tenant's state once it is stored
        (counted on from the state of the batch handed over before it)."""
        assert self._open is not None  # noqa: S101 - begin() comes first
        stream, future = self._open
        self._open = None
        stream.close(state)
        self._closed.append((stream.batch, future))
        self.settle(keep=MAX_PENDING)

    def settle(self, keep: int = 0) -> None:
        """Wait until at most `keep` batches handed over are still committing, oldest
        first; a commit error is raised here."""
        while len(self._closed) > keep:
            _, future = self._closed.popleft()
            future.result()

    def abandon(self) -> None:
        """Abort the open batch's transaction (if it began): nothing of it is stored."""
        if self._open is None:
            return
        stream, future = self._open
        self._open = None
        stream.abandon()
        try:
            future.result()
        except RetriableError:
            pass  # aborted, as asked

    def close(self) -> None:
        self.abandon()
        self._pool.shutdown(wait=True)

    def _commit(self, stream: _Stream) -> None:
        produce_in_transaction(self.producer, stream.records(self.kafka, self.memory))
        assert stream.state is not None  # noqa: S101 - the stream ends only once closed
        memory = self.memory
        for key, fp in stream.batch.fingerprints.items():
            if fp is None:
                memory.fingerprints.pop(key, None)
            else:
                memory.fingerprints[key] = fp
        memory.states.keep(stream.state)
