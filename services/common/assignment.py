"""What a run loop's consumer holds: its partitions, the readiness they give, their lag.

Readiness: a consumer that holds no partition does no work, so it is not ready (the
``partitions`` problem): before its first assignment, between rebalances, or in a group
with more members than the topic has partitions.

Lag: the run loop exports each partition's lag after every batch; this refreshes it
every ``interval_s`` on its own thread as well, from the partition's end asked of the
broker and the loop's position (the next offset it will process; before its first batch
there, the group's committed offset, else the partition's start). A stalled loop then
shows a lag that grows with what is produced, not the figure of its last batch.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaException, TopicPartition

from services.common import health, metrics

log = logging.getLogger(__name__)

PARTITIONS = "partitions"  # the readiness problem of a consumer that holds none

Partition = tuple[str, int]
REFRESH_S = 10.0
QUERY_TIMEOUT_S = 2.0


class Assignment:
    def __init__(self, stage: str, consumer: Consumer, interval_s: float = REFRESH_S) -> None:
        self.stage = stage
        self.consumer = consumer
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._assigned: set[Partition] = set()
        self._positions: dict[Partition, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def assigned(self) -> set[Partition]:
        with self._lock:
            return set(self._assigned)

    def waiting(self) -> None:
        """Subscribed, nothing assigned yet: not ready."""
        health.current().report(PARTITIONS, "no partitions assigned yet")
        metrics.ASSIGNED_PARTITIONS.labels(stage=self.stage).set(0)

    def assign(self, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in partitions])
        with self._lock:
            self._assigned |= {(tp.topic, tp.partition) for tp in partitions}
        self._readiness()
        metrics.ASSIGNED_PARTITIONS.labels(stage=self.stage).set(len(self.assigned))

    def revoke(self, partitions: list[TopicPartition]) -> None:
        """Partitions that left this consumer: no lag of theirs is exported any more."""
        with self._lock:
            for tp in partitions:
                self._assigned.discard((tp.topic, tp.partition))
                self._positions.pop((tp.topic, tp.partition), None)
        for tp in partitions:
            labels = (self.stage, tp.topic, str(tp.partition))
            try:
                metrics.CONSUMER_LAG.remove(*labels)
            except KeyError:
                pass  # never exported
        self._readiness()
        metrics.ASSIGNED_PARTITIONS.labels(stage=self.stage).set(len(self.assigned))

    def _readiness(self) -> None:
        state = health.current()
        state.set_ready()
        if self.assigned:
            state.resolve(PARTITIONS)
        else:
            state.report(PARTITIONS, "no partitions assigned (more members than partitions?)")

    def processed(self, offsets: list[TopicPartition]) -> None:
        """The loop's next offsets after a batch."""
        with self._lock:
            for tp in offsets:
                self._positions[tp.topic, tp.partition] = tp.offset

    def refresh(self) -> None:
        """Ask the broker for the ends of the assigned partitions; export their lag."""
        for topic, partition in sorted(self.assigned):
            if self._stop.is_set():
                return  # stopping: the consumer is about to close
            tp = TopicPartition(topic, partition)
            try:
                low, high = self.consumer.get_watermark_offsets(
                    tp, timeout=QUERY_TIMEOUT_S, cached=False
                )
                position = self._position(tp, low)
            except KafkaException as exc:
                log.debug("lag of %s[%d] not refreshed: %s", topic, partition, exc)
                continue
            if high >= 0 and (topic, partition) in self.assigned:
                metrics.CONSUMER_LAG.labels(
                    stage=self.stage, topic=topic, partition=str(partition)
                ).set(max(0, high - position))

    def _position(self, tp: TopicPartition, low: int) -> int:
        with self._lock:
            known = self._positions.get((tp.topic, tp.partition))
        if known is not None:
            return known
        (committed,) = self.consumer.committed([tp], timeout=QUERY_TIMEOUT_S)
        return int(committed.offset) if committed.offset >= 0 else int(low)

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval_s):
                self.refresh()

        self._thread = threading.Thread(target=run, name=f"lag-{self.stage}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing; returns once no call on the consumer is in progress (one
        query at most, a few seconds while the broker is away), so that the consumer can
        be closed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
