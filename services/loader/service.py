"""The loader's step: canonical products upserted into their tenants' targets.

Every record waits in its tenant's lane (`lanes.py`) of pending products, newest
version per key (an older version is superseded, so dropping it keeps order), until its
target confirms it or refuses it for good (then it is dead-lettered). Each tenant writes
through its own threads, different keys concurrently (up to its target's concurrency),
one key never twice at once. A step hands every lane the work it has room for, then
collects what is done while calls keep ending, for at most `step_wait_s`: it never
waits for a slow tenant's calls to end, so no tenant holds another's records, and the
run loop polls its consumer at least that often however long a tenant's writes take
(no eviction from the group).

A tenant whose target keeps failing has its breaker opened (its cool-down doubling at
each failed probe, up to a cap): its records stay pending (parked) while the partitions
flow on for the other tenants. A target refusing the tenant's credentials opens it at
once and makes the tenant `failed`, with an alert. The run loop commits offsets only
below the oldest record still pending or spilled (`holds`), so nothing is lost on a
crash or a rebalance.

Each write is given the target id the product had when last written (`ids.py`), so an
update is one call; an id that changed is written to `loader.target-ids.v1` with the
step's outputs, before its offsets are committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message, TopicPartition

from services.common import logs, metrics, tracing
from services.common.alerts import Alerter
from services.common.boundary import check_tenant
from services.common.errors import FatalError, RetriableError, SkippableError, UnknownTenant
from services.common.records import coordinates
from services.common.runloop import BatchResult, unexpected
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.state import StateWriter
from services.common.tenants import Tenant
from services.loader.breaker import Breaker, BreakerState
from services.loader.ids import TargetIds
from services.loader.lanes import Lane, Partition, Pending
from services.targets import open_target
from services.targets.auth import CredentialsRefused
from services.targets.base import Target, UpsertResult

log = logging.getLogger(__name__)

AUTH_ALERT = "target_credentials_refused"
# A step stops waiting once no call has ended for this long: what is left in flight
# is slow, and the consumer is polled meanwhile (its calls go on in their threads).
QUIET_S = 0.1


class Loader:
    def __init__(
        self,
        serde: Serde,
        tenants: dict[str, Tenant],
        max_in_flight: int = 16,
        *,
        kafka: KafkaSettings | None = None,
        writer: str = "loader",
        max_parked: int = 100_000,
        max_parked_per_tenant: int = 10_000,
        step_wait_s: float = 0.5,
        breaker_max_cooldown_s: float = 300.0,
        targets: Mapping[str, Target] | None = None,
        alerter: Alerter | None = None,
        seek: Callable[[TopicPartition], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`targets`: each tenant's target (default: opened from its settings);
        `max_in_flight`: the most calls one tenant has in flight (with its target's
        `concurrency`); `seek`: the consumer's, to read spilled records again."""
        self.serde = serde
        self.tenants = tenants
        self.kafka = kafka
        self.writer = writer
        self.max_parked = max_parked
        self.step_wait_s = step_wait_s
        self.alerter = alerter
        self.seek = seek
        self._clock = clock
        self.targets: dict[str, Target] = dict(targets) if targets is not None else {}
        for t in tenants.values():
            if t.id not in self.targets:
                self.targets[t.id] = open_target(t.id, t.target)
        self.ids = TargetIds(kafka, serde, {t.id: t.target.identity for t in tenants.values()})
        self.breakers = {
            t.id: Breaker(
                t.id,
                t.target.breaker_failures,
                t.target.breaker_cooldown_s,
                max_cooldown_s=breaker_max_cooldown_s,
            )
            for t in tenants.values()
        }
        self._wake = threading.Event()  # a lane is low on work
        self.lanes = {
            t.id: Lane(
                t.id,
                self.breakers[t.id],
                min(t.target.concurrency, max_in_flight),
                max_parked_per_tenant,
                self._wake,
            )
            for t in tenants.values()
        }
        self._rewound: dict[Partition, int] = {}  # sought back to, not read again yet
        self._refused: dict[str, str] = {}  # tenant -> why its credentials were refused
        self.states = StateWriter(writer, serde, tenants)

    def restore(self, states: list[dict[str, Any]]) -> None:
        """Carry on from this writer's stored states (counts, last load time)."""
        self.states.restore(states)

    def close(self) -> None:
        for lane in self.lanes.values():
            lane.close()
        for target in self.targets.values():
            target.close()

    # -- what the run loop asks ---------------------------------------------------------

    def holds(self) -> dict[Partition, int]:
        """The lowest offset of a pending (or spilled) record per (topic, partition)."""
        low: dict[Partition, int] = dict(self._rewound)
        for lane in self.lanes.values():
            lane.holds(low)
        return low

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget the pending records of partitions this loader no longer owns: their new
        owner reads them again from the committed offset."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for where in gone:
            self._rewound.pop(where, None)
        for lane in self.lanes.values():
            lane.revoked(gone)
        self.ids.revoked(partitions)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Read back the target ids of newly assigned partitions."""
        self.ids.assigned(partitions)

    def parked(self) -> int:
        return sum(len(lane.pending) for lane in self.lanes.values())

    # -- the step -------------------------------------------------------------------------

    def handle_batch(self, batch: list[Message]) -> BatchResult:
        result = BatchResult()
        if batch and self.parked() + len(batch) > self.max_parked:
            # Back-pressure: the batch is read again later, when parked records have gone.
            raise RetriableError(f"{self.parked()} records parked for paused targets")
        tallies: dict[str, Counter[str]] = {t: Counter() for t in self.tenants}
        self._collect(result, tallies)  # what ended since the last step, first
        for msg in batch:
            topic, partition, offset = coordinates(msg)
            if offset >= self._rewound.get((topic, partition), offset + 1):
                del self._rewound[topic, partition]  # read again: held by its lane now
            try:
                product = self.serde.decode_as("CanonicalProduct", msg.value())
                check_tenant(msg.key(), product["tenant"])
                if product["tenant"] not in self.targets:
                    raise UnknownTenant(
                        f"tenant {product['tenant']}: no target configured for it",
                        tenant=product["tenant"],
                    )
            except SkippableError as exc:
                result.failures.append((msg, exc))
                continue
            trace = tracing.received(msg, product["trace_id"])
            kept = self.lanes[product["tenant"]].offer(Pending(msg, product, trace))
            if kept != "kept":
                result.counts[kept] += 1
        self._step(result, tallies)
        self._rewind()
        self._account(tallies)
        result.outputs.extend(self._state_records())
        return result

    def _step(self, result: BatchResult, tallies: dict[str, Counter[str]]) -> None:
        """Start what each lane has room for and collect what ends, for at most
        `step_wait_s`; a record that failed for a passing reason waits for the next step."""
        tried: set[int] = set()
        deadline = self._clock() + self.step_wait_s
        ended = self._ended()
        while True:
            for lane in self.lanes.values():
                for pending in lane.ready(tried):
                    known = self.ids.known(lane.tenant, pending.sku)
                    lane.start(pending, self._upsert, pending, known)
            flying = any(lane.in_flight for lane in self.lanes.values())
            left = deadline - self._clock()
            if not flying or left <= 0:
                return
            woken = self._wake.wait(min(left, QUIET_S))  # set when a lane runs low on work
            self._wake.clear()
            tried |= self._collect(result, tallies)
            if not woken and self._ended() == ended:
                # What is in flight is slow (no call ended for QUIET_S): poll meanwhile,
                # so other tenants' new records never wait for a slow target's calls.
                return
            ended = self._ended()

    def _ended(self) -> int:
        return sum(lane.ended for lane in self.lanes.values())

    def _collect(self, result: BatchResult, tallies: dict[str, Counter[str]]) -> set[int]:
        """Take the outcome of every call that ended; the ids of the records that failed
        for a passing reason."""
        failed: set[int] = set()
        for lane in self.lanes.values():
            for pending, future in lane.finished():
                if not self._outcome(lane, pending, future, result, tallies[lane.tenant]):
                    failed.add(id(pending))
        return failed

    def _outcome(
        self,
        lane: Lane,
        pending: Pending,
        future: Future[UpsertResult],
        result: BatchResult,
        tally: Counter[str],
    ) -> bool:
        """Account one ended call; False when the record stays parked."""
        tenant, breaker = lane.tenant, lane.breaker
        current = lane.is_current(pending)  # else replaced meanwhile, or revoked
        try:
            done = future.result()
        except SkippableError as exc:
            self._answered(tenant, breaker)  # the target answered; it refused this record
            if current:
                result.failures.append((pending.msg, exc))
                tally["failed"] += 1
        except CredentialsRefused as exc:
            breaker.failed(exc, at_once=True)
            self._credentials_refused(tenant, exc)
            result.counts["parked"] += 1
            return False
        except RetriableError as exc:
            breaker.failed(exc)
            result.counts["parked"] += 1
            return False
        except FatalError:
            raise
        except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason, not lost
            if current:
                what = f"upsert of {pending.msg.key()!r}"
                result.failures.append((pending.msg, unexpected(exc, what)))
                tally["failed"] += 1
        else:
            self._answered(tenant, breaker)
            metrics.observe_freshness(pending.msg, tenant)
            result.counts[done.action] += 1
            tally["loaded"] += 1
            if current or lane.pending.get(pending.sku) is not None:
                partition = coordinates(pending.msg)[1]
                kept = self.ids.learned(tenant, done.sku, partition, done.target_id)
                if kept is not None:
                    result.outputs.append(kept)
        lane.done(pending)
        return True

    def _upsert(self, pending: Pending, known_id: str | None) -> UpsertResult:
        """Runs in the lane's thread: every call the target makes carries the product's
        trace (`traceparent`, a new span each), and log lines its tenant, trace and record."""
        product = pending.product
        tenant = product["tenant"]
        with (
            logs.context(tenant=tenant, **tracing.record_fields(pending.msg)),
            tracing.active(pending.trace),
        ):
            self.breakers[tenant].check()  # opened meanwhile: don't call a target that is down
            return self.targets[tenant].upsert(product, known_id)

    def _rewind(self) -> None:
        """Read again what lanes spilled, once they have room for it: each partition from
        the lowest offset any lane asks (one seek each: a second would undo the first).
        The offset stays held until its record is back (a crash meanwhile loses nothing)."""
        seeks: dict[Partition, int] = {}
        for lane in self.lanes.values():
            for tp in lane.rewinds():
                where = (tp.topic, tp.partition)
                seeks[where] = min(tp.offset, seeks.get(where, tp.offset))
        for (topic, partition), asked in seeks.items():
            # Sought back already and not read again yet: never skip what that reads.
            offset = min(asked, self._rewound.get((topic, partition), asked))
            log.info(
                "reading %s[%d] again from %d (records a tenant had no room for)",
                topic,
                partition,
                offset,
            )
            self._rewound[topic, partition] = offset
            if self.seek is not None:
                self.seek(TopicPartition(topic, partition, offset))

    # -- credentials ----------------------------------------------------------------------

    def _credentials_refused(self, tenant: str, exc: CredentialsRefused) -> None:
        if tenant not in self._refused:
            log.error("tenant %s: %s", tenant, exc.message, extra={"tenant": tenant})
        self._refused[tenant] = exc.message
        if self.alerter is not None:
            self.alerter.fire(tenant, AUTH_ALERT, exc.message)

    def _answered(self, tenant: str, breaker: Breaker) -> None:
        breaker.succeeded()
        if self._refused.pop(tenant, None) is not None:
            log.info("tenant %s: credentials accepted again", tenant, extra={"tenant": tenant})
            if self.alerter is not None:
                self.alerter.clear(tenant, AUTH_ALERT)

    # -- state ----------------------------------------------------------------------------

    def _account(self, tallies: dict[str, Counter[str]]) -> None:
        now = datetime.now(UTC)
        for tenant, tally in tallies.items():
            state = self.states[tenant]
            state["loaded"] += tally["loaded"]
            state["failed"] += tally["failed"]
            state["dead_lettered"] += tally["failed"]
            if tally["loaded"]:
                state["last_load_at"] = now
                metrics.mark_success(tenant, "load")
            breaker = self.breakers[tenant]
            if tenant in self._refused:
                state["status"] = "failed"
                state["last_error"] = self._refused[tenant]
            elif breaker.state is not BreakerState.CLOSED:
                state["status"] = "degraded"
                state["last_error"] = breaker.last_error
            else:
                lane = self.lanes[tenant]
                state["status"] = "syncing" if lane.pending or lane.spilled else "idle"

    def _state_records(self) -> list[Any]:
        """A SyncState record for each tenant whose state changed since the last one."""
        if self.kafka is None:
            return []
        return self.states.records(self.kafka)
