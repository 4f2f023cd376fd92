"""The one consume-process-produce loop every consuming service runs.

A service gives it a batch handler (usually `per_record(handle)`); the loop polls a
batch, runs the handler, dead-letters the records the handler could not take
(`SkippableError`), produces the outputs, and only then commits the batch's offsets:
in one Kafka transaction when `transactional` (exactly once), else after the outputs
are acknowledged (at least once). A `RetriableError` rewinds the batch and backs off; a
`FatalError` stops the loop without committing. SIGTERM/SIGINT finish the batch in
hand, commit it and leave the group.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from services.common import health, logs, metrics
from services.common.alerts import Alerter
from services.common.assignment import Assignment
from services.common.dlq import dead_letter
from services.common.errors import FatalError, RetriableError, SkippableError, SyncError
from services.common.kafka import ProducerWedged, produce_all, produce_in_transaction
from services.common.reachability import FATAL
from services.common.records import OutRecord, coordinates, header_value
from services.common.stopper import Stopper
from services.common.tenants import tenant_of_key
from services.common.topics import STATE
from services.common.tracing import TRACE_ID
from services.product import NAME

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
                with logs.context(
                    tenant=tenant_of_key(msg.key()),
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    trace_id=header_value(msg, TRACE_ID),
                ):
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


def next_offsets(batch: Sequence[Message]) -> list[TopicPartition]:
    """The offsets to commit after `batch`: one past the last record per partition."""
    last: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = coordinates(msg)
        last[topic, partition] = max(last.get((topic, partition), -1), offset)
    return [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]


def first_offsets(batch: Sequence[Message]) -> list[TopicPartition]:
    first: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = coordinates(msg)
        first[topic, partition] = min(first.get((topic, partition), offset), offset)
    return [TopicPartition(t, p, o) for (t, p), o in first.items()]


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
    # Makes a new transactional producer (same transactional id) when the current one is
    # wedged (kafka.ProducerWedged); without it, a wedged producer stops the service.
    new_producer: Callable[[], Producer] | None = None
    _failures_in_row: int = 0
    _dead_lettered: Counter[str] = field(default_factory=Counter)
    _positions: dict[tuple[str, int], int] = field(default_factory=dict)
    _committed: dict[tuple[str, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Liveness: a beat per poll and per batch step; while a handler works, every
        # call its targets answer counts as progress (the loader's upserts).
        self._heartbeat = health.current().heartbeat(
            f"{self.stage} loop", progress=metrics.calls_made
        )
        self._held = Assignment(self.stage, self.consumer)

    def run(self) -> None:
        with logs.context(stage=self.stage):
            self._run()

    def _run(self) -> None:
        state = health.current()
        self._held.waiting()
        self.consumer.subscribe(
            self.topics, on_assign=self._assign, on_revoke=self._revoked, on_lost=self._lost
        )
        metrics.CONSUMER_EVICTIONS.labels(stage=self.stage).inc(0)  # exported from the start
        log.info("%s consuming %s", self.stage, ", ".join(self.topics))
        self._held.start()
        try:
            while not self.stopper.stopped:
                self._heartbeat.beat()
                batch = self._poll()
                if batch or (self.holds is not None and self.holds()):
                    self._process(batch)
        except FatalError as exc:
            state.report(FATAL, exc.message)
            raise
        finally:
            state.set_ready(False)
            state.forget(self._heartbeat.name)
            self._held.stop()
            self.producer.flush(10)
            self.consumer.close()
            log.info("%s stopped", self.stage)

    def _poll(self) -> list[Message]:
        """What the consumer holds now, up to a batch; if nothing, wait up to
        `poll_timeout` for the first record and take what arrived with it. (One
        `consume(batch_size, timeout)` would hold a trickle of changes back for the
        whole timeout at every stage; under load the prefetched queue fills batches.)"""
        msgs = self.consumer.consume(self.batch_size, 0)
        if not msgs:
            msgs = self.consumer.consume(1, self.poll_timeout)
            if msgs and self.batch_size > 1:
                msgs += self.consumer.consume(self.batch_size - 1, 0)
        batch = []
        for msg in msgs:
            error = msg.error()
            if error is None:
                batch.append(msg)
            elif error.fatal():
                raise FatalError(f"consumer failed: {error.str()}")
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", error.str())
        return batch

    def _process(self, batch: list[Message]) -> None:
        with metrics.BATCH_SECONDS.labels(stage=self.stage).time():
            self._process_timed(batch)
        self._record_lag(batch)

    def _process_timed(self, batch: list[Message]) -> None:
        try:
            result = self.handler(batch)
            outputs = result.outputs + [
                dead_letter(msg, err, stage=self.stage, dlq_topic=self.dlq_topic)
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
                        "tenant": err.tenant or tenant_of_key(msg.key()),
                        "trace_id": header_value(msg, TRACE_ID),
                        "error_class": err.error_class,
                        "topic": topic,
                        "partition": partition,
                        "offset": offset,
                    },
                )
            self._heartbeat.beat(grace_s=BROKER_CALLS_S)
            if self.transactional:
                self._commit_in_transaction(batch, outputs)
            else:
                self._produce_then_commit(batch, outputs)
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
        self._count(batch, result)
        log.info(
            "%s: batch of %d done: %s, %d dead-lettered",
            self.stage,
            len(batch),
            ", ".join(f"{n} {kind}" for kind, n in sorted(result.counts.items())) or "nothing out",
            len(result.failures),
            extra={"batch": len(batch), "dead_lettered": len(result.failures)},
        )

    def _count(self, batch: list[Message], result: BatchResult) -> None:
        """Records in, out and dead-lettered per tenant, for /metrics."""
        counts: Counter[tuple[str | None, str]] = Counter()
        for msg in batch:
            counts[tenant_of_key(msg.key()), "in"] += 1
        for out in result.outputs:
            if not out.topic.endswith(STATE):  # state records are bookkeeping, not output
                counts[tenant_of_key(out.key), "out"] += 1
        for _msg, err in result.failures:
            counts[err.tenant or tenant_of_key(_msg.key()), "dead_lettered"] += 1
        for (tenant, outcome), n in counts.items():
            metrics.count_records(self.stage, tenant, outcome, n)
            if outcome == "dead_lettered" and tenant:
                self._alert_on_dead_letters(tenant, n)
            if outcome == "out" and tenant:
                metrics.mark_success(tenant, self.stage)

    def _alert_on_dead_letters(self, tenant: str, n: int) -> None:
        """One alert when a tenant's dead letters (since start) pass the threshold."""
        self._dead_lettered[tenant] += n
        if self.alerter is not None and self._dead_lettered[tenant] >= self.alert_dlq_threshold:
            self.alerter.fire(
                tenant,
                "dlq_growing",
                f"{self._dead_lettered[tenant]} records dead-lettered at the {self.stage} "
                f"stage since start (threshold {self.alert_dlq_threshold}); "
                f"see `{NAME} dlq list --tenant {tenant}`",
            )

    def _record_lag(self, batch: list[Message]) -> None:
        """Lag per partition seen in the batch, from the cached high watermarks (and
        refreshed from the broker meanwhile: services/common/assignment.py)."""
        self._held.processed(next_offsets(batch))
        for tp in next_offsets(batch):
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                metrics.CONSUMER_LAG.labels(
                    stage=self.stage, topic=tp.topic, partition=str(tp.partition)
                ).set(max(0, high - tp.offset))

    def _commit_in_transaction(self, batch: list[Message], outputs: list[OutRecord]) -> None:
        try:
            produce_in_transaction(
                self.producer, outputs, next_offsets(batch), self.consumer.consumer_group_metadata()
            )
        except ProducerWedged as exc:
            if self.new_producer is None:
                raise FatalError(f"{exc.message}; no way to replace the producer") from exc
            log.warning("%s: %s; replacing the transactional producer", self.stage, exc.message)
            try:
                self.producer = self.new_producer()  # fences the stuck transaction
            except KafkaException as new_exc:
                raise FatalError(f"{exc.message}; no new producer: {new_exc}") from new_exc
            raise

    def _produce_then_commit(self, batch: list[Message], outputs: list[OutRecord]) -> None:
        failed: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failed.append(err)

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
        offsets = self._to_commit(batch)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The group moved on (rebalance): the new owner re-reads these records,
            # which is harmless because every write downstream is idempotent.
            log.warning("%s: offsets not committed: %s", self.stage, exc.args[0].str())
            return
        for tp in offsets:
            self._committed[tp.topic, tp.partition] = tp.offset

    def _flushed_not_all(self) -> bool:
        self._heartbeat.beat(grace_s=FLUSH_S)  # waiting on the broker is no stall
        return bool(self.producer.flush(FLUSH_S) > 0)

    def _to_commit(self, batch: list[Message]) -> list[TopicPartition]:
        """The batch's next offsets; with `holds`, every partition's, kept below the
        lowest record still held, and only those that moved."""
        if self.holds is None:
            return next_offsets(batch)
        for tp in next_offsets(batch):
            self._positions[tp.topic, tp.partition] = tp.offset
        held = self.holds()
        offsets = []
        for (topic, partition), position in self._positions.items():
            offset = min(position, held.get((topic, partition), position))
            if self._committed.get((topic, partition)) != offset:
                offsets.append(TopicPartition(topic, partition, offset))
        return offsets

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
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)
            self._committed.pop((tp.topic, tp.partition), None)
        if self.on_revoked is not None:
            self.on_revoked(partitions)

    def _rewind(self, batch: list[Message]) -> None:
        for tp in first_offsets(batch):
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                log.warning("could not rewind %s[%d]: %s", tp.topic, tp.partition, exc)


def _log_revoke(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
    log.info("revoked %s", [f"{p.topic}[{p.partition}]" for p in partitions])
