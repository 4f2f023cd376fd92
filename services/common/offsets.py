"""What a stage commits, and what it does when its offsets are gone.

- `next_offsets`: one past the last record of a batch per partition; `ends`: where a
  partition's end was reached (`enable.partition.eof`), which is past the transaction
  markers that follow the last record. Committing the end, not only last + 1, is what
  makes Kafka's own tools (`kafka-consumer-groups --describe`, Burrow, kminion...) show
  lag 0 once a stage has read everything (`merge`).
- `LostOffsets`: a stage consumer runs with `auto.offset.reset=error`, so a committed
  offset that retention has deleted is an event, not a silent skip: the range lost is
  logged, counted (`records_lost_total`) and alerted, and by default the stage stops
  (`OffsetsLost`: it keeps serving `/readyz` 503 until stopped); with
  `KAFKA_LOST_OFFSETS=earliest` it goes on from the oldest record kept. A partition of a
  new group, which has no committed offset at all, starts from the beginning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition
from prometheus_client import Counter

from services.common import health
from services.common.alerts import Alerter
from services.common.errors import FatalError
from services.common.records import coordinates
from services.product import METRIC_NAMESPACE

log = logging.getLogger(__name__)

PROBLEM = "kafka-offsets-lost"
CONDITION = "offsets_lost"
ALL_TENANTS = "all"

LOST = Counter(
    f"{METRIC_NAMESPACE}_records_lost",
    "Records deleted by retention before a stage read them (its committed offset was gone).",
    ["stage", "topic", "partition"],
)

Ends = dict[tuple[str, int], int]  # (topic, partition) -> offset of the partition's end


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


def merge(offsets: Iterable[TopicPartition], ends: Ends) -> list[TopicPartition]:
    """`offsets` moved up to the partitions' `ends` where those are further."""
    merged = {(tp.topic, tp.partition): tp.offset for tp in offsets}
    for key, end in ends.items():
        merged[key] = max(merged.get(key, end), end)
    return [TopicPartition(t, p, o) for (t, p), o in merged.items()]


@dataclass
class Commits:
    """What a consumer committed per partition, and what is due after a batch."""

    _positions: dict[tuple[str, int], int] = field(default_factory=dict)
    _committed: dict[tuple[str, int], int] = field(default_factory=dict)

    def due(
        self,
        batch: Sequence[Message],
        ends: Ends,
        holds: Callable[[], dict[tuple[str, int], int]] | None = None,
    ) -> list[TopicPartition]:
        """The batch's next offsets, moved up to the ends reached; with `holds` (the
        lowest offset a handler still holds per partition), every partition's, kept
        below what is held. Only offsets that differ from what was committed."""
        moved = merge(next_offsets(batch), ends)
        if holds is None:
            return [
                tp for tp in moved if self._committed.get((tp.topic, tp.partition)) != tp.offset
            ]
        for tp in moved:
            self._positions[tp.topic, tp.partition] = tp.offset
        held = holds()
        offsets = []
        for (topic, partition), position in self._positions.items():
            offset = min(position, held.get((topic, partition), position))
            if self._committed.get((topic, partition)) != offset:
                offsets.append(TopicPartition(topic, partition, offset))
        return offsets

    def committed(self, offsets: Iterable[TopicPartition]) -> None:
        for tp in offsets:
            self._committed[tp.topic, tp.partition] = tp.offset

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop((tp.topic, tp.partition), None)
            self._committed.pop((tp.topic, tp.partition), None)


class OffsetsLost(FatalError):
    """A stage's committed offset was deleted by retention; it stops (by default)."""


@dataclass
class LostOffsets:
    """Handles the `_AUTO_OFFSET_RESET` events of one stage's consumer."""

    stage: str
    policy: str = "stop"  # or "earliest"
    alerter: Alerter | None = None

    def handle(self, consumer: Consumer, msg: Message) -> None:
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset()
        if offset is None or offset < 0:
            log.info(
                "%s: %s[%d]: nothing committed yet: reading it from the beginning",
                self.stage,
                topic,
                partition,
            )
            _restart_from_beginning(consumer, topic, partition)
            return
        if self.policy == "earliest":
            message = self._lost(consumer, topic, partition, offset)
            log.warning("%s; going on from the earliest (KAFKA_LOST_OFFSETS=earliest)", message)
            _restart_from_beginning(consumer, topic, partition)
            return
        # Stopping: say every partition's loss at once, not only the first one noticed.
        losses = [self._lost(consumer, topic, partition, offset)]
        losses += [self._lost(consumer, *gone) for gone in _behind(consumer, (topic, partition))]
        message = losses[0] if len(losses) == 1 else f"{len(losses)} partitions lost records"
        health.current().report(PROBLEM, message)
        raise OffsetsLost(f"{message}. Stopped (KAFKA_LOST_OFFSETS=stop)")

    def _lost(self, consumer: Consumer, topic: str, partition: int, offset: int) -> str:
        """Log, count and alert the records of `partition` from `offset` that are gone."""
        try:
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
        except KafkaException:
            low = -1
        lost = (
            f"offsets {offset} to {low - 1} ({low - offset} records)"
            if low > offset
            else f"records from offset {offset}"
        )
        message = (
            f"{self.stage}: {topic}[{partition}]: {lost} were deleted by retention before "
            f"this stage read them; they will not reach the targets. Recover with a resync "
            f"of the tenants (docs/operations.md, 'Offsets lost to retention')"
        )
        LOST.labels(stage=self.stage, topic=topic, partition=str(partition)).inc(
            max(low - offset, 0)
        )
        log.error(message, extra={"topic": topic, "partition": partition, "offset": offset})
        if self.alerter is not None:
            self.alerter.fire(ALL_TENANTS, CONDITION, message)
        return message


def _behind(consumer: Consumer, noticed: tuple[str, int]) -> list[tuple[str, int, int]]:
    """The other assigned partitions whose committed offset retention has deleted."""
    others = [tp for tp in consumer.assignment() if (tp.topic, tp.partition) != noticed]
    try:
        committed = consumer.committed(others, timeout=10) if others else []
    except KafkaException:
        return []
    behind = []
    for tp in committed:
        if tp.offset < 0:
            continue
        try:
            low, _high = consumer.get_watermark_offsets(tp, timeout=10)
        except KafkaException:
            continue
        if tp.offset < low:
            behind.append((tp.topic, tp.partition, tp.offset))
    return behind


def _restart_from_beginning(consumer: Consumer, topic: str, partition: int) -> None:
    """A partition whose fetch failed on its offset reads again from its first record
    (a seek is refused in that state; a new assignment is not)."""
    consumer.incremental_unassign([TopicPartition(topic, partition)])
    consumer.incremental_assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])


def commit_end(consumer: Consumer, msg: Message) -> None:
    """For a consumer that commits record by record (no run loop): on a partition-end
    event, commit the end, which is past any transaction markers."""
    topic, partition, offset = coordinates(msg)
    if msg.offset() is None or offset < 0:
        return
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    except KafkaException as exc:  # a rebalance: the next owner commits it
        log.debug("end of %s[%d] not committed: %s", topic, partition, exc)
