"""The loader's step: canonical products upserted into their tenants' targets.

Every record waits in its tenant's queue of pending products, newest version per key
(an older version is superseded, so dropping it keeps order), until its target
confirms it or refuses it for good (then it is dead-lettered). Each call writes the
pending products of every tenant whose breaker lets it, different keys concurrently
(bounded per tenant), one key never twice at once. A tenant whose target keeps failing
has its breaker opened: its records stay pending (parked) while the partitions flow on
for the other tenants, and the run loop commits offsets only below the oldest record
still pending (`holds`), so nothing is lost on a crash or a rebalance.

Each write is given the target id the product had when last written (`ids.py`), so an
update is one call; an id that changed is written to `loader.target-ids.v1` with the
batch's outputs, before its offsets are committed.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message, TopicPartition

from services.common import logs, metrics, tracing
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
from services.targets import open_target
from services.targets.base import Target, UpsertResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    msg: Message
    product: dict[str, Any]
    trace: tracing.Trace  # the record's place in its product's trace


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
        targets: Mapping[str, Target] | None = None,
    ) -> None:
        """`targets`: each tenant's target (default: opened from its settings)."""
        self.serde = serde
        self.tenants = tenants
        self.kafka = kafka
        self.writer = writer
        self.max_parked = max_parked
        self.targets: dict[str, Target] = dict(targets) if targets is not None else {}
        for t in tenants.values():
            if t.id not in self.targets:
                self.targets[t.id] = open_target(t.id, t.target)
        self.ids = TargetIds(kafka, serde, {t.id: t.target.identity for t in tenants.values()})
        self.breakers = {
            t.id: Breaker(t.id, t.target.breaker_failures, t.target.breaker_cooldown_s)
            for t in tenants.values()
        }
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="upsert")
        self._slots = {
            t.id: threading.BoundedSemaphore(t.target.concurrency) for t in tenants.values()
        }
        self._pending: dict[str, dict[str, Pending]] = {t: {} for t in tenants}
        self.states = StateWriter(writer, serde, tenants)

    def restore(self, states: list[dict[str, Any]]) -> None:
        """Carry on from this writer's stored states (counts, last load time)."""
        self.states.restore(states)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for target in self.targets.values():
            target.close()

    # -- what the run loop asks ---------------------------------------------------------

    def holds(self) -> dict[tuple[str, int], int]:
        """The lowest offset of a pending record per (topic, partition)."""
        low: dict[tuple[str, int], int] = {}
        for queue in self._pending.values():
            for pending in queue.values():
                topic, partition, offset = coordinates(pending.msg)
                if offset < low.get((topic, partition), offset + 1):
                    low[topic, partition] = offset
        return low

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget the pending records of partitions this loader no longer owns: nothing of
        them is in flight between calls, and their new owner reads them again."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        for queue in self._pending.values():
            for sku in [s for s, p in queue.items() if coordinates(p.msg)[:2] in gone]:
                del queue[sku]
        self.ids.revoked(partitions)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Read back the target ids of newly assigned partitions."""
        self.ids.assigned(partitions)

    def parked(self) -> int:
        return sum(len(queue) for queue in self._pending.values())

    # -- the step -------------------------------------------------------------------------

    def handle_batch(self, batch: list[Message]) -> BatchResult:
        result = BatchResult()
        if batch and self.parked() + len(batch) > self.max_parked:
            # Back-pressure: the batch is read again later, when parked records have gone.
            raise RetriableError(f"{self.parked()} records parked for paused targets")
        for msg in batch:
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
            queue = self._pending[product["tenant"]]
            older = queue.get(product["sku"])
            if older is not None and (older.msg.offset() or 0) > (msg.offset() or 0):
                result.counts["superseded"] += 1  # a replay of an older version
                continue
            if older is not None:
                result.counts["superseded"] += 1
            queue[product["sku"]] = Pending(
                msg, product, tracing.received(msg, product["trace_id"])
            )
        self._write_round(result)
        result.outputs.extend(self._state_records())
        return result

    def _write_round(self, result: BatchResult) -> None:
        work: list[tuple[str, Pending, Future[UpsertResult]]] = []
        for tenant, queue in self._pending.items():
            state = self.breakers[tenant].state
            if not queue or state is BreakerState.OPEN:
                continue
            # Half open: one record probes the target; the rest follow once it answers.
            todo = list(queue.values())[:1] if state is BreakerState.HALF_OPEN else queue.values()
            work.extend(
                (tenant, p, self._pool.submit(self._upsert, p, self._known(p.product)))
                for p in todo
            )
        tallies: dict[str, Counter[str]] = {t: Counter() for t in self.tenants}
        for tenant, pending, future in work:
            breaker = self.breakers[tenant]
            try:
                done = future.result()
            except SkippableError as exc:
                breaker.succeeded()  # the target answered; it refused this one record
                result.failures.append((pending.msg, exc))
                tallies[tenant]["failed"] += 1
            except RetriableError as exc:
                breaker.failed(exc)
                result.counts["parked"] += 1
                continue
            except FatalError:
                raise
            except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason, not lost
                what = f"upsert of {pending.msg.key()!r}"
                result.failures.append((pending.msg, unexpected(exc, what)))
                tallies[tenant]["failed"] += 1
            else:
                breaker.succeeded()
                metrics.observe_freshness(pending.msg, tenant)
                result.counts[done.action] += 1
                tallies[tenant]["loaded"] += 1
                partition = coordinates(pending.msg)[1]
                kept = self.ids.learned(tenant, done.sku, partition, done.target_id)
                if kept is not None:
                    result.outputs.append(kept)
            del self._pending[tenant][pending.product["sku"]]
        self._account(tallies)

    def _known(self, product: dict[str, Any]) -> str | None:
        return self.ids.known(product["tenant"], product["sku"])

    def _upsert(self, pending: Pending, known_id: str | None) -> UpsertResult:
        """Runs in a pool thread: every call the target makes carries the product's trace
        (`traceparent`, a new span each), and log lines its tenant, trace and record."""
        product = pending.product
        tenant = product["tenant"]
        with (
            self._slots[tenant],
            logs.context(tenant=tenant, **tracing.record_fields(pending.msg)),
            tracing.active(pending.trace),
        ):
            self.breakers[tenant].check()  # opened meanwhile: don't call a target that is down
            return self.targets[tenant].upsert(product, known_id)

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
            if breaker.state is not BreakerState.CLOSED:
                state["status"] = "degraded"
                state["last_error"] = breaker.last_error
            else:
                state["status"] = "syncing" if self._pending[tenant] else "idle"

    def _state_records(self) -> list[Any]:
        """A SyncState record for each tenant whose state changed since the last one."""
        if self.kafka is None:
            return []
        return self.states.records(self.kafka)
