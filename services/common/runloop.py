"""The one consume-process-produce loop every consuming service runs.

A service gives it a batch handler (usually `per_record(handle)`); the loop polls a
batch, runs the handler, dead-letters the records the handler could not take
(`SkippableError`), produces the outputs, and only then commits the batch's offsets:
in one Kafka transaction when `transactional` (exactly once), else after the outputs
are acknowledged (at least once). A `RetriableError` rewinds the batch and backs off; a
`FatalError` stops the loop without committing. SIGTERM/SIGINT finish the batch in
hand, commit it and leave the group.

Offsets go past the transaction markers once a partition's end is reached, so lag is
0 for every tool once the stage is idle; an offset lost to retention stops the stage
(or, if so set, goes on from the earliest record) loudly (services/common/offsets.py);
Kafka refusing an operation is reported (services/common/kafka_auth.py) and retried.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.common import health, kafka_auth, logs, metrics
from services.common.alerts import Alerter
from services.common.assignment import Assignment
from services.common.batch_stats import BatchStats
from services.common.dlq import dead_letter
from services.common.errors import FatalError, RetriableError, SkippableError, SyncError
from services.common.kafka import RENEWABLE, produce_all, produce_in_transaction, renewed
from services.common.offsets import (
    Commits,
    Ends,
    LostOffsets,
    OffsetsLost,
    first_offsets,
    merge,
    next_offsets,
)
from services.common.reachability import FATAL
from services.common.records import OutRecord, coordinates
from services.common.sizes import DEFAULT_MAX_BYTES
from services.common.stopper import Stopper
from services.common.tenants import tenant_of_key
from services.common.tracing import record_fields

log = logging.getLogger(__name__)


# The longest a batch's commit may wait on a slow broker through the timeouts of its
# calls (services/common/kafka.py: offsets 15 s, commit 5 x 60 s, abort 30 s): the
# heartbeat's grace for it. (A broker known to be down stops liveness counting anyway.)
BROKER_CALLS_S = 360.0
FLUSH_S = 5.0


@dataclass
class BatchResult:
    outputs: list[OutRecord] = field(default_factory=list)
    failures: list[tuple[Message, SyncError]] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)  # what the handler did, by kind


BatchHandler = Callable[[list[Message]], BatchResult]


class UnexpectedError(SkippableError):
    """A bug met on one record: it goes to the DLQ with the error, so that a poison record
    never blocks its partition; the traceback is logged."""

    error_class = "unexpected"


def unexpected(exc: Exception, what: str) -> UnexpectedError:
    log.error("unexpected error on %s", what, exc_info=exc)
    return UnexpectedError(f"unexpected {type(exc).__name__}: {exc}")


def per_record(handle: Callable[[Message], Sequence[OutRecord]]) -> BatchHandler:
    """A batch handler that runs `handle` on each record; a SkippableError fails that one.
    RetriableError and FatalError stop the batch; any other error is a bug and is
    dead-lettered with that record."""

    def handle_batch(batch: list[Message]) -> BatchResult:
        result = BatchResult()
        for msg in batch:
            topic, partition, offset = coordinates(msg)
            try:
                with logs.context(tenant=tenant_of_key(msg.key()), **record_fields(msg)):
                    outputs = handle(msg)
                result.outputs.extend(outputs)
                result.counts["out"] += len(outputs)
            except SkippableError as exc:
                result.failures.append((msg, exc))
            except (RetriableError, FatalError):
                raise
            except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason, not lost
                result.failures.append((msg, unexpected(exc, f"{topic}[{partition}]@{offset}")))
        return result

    return handle_batch


@dataclass
class RunLoop:
    stage: str
    consumer: Consumer
    producer: Producer
    topics: list[str]
    handler: BatchHandler
    dlq_topic: str
    stopper: Stopper
    transactional: bool = False
    batch_size: int = 500
    poll_timeout: float = 0.5
    max_backoff: float = 30.0
    alerter: Alerter | None = None
    alert_dlq_threshold: int = 100
    # For a handler that holds records across batches (the loader parks the records of a
    # tenant whose target is down, and the partition flows on): the lowest offset it
    # still holds per (topic, partition). Offsets are committed only below it, and the
    # handler is called with an empty batch while it holds anything, to finish them.
    holds: Callable[[], dict[tuple[str, int], int]] | None = None
    # Told which partitions left this consumer, so such a handler drops what it holds of
    # them (the new owner reads them again from the committed offset).
    on_revoked: Callable[[list[TopicPartition]], None] | None = None
    # Told which partitions this consumer was given, before any of their records is
    # handled (the loader reads back what it keeps of them: the target ids).
    on_assigned: Callable[[list[TopicPartition]], None] | None = None
    # Told that a batch is read again (its outputs were not committed), once the consumer
    # was sought back to its first records: such a handler takes again what it took of
    # it, and may seek further back (the loader passes over records read again).
    on_rewound: Callable[[list[Message]], None] | None = None
    # Makes a new transactional producer (same transactional id) when the current one is
    # wedged (kafka.ProducerWedged); without it, a wedged producer stops the service.
    new_producer: Callable[[], Producer] | None = None
    dlq_max_bytes: int = DEFAULT_MAX_BYTES  # the most a dead letter holds (sizes.py)
    # The consumer's group (for messages) and what to do when its committed offsets
    # were deleted by retention (KAFKA_LOST_OFFSETS: "stop" or "earliest").
    group: str = ""
    lost_offsets: str = "stop"
    _failures_in_row: int = 0
    _wedged: str = ""  # why the producer must be replaced before the next transaction
    _stats: BatchStats = field(init=False)
    _commits: Commits = field(default_factory=Commits)
    _closed: bool = False

    def __post_init__(self) -> None:
        self._stats = BatchStats(self.stage, self.alerter, self.alert_dlq_threshold)
        # Liveness: a beat per poll and per batch step; while a handler works, every
        # call its targets answer counts as progress (the loader's upserts).
        self._heartbeat = health.current().heartbeat(
            f"{self.stage} loop", progress=metrics.calls_made
        )
        self._held = Assignment(self.stage, self.consumer)  # what is assigned: readiness, lag

    def run(self) -> None:
        with logs.context(stage=self.stage):
            self._run()

    def _run(self) -> None:
        refusals = kafka_auth.current()
        refusals.alerter = refusals.alerter or self.alerter
        self._held.waiting()
        self.consumer.subscribe(
            self.topics, on_assign=self._assign, on_revoke=self._revoked, on_lost=self._lost
        )
        metrics.CONSUMER_EVICTIONS.labels(stage=self.stage).inc(0)  # exported from the start
        log.info("%s consuming %s", self.stage, ", ".join(self.topics))
        self._held.start()
        try:
            try:
                self._consume(LostOffsets(self.stage, self.lost_offsets, self.alerter))
            except OffsetsLost as exc:
                # Stopped, not exited: /readyz keeps saying why (no crash loop), and no
                # heartbeat is expected any more (_close), until SIGTERM.
                self._close()
                log.error("%s; waiting to be stopped", exc.message)  # noqa: TRY400
                while not self.stopper.wait(3600):
                    pass
                raise
        except FatalError as exc:
            health.current().report(FATAL, exc.message)
            raise
        finally:
            self._close()

    def _consume(self, lost: LostOffsets) -> None:
        while not self.stopper.stopped:
            self._heartbeat.beat()
            batch, ends = self._poll(lost)
            if batch or (self.holds is not None and self.holds()):
                self._process(batch, ends)
            elif ends:
                self._commit_ends(ends)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            state = health.current()
            state.set_ready(False)
            state.forget(self._heartbeat.name)
            self._held.stop()
            self.producer.flush(10)
            self.consumer.close()
            log.info("%s stopped", self.stage)

    def _poll(self, lost: LostOffsets) -> tuple[list[Message], Ends]:
        """What the consumer holds now, up to a batch; if nothing, wait up to
        `poll_timeout` for the first record and take what arrived with it. (One
        `consume(batch_size, timeout)` would hold a trickle of changes back for the
        whole timeout at every stage; under load the prefetched queue fills batches.)
        Also the partitions whose end was reached, at their end offset."""
        msgs = self.consumer.consume(self.batch_size, 0)
        if not msgs:
            msgs = self.consumer.consume(1, self.poll_timeout)
            if msgs and self.batch_size > 1:
                msgs += self.consumer.consume(self.batch_size - 1, 0)
        batch: list[Message] = []
        ends: Ends = {}
        for msg in msgs:
            error = msg.error()
            if error is None:
                batch.append(msg)
            elif error.code() == KafkaError._PARTITION_EOF:
                ends[msg.topic() or "", msg.partition() or 0] = msg.offset() or 0
            elif error.code() == KafkaError._AUTO_OFFSET_RESET:
                lost.handle(self.consumer, msg)
            elif kafka_auth.is_refusal(error):
                name = f"topic {msg.topic()}" if msg.topic() else f"group {self.group or '?'}"
                kafka_auth.current().refused(error, "READ", name)
            elif error.fatal():
                raise FatalError(f"consumer failed: {error.str()}")
            else:
                log.warning("consumer: %s", error.str())
        return batch, ends

    def _commit_ends(self, ends: Ends) -> None:
        """No records, but partitions whose end is past what was committed (transaction
        markers): commit those ends, in a transaction when the loop is transactional."""
        self._process_timed([], ends)
        self._held.processed(merge([], ends))

    def _process(self, batch: list[Message], ends: Ends) -> None:
        with metrics.BATCH_SECONDS.labels(stage=self.stage).time():
            self._process_timed(batch, ends)
        # Lag per partition of the batch, from the cached high watermarks (and refreshed
        # from the broker meanwhile: services/common/assignment.py).
        positions = merge(next_offsets(batch), ends)
        self._held.processed(positions)
        self._stats.lag(self.consumer, positions)

    def _process_timed(self, batch: list[Message], ends: Ends) -> None:
        try:
            result = self.handler(batch) if batch or self.holds else BatchResult()
            outputs = result.outputs + [
                dead_letter(msg, err, self.stage, self.dlq_topic, self.dlq_max_bytes)
                for msg, err in result.failures
            ]
            for msg, err in result.failures:
                topic, partition, offset = coordinates(msg)
                log.warning(
                    "dead-lettered %s[%d]@%d: %s",
                    topic,
                    partition,
                    offset,
                    err.message,
                    extra={
                        **record_fields(msg),
                        "tenant": err.tenant or tenant_of_key(msg.key()),
                        "error_class": err.error_class,
                    },
                )
            self._heartbeat.beat(grace_s=BROKER_CALLS_S)
            if self.transactional:
                self._commit_in_transaction(batch, outputs, ends)
            else:
                self._produce_then_commit(batch, outputs, ends)
        except RetriableError as exc:
            self._rewind(batch)
            self._failures_in_row += 1
            if exc.retry_after is not None:
                delay = min(exc.retry_after, self.max_backoff)
            else:
                backoff = min(self.max_backoff, 0.5 * 2 ** min(self._failures_in_row, 6))
                delay = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
            log.warning("%s: %s; retrying the batch in %.1fs", self.stage, exc.message, delay)
            self._heartbeat.beat(grace_s=delay)
            self.stopper.wait(delay)
            return
        self._failures_in_row = 0
        if not batch and not result.counts and not result.failures:
            return
        self._stats.count(batch, result.outputs, result.failures)
        log.info(
            "%s: batch of %d done: %s, %d dead-lettered",
            self.stage,
            len(batch),
            ", ".join(f"{n} {kind}" for kind, n in sorted(result.counts.items())) or "nothing out",
            len(result.failures),
            extra={"batch": len(batch), "dead_lettered": len(result.failures)},
        )

    def _commit_in_transaction(
        self, batch: list[Message], outputs: list[OutRecord], ends: Ends
    ) -> None:
        offsets = self._commits.due(batch, ends, self.holds)
        if not outputs and not offsets:
            return
        if self._wedged:  # the producer is stuck in a call: only a new one goes on
            self._renew(self._wedged)
        try:
            produce_in_transaction(
                self.producer, outputs, offsets, self.consumer.consumer_group_metadata()
            )
        except RENEWABLE as exc:  # stuck, or failed unfenced: a new producer goes on
            self._renew(exc.message)
            raise RetriableError(exc.message) from exc
        self._done(offsets, batch)

    def _renew(self, why: str) -> None:
        log.warning("%s: %s; replacing the transactional producer", self.stage, why)
        self._wedged = why  # until a new one is made (the broker away: retried, no exit)
        self.producer = renewed(self.new_producer, why)
        self._wedged = ""

    def _produce_then_commit(
        self, batch: list[Message], outputs: list[OutRecord], ends: Ends
    ) -> None:
        failed: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, msg: Message | None) -> None:
            if err is not None:
                failed.append(err)
                if kafka_auth.is_refusal(err) and msg is not None:
                    kafka_auth.current().refused(err, "WRITE", f"topic {msg.topic()}")

        produce_all(self.producer, outputs, on_delivery)
        # Wait for every delivery: giving up on a slow broker and redoing the batch would
        # write the outputs twice once the queued ones go out after all.
        while self._flushed_not_all():
            if self.stopper.stopped:
                raise FatalError("stopped while outputs were still undelivered; not committing")
            log.warning("%s: waiting for the broker to take the batch's outputs", self.stage)
        if any(err.fatal() for err in failed):
            raise FatalError(f"producer failed: {next(e for e in failed if e.fatal()).str()}")
        if failed:
            raise RetriableError(f"{len(failed)} outputs not delivered: {failed[0].str()}")
        offsets = self._commits.due(batch, ends, self.holds)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0]
            if kafka_auth.is_refusal(error):
                kafka_auth.current().refused(error, "READ", f"group {self.group or '?'}")
            # The group moved on (rebalance): the new owner re-reads these records,
            # which is harmless because every write downstream is idempotent.
            log.warning("%s: offsets not committed: %s", self.stage, error.str())
            return
        self._done(offsets, batch)

    def _flushed_not_all(self) -> bool:
        self._heartbeat.beat(grace_s=FLUSH_S)  # waiting on the broker is no stall
        return bool(self.producer.flush(FLUSH_S) > 0)

    def _done(self, offsets: list[TopicPartition], batch: list[Message]) -> None:
        self._commits.committed(offsets)
        if not self.transactional:  # (produce_in_transaction says it for transactions)
            written = ("WRITE",) if not batch else ()
            kafka_auth.current().succeeded(except_operations=written)

    def _assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.on_assigned is not None:
            self.on_assigned(partitions)
        self._held.assign(partitions)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a handover: the group evicted this consumer."""
        metrics.CONSUMER_EVICTIONS.labels(stage=self.stage).inc()
        log.warning("%s lost %d partitions: evicted from its group", self.stage, len(partitions))
        self._revoked(consumer, partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _log_revoke(consumer, partitions)
        self._held.revoke(partitions)
        self._commits.revoked(partitions)
        if self.on_revoked is not None:
            self.on_revoked(partitions)

    def _rewind(self, batch: list[Message]) -> None:
        for tp in first_offsets(batch):
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                log.warning("could not rewind %s[%d]: %s", tp.topic, tp.partition, exc)
        if self.on_rewound is not None:
            self.on_rewound(batch)


def _log_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    log.info("revoked %s", [f"{p.topic}[{p.partition}]" for p in partitions])
