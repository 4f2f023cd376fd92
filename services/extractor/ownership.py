"""Which tenants this extractor instance polls: those on the partitions of
`sync.tenants.v1` that the consumer group `<prefix>siesa-sync-extractor` assigns it.

No coordinator of our own: Kafka's group does it. Each instance's consumer subscribes to
the tenants topic with cooperative-sticky assignment, so an instance joining or leaving
moves only the partitions that must move; dynamic membership with a short session
(`SESSION_TIMEOUT_MS`), so a killed instance's partitions move within seconds.

A tenant's partition is `tenant_feed.partition_of(id, partitions)`. Its tenants are:
- until the topic holds any record (no `tenants apply` yet): the tenants file's enabled
  tenants of the partitions owned, so one instance with a tenants file works as before;
- then the topic's: the records of each partition owned, read from its beginning on
  assign and followed live (a new or changed entry starts or restarts its tenant, a
  removal or a disabled entry stops it). A partition's tenants start once it has been
  read to its end as it was on assign, so an instance never starts a stale entry.

On assign, before anything is restored, the partitions' committed offsets are read
with read_committed (`_wait_stable`): the broker answers once no transaction holding
offsets of them is open, so a previous owner's last transaction (a zombie's, or a
killed one's until the coordinator aborts it) is settled before its tenants' state is
read here.

On revoke (cooperative: only the partitions leaving) and on loss, before the callback
returns, the partitions' tenants are stopped (`Fleet.stop`: their scans end, what they
handed over is committed or aborted, their memory dropped): the next owner restores
their committed state and goes on from there. The owned partitions and the consumer's
group metadata are also what fences this instance's transactions (`offsets`,
`metadata`: services/extractor/commit.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from services.common import tenant_feed, topics
from services.common.errors import ConfigError, FatalError, RetriableError
from services.common.kafka import make_consumer
from services.common.scan import partitions, watermarks
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.common.tenants import Tenant
from services.extractor.memory import TenantMemory

log = logging.getLogger(__name__)

# A member silent this long is out of the group, its partitions handed to the others.
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_MS = 1_000
# While the topic is empty, how often to look whether a first `tenants apply` came.
CHECK_EMPTY_S = 5.0
RETRY_START_S = 5.0
# Tenants started per turn of the loop: the group's callbacks and heartbeats wait while
# tenants start, so a big assignment starts in steps (restored all at once, though:
# a restore reads the whole state and fingerprints topics).
START_AT_ONCE = 10
# The longest an assignment waits for a previous owner's open transaction to end (the
# coordinator aborts it after the transaction timeout, 10 s: app.py).
STABLE_WAIT_S = 30.0
MEMBERSHIP: dict[str, Any] = {
    "session.timeout.ms": SESSION_TIMEOUT_MS,
    "heartbeat.interval.ms": HEARTBEAT_MS,
}


def group_id(kafka: KafkaSettings) -> str:
    return f"{kafka.topic_prefix}siesa-sync-extractor"


class Fleet(Protocol):
    """What runs the tenants owned (services/extractor/fleet.py)."""

    def restore(self, tenants: list[str]) -> dict[str, TenantMemory]:
        """Their committed state and fingerprints (RetriableError: try later)."""

    def start(self, tenants: list[tuple[Tenant, TenantMemory]]) -> None:
        """Poll them, from their memory."""

    def stop(self, tenants: Collection[str]) -> None:
        """Stop polling them; returns once their scans have ended."""


@dataclass
class _Partition:
    end: int  # its end (last stable offset) when assigned
    position: int
    ready: bool = False
    entries: dict[str, dict[str, Any] | None] = field(default_factory=dict)


class Ownership:
    """The group membership and the tenants it gives (see the module's doc)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        fleet: Fleet,
        stopper: Stopper,
        *,
        file_tenants: Mapping[str, Tenant],
        base_dir: Path,
        resolve: Collection[str] = (),
    ) -> None:
        self.kafka = kafka
        self.fleet = fleet
        self.stopper = stopper
        self.file_tenants = dict(file_tenants)
        self.base_dir = base_dir
        self.resolve = resolve
        self.topic = kafka.topic(topics.TENANTS)
        self.consumer: Consumer = make_consumer(
            kafka,
            group_id=group_id(kafka),
            **MEMBERSHIP,
        )
        self.partitions = len(partitions(self.consumer, self.topic))
        self.from_topic = self._topic_has_records()
        self._owned: dict[int, _Partition] = {}
        self._lock = threading.Lock()
        # Tenants started: id -> what they were started from (an entry, or "file").
        self._started: dict[str, Any] = {}
        self._restored: dict[str, TenantMemory] = {}
        self._changes = threading.Condition()
        self.epoch = 0  # counts the group's callbacks: each may bring a new generation
        self._parsed: dict[str, tuple[dict[str, Any], Tenant | None]] = {}
        self._dirty = True
        self._retry_at = 0.0
        self._metadata: Any = None

    # -- the fence of this instance's transactions (services/extractor/commit.py) --

    def offsets(self) -> list[TopicPartition]:
        with self._lock:
            return [
                TopicPartition(self.topic, p, max(part.position, 0))
                for p, part in sorted(self._owned.items())
            ]

    def metadata(self) -> Any:
        """The group metadata as of this loop's last turn or rebalance: the consumer's own
        call blocks while another thread is in `consume` (confluent-kafka), so only this
        loop's thread makes it."""
        if self._metadata is None:
            raise RetriableError("not in the extractors' group yet")
        return self._metadata

    def wait_changed(self, epoch: int, timeout: float) -> bool:
        """Wait until a group callback came after `epoch` (the membership may have a new
        generation); False after `timeout`."""
        with self._changes:
            return self._changes.wait_for(lambda: self.epoch != epoch, timeout)

    def _refresh(self, consumer: Consumer) -> None:
        metadata = consumer.consumer_group_metadata()
        with self._changes:
            self._metadata = metadata
            self.epoch += 1
            self._changes.notify_all()

    def owned(self) -> list[int]:
        with self._lock:
            return sorted(self._owned)

    def started(self) -> list[str]:
        return sorted(self._started)

    # -- the loop --

    def run(self) -> None:
        """Follow the group and the topic until the stop; then leave the group (its
        tenants stopped first, by the revoke)."""
        self.consumer.subscribe(
            [self.topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )
        checked = time.monotonic()
        try:
            while not self.stopper.stopped:
                for msg in self.consumer.consume(500, 0.5):
                    self._read(msg)
                self._metadata = self.consumer.consumer_group_metadata()
                if not self.from_topic and time.monotonic() - checked >= CHECK_EMPTY_S:
                    checked = time.monotonic()
                    self._switch_if_applied()
                self._reconcile()
        finally:
            self.consumer.close()

    def _read(self, msg: Message) -> None:
        error = msg.error()
        partition, offset = msg.partition() or 0, msg.offset() or 0
        with self._lock:
            part = self._owned.get(partition)
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if part is not None and not part.ready:
                    part.ready, self._dirty = True, True
                if part is not None:
                    part.position = max(part.position, offset)
            elif error.fatal():
                raise FatalError(f"tenants consumer failed: {error.str()}")
            else:
                log.warning("tenants consumer: %s", error.str())
            return
        if part is None:
            return
        part.position = offset + 1
        if part.position >= part.end:
            part.ready = True
        try:
            tenant, entry = tenant_feed.decode(msg.key(), msg.value())
        except ConfigError as exc:
            log.error("%s[%d]@%d skipped: %s", self.topic, partition, offset, exc.message)  # noqa: TRY400 - the reason is the message
            return
        if tenant_feed.partition_of(tenant, self.partitions) != partition:
            log.error("tenant %s: its record is on partition %d, not its own", tenant, partition)
            return
        part.entries[tenant] = entry
        if not self.from_topic:
            log.info("%s holds tenants: following it, not the tenants file", self.topic)
            self.from_topic = True
        self._dirty = True

    def _switch_if_applied(self) -> None:
        try:
            if self._topic_has_records():
                log.info("%s holds tenants: following it, not the tenants file", self.topic)
                self.from_topic, self._dirty = True, True
        except RetriableError as exc:
            log.warning("cannot look at %s: %s", self.topic, exc.message)

    def _topic_has_records(self) -> bool:
        for p in range(self.partitions):
            low, high = watermarks(self.consumer, self.topic, p)
            if high > low:
                return True
        return False

    # -- rebalance callbacks (on this loop's thread, inside consume) --

    def _assigned(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        if assigned:
            self._wait_stable(consumer, assigned)
        parts = {}
        for tp in assigned:
            low, high = watermarks(consumer, self.topic, tp.partition)
            parts[tp.partition] = _Partition(end=high, position=low, ready=high <= low)
        with self._lock:
            self._owned.update(parts)
        self._dirty = True
        log.info("assigned tenants partitions %s (owning %s)", sorted(parts), self.owned())
        consumer.incremental_assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in sorted(parts)]
        )
        self._refresh(consumer)

    def _wait_stable(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        """Wait until no transaction of a previous owner holding offsets of these
        partitions is still open (read_committed: the broker answers the committed
        offsets only once they are stable, KIP-447). Every transaction of an instance
        carries the offsets of all its partitions, so a zombie that sent them before the
        group moved on is committed or aborted before the tenants are restored here:
        the restore then sees its rows, or they are gone."""
        try:
            consumer.committed(
                [TopicPartition(self.topic, tp.partition) for tp in assigned],
                timeout=STABLE_WAIT_S,
            )
        except KafkaException as exc:
            log.warning("partitions %s: previous owner's offsets not stable: %s", assigned, exc)

    def _revoked(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self._release(revoked, "revoked")
        consumer.incremental_unassign(revoked)

    def _lost(self, consumer: Consumer, lost: list[TopicPartition]) -> None:
        self._release(lost, "lost")
        consumer.incremental_unassign(lost)

    def _release(self, leaving: list[TopicPartition], why: str) -> None:
        self._refresh(self.consumer)
        gone = {tp.partition for tp in leaving}
        stop = [t for t in self._started if tenant_feed.partition_of(t, self.partitions) in gone]
        log.info("tenants partitions %s %s: stopping %d tenants", sorted(gone), why, len(stop))
        self.fleet.stop(stop)  # their scans end, their batches committed or aborted
        for tenant in stop:
            self._started.pop(tenant, None)
        for tenant in [
            t for t in self._restored if tenant_feed.partition_of(t, self.partitions) in gone
        ]:
            del self._restored[tenant]
        with self._lock:
            for p in gone:
                self._owned.pop(p, None)
        self._dirty = True

    # -- what runs follows what is owned --

    def _reconcile(self) -> None:
        if not self._dirty or time.monotonic() < self._retry_at:
            return
        self._dirty = False
        wanted = self._wanted()
        stop = [
            t for t, source in self._started.items() if wanted.get(t, (None, None))[1] != source
        ]
        if stop:
            self.fleet.stop(stop)
            for tenant in stop:
                del self._started[tenant]
        start = {t: w for t, w in wanted.items() if t not in self._started}
        if not start:
            return
        try:
            missing = [t for t in start if t not in self._restored]
            if missing:
                self._restored.update(self.fleet.restore(missing))
        except RetriableError as exc:
            log.warning("tenants %s not started yet: %s", sorted(start), exc.message)
            self._dirty, self._retry_at = True, time.monotonic() + RETRY_START_S
            return
        now = sorted(start)[:START_AT_ONCE]
        self.fleet.start([(start[t][0], self._restored.pop(t)) for t in now])
        for t in now:
            self._started[t] = start[t][1]
        if len(start) > len(now):
            self._dirty = True  # the others at the next turn

    def _wanted(self) -> dict[str, tuple[Tenant, Any]]:
        """The tenants that should run now: id -> (tenant, what it comes from)."""
        with self._lock:
            ready = {p: part for p, part in self._owned.items() if part.ready}
        if not self.from_topic:
            return {
                t: (tenant, "file")
                for t, tenant in self.file_tenants.items()
                if tenant_feed.partition_of(t, self.partitions) in ready
            }
        wanted: dict[str, tuple[Tenant, Any]] = {}
        for part in ready.values():
            for t, entry in part.entries.items():
                tenant = self._parse(t, entry) if entry is not None else None
                if tenant is not None and tenant.enabled:
                    wanted[t] = (tenant, entry)
        return wanted

    def _parse(self, tenant: str, entry: dict[str, Any]) -> Tenant | None:
        """The entry as a Tenant (parsed once per entry); None, said once, when it can't
        be: the other tenants go on."""
        cached = self._parsed.get(tenant)
        if cached is not None and cached[0] == entry:
            return cached[1]
        parsed: Tenant | None = None
        try:
            parsed = tenant_feed.tenants_of(
                {tenant: entry}, base_dir=self.base_dir, resolve=self.resolve
            )[tenant]
        except ConfigError as exc:
            log.error("tenant %s not started: %s", tenant, exc, extra={"tenant": tenant})  # noqa: TRY400 - the reason is the message
        self._parsed[tenant] = (entry, parsed)
        return parsed
