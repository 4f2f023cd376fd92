"""Scans' batches into Kafka transactions: one transactional producer and one commit
thread for every tenant of an extractor instance.

Each batch of a scan holds its rows, their fingerprints and the tenant's new state;
memory follows only once the transaction holding it is committed. A scan hands its
batches to its tenant's `Committer` (a lane) and reads on; the lanes of all tenants feed
one `Transactions` queue, whose thread commits what is waiting, several tenants' batches
in one transaction when several are waiting (at most ``max_rows`` records, one batch of
a tenant per transaction, so a tenant's batches stay apart). A tenant's batches commit
in order; its scan waits for a commit only when `MAX_PENDING` of its
batches are still committing, or at its end. A transaction is open only while its
batches are being produced and committed (never while a source is read), so
read_committed readers are held back briefly and a slow source can't outlast the
transaction timeout (kept well under 30 s: a killed instance's open transaction is
aborted by the coordinator soon, and readers move on).

Fencing (KIP-447): every transaction also sends the instance's positions on the
partitions of `sync.tenants.v1` it owns, with its consumer's group metadata
(`Fence`). An instance that was put out of the group (a zombie: stalled past its
session, its tenants moved on) has its transaction refused (unknown member, stale
generation) and aborted: it can't commit rows of a tenant it lost. A rebalance in
progress refuses a transaction the same way; either way the batches in it fail, and
their scans read them again, so nothing is lost or doubled.

A batch's state counts on from the state of the batch handed over before it; if a
commit fails, the scan fails at its next hand-over or at its end, the batches after it
are not committed (their transactions are aborted or never begun), and the next scan
reads them again. A producer that failed for good without being fenced (ProducerFailed,
ProducerWedged) is replaced by a new one with the same transactional id; a fenced one
(another instance took our transactional id) stops the instance.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from services.common.errors import FatalError, RetriableError
from services.common.kafka import RENEWABLE, produce_in_transaction, renewed
from services.common.records import OutRecord
from services.common.settings import KafkaSettings
from services.extractor.emit import Batch
from services.extractor.memory import TenantMemory, fingerprint_record

log = logging.getLogger(__name__)

# Batches of one tenant handed over and still committing before its scan waits.
MAX_PENDING = 2
# The most records one transaction holds when several batches are waiting.
MAX_ROWS = 20_000
# A transaction refused for its group membership is tried again once a new one is
# known (a rebalance), this many times in all, waiting this long for it.
GROUP_ATTEMPTS = 3
GROUP_WAIT_S = 5.0
GROUP_REFUSALS = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
    }
)


def _code(exc: BaseException) -> int | None:
    cause = exc.__cause__
    if isinstance(cause, KafkaException) and cause.args:
        return int(cause.args[0].code())
    return None


class Fence(Protocol):
    """What fences an instance's transactions: its group membership."""

    def offsets(self) -> list[TopicPartition]:
        """The positions on the partitions it owns (empty: it owns none)."""

    def metadata(self) -> Any:
        """Its consumer's group metadata (member id, generation)."""

    @property
    def epoch(self) -> int:
        """Counts the changes of membership seen (each may bring a new generation)."""

    def wait_changed(self, epoch: int, timeout: float) -> bool:
        """Wait for a change after `epoch`; False after `timeout`."""


@dataclass
class _Request:
    outputs: list[OutRecord]
    committed: Callable[[], None]
    lane: Committer | None
    future: Future[None] = field(default_factory=Future)


class Transactions:
    """The one transactional producer of an instance and its commit thread (see the
    module's doc). `fence` None: no group to fence by (one tenant's tools and tests)."""

    def __init__(
        self,
        producer: Producer,
        *,
        fence: Fence | None = None,
        new_producer: Callable[[], Producer] | None = None,
        on_fatal: Callable[[FatalError], None] | None = None,
        max_rows: int = MAX_ROWS,
        name: str = "commit",
    ) -> None:
        self.producer: Producer | None = producer
        self.fence = fence
        self.new_producer = new_producer
        self.on_fatal = on_fatal
        self.max_rows = max_rows
        self.committed = 0  # transactions committed (for tests and logs)
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(
        self, outputs: list[OutRecord], committed: Callable[[], None], lane: Committer | None
    ) -> Future[None]:
        """Commit `outputs` soon; `committed` runs (on the commit thread) once they are."""
        request = _Request(outputs, committed, lane)
        self._queue.put(request)
        return request.future

    def store_state(self, kafka: KafkaSettings, memory: TenantMemory, **update: Any) -> None:
        """Store the tenant's state with `update` in a transaction of its own (behind the
        batches waiting), kept in memory once committed; errors as the commit's."""
        states = memory.states
        state = states.changed(memory.tenant, **update)
        record = states.record(kafka, state)
        self.submit([record], lambda: states.keep(state), None).result()

    def close(self) -> None:
        """Commit what was submitted, then end the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        held: deque[_Request] = deque()  # a second batch of a lane: the next transaction's
        last = False
        while not last or held:
            first = held.popleft() if held else self._queue.get()
            if first is None:
                last = True
                continue
            group, rows = [first], len(first.outputs)
            lanes = {id(first.lane)} if first.lane is not None else set()
            while rows < self.max_rows and not last:
                try:
                    more = held.popleft() if held else self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    last = True
                elif more.lane is not None and id(more.lane) in lanes:
                    held.append(more)  # one batch of a tenant per transaction, in order
                    break
                else:
                    lanes.add(id(more.lane))
                    group.append(more)
                    rows += len(more.outputs)
            self._commit(group)

    def _commit(self, group: list[_Request]) -> None:
        live: list[_Request] = []
        for request in group:
            if request.lane is not None and request.lane.failed:
                # An earlier batch of this tenant failed: its scan reads this one again.
                request.future.set_exception(RetriableError("an earlier batch failed"))
            else:
                live.append(request)
        if not live:
            return
        try:
            self._transaction([o for r in live for o in r.outputs])
        except BaseException as exc:  # noqa: BLE001 - every batch in it fails with it: their scans raise it
            for request in live:
                if request.lane is not None:
                    request.lane.failed = True  # before the next transaction is built
                request.future.set_exception(exc)
            if isinstance(exc, FatalError) and self.on_fatal is not None:
                self.on_fatal(exc)
            return
        self.committed += 1
        for request in live:
            request.committed()
            request.future.set_result(None)

    def _transaction(self, outputs: list[OutRecord]) -> None:
        if self.producer is None:  # the last one failed and none could be made yet
            self.producer = renewed(self.new_producer, "the transactional producer failed")
        fence = self.fence
        for attempt in range(1, GROUP_ATTEMPTS + 1):
            offsets, metadata, epoch = None, None, 0
            if fence is not None:
                epoch = fence.epoch
                offsets = fence.offsets()
                if not offsets:
                    raise RetriableError("this instance owns no tenants partition: not committing")
                metadata = fence.metadata()
            try:
                produce_in_transaction(self.producer, outputs, offsets, metadata)
            except RENEWABLE as exc:
                log.warning("%s: replacing the transactional producer", exc.message)
                self.producer = None
                raise RetriableError(exc.message) from exc
            except RetriableError as exc:
                # Refused for the membership it carried: a rebalance moved the group on
                # (then our next callback brings the new generation: try again, the
                # transaction was aborted) or we are out of it (a zombie: no callback
                # comes in time, and the batches fail).
                if (
                    fence is None
                    or attempt == GROUP_ATTEMPTS
                    or _code(exc) not in GROUP_REFUSALS
                    or not fence.wait_changed(epoch, GROUP_WAIT_S)
                ):
                    raise
                log.info("transaction refused (%s): again with the group's new generation", exc)
            else:
                return


class Committer:
    """One tenant's lane into `Transactions` (see the module's doc)."""

    def __init__(self, transactions: Transactions, kafka: KafkaSettings, memory: TenantMemory):
        self.transactions = transactions
        self.kafka = kafka
        self.memory = memory
        self.failed = False  # set by the commit thread: a batch of this lane failed
        self._pending: deque[tuple[Batch, Future[None]]] = deque()

    def committing(self) -> list[Batch]:
        """The batches handed over and not known committed yet, newest first."""
        return [batch for batch, _ in reversed(self._pending)]

    def hand_over(self, batch: Batch, state: dict[str, Any]) -> None:
        """Commit `batch`, with `state` as the tenant's state once it is stored, after
        the batches handed over before it."""
        memory, kafka = self.memory, self.kafka
        outputs = [
            *batch.outputs,
            *(
                fingerprint_record(kafka, memory.tenant, k, fp)
                for k, fp in batch.fingerprints.items()
            ),
            memory.states.record(kafka, state),
        ]

        def committed() -> None:
            for key, fp in batch.fingerprints.items():
                if fp is None:
                    memory.fingerprints.pop(key, None)
                else:
                    memory.fingerprints[key] = fp
            memory.states.keep(state)

        self._pending.append((batch, self.transactions.submit(outputs, committed, self)))
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
                self.failed = False
                raise

    def store_state(self, **update: Any) -> None:
        """The tenant's state with `update`, stored alone (see Transactions.store_state)."""
        self.transactions.store_state(self.kafka, self.memory, **update)
