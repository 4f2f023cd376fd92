"""The loader's step: canonical products upserted into their tenants' targets.

Every record waits in its tenant's lane (`lanes.py`) of pending products, newest
version per key (an older version is superseded, so dropping it keeps order), until its
target confirms it or refuses it for good (then it is dead-lettered). Each tenant writes
through its slots on the loader's one bounded pool of threads (`workers.py`), different
keys concurrently (up to its share of its target's concurrency), one key never twice at
once; tenants on one target host share one HTTP client (`services/targets/clients.py`).
A step hands every lane the work it has room for, then collects what is done while
calls keep ending, for at most `step_wait_s`: it never waits for a slow tenant's calls
to end, so no tenant holds another's records, and the run loop polls its consumer at
least that often however long a tenant's writes take (no eviction from the group).

A tenant whose target keeps failing has its breaker opened (its cool-down doubling at
each failed probe, up to a cap): its records stay pending (parked) while the partitions
flow on for the other tenants. A target refusing the tenant's credentials opens it at
once and makes the tenant `failed`, with an alert. The run loop commits offsets only
below the oldest record still pending or spilled (`holds`), so nothing is lost on a
crash or a rebalance. A record spilled (no room for it) is read again later, and only it:
the others read with it are passed over (`rereads.py`).

Each write is given the target id the product had when last written (`ids.py`), so an
update is one call; an id that changed is written to `loader.target-ids.v1` with the
step's outputs, before its offsets are committed.

A tenant's `rate_limit_rps` and `concurrency` hold for the group of loaders: each takes
the share of them that its share of the canonical partitions is (`shares.py`). Tenants
change live (`set_tenants`), between steps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import partial
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
from services.common.tenants import Tenant, split_key
from services.loader.breaker import Breaker, BreakerState
from services.loader.ids import TargetIds
from services.loader.lanes import Lane, Pending
from services.loader.rereads import Partition, Rereads
from services.loader.shares import GroupRate, concurrency_share
from services.loader.workers import Workers
from services.targets import open_target
from services.targets.auth import CredentialsRefused
from services.targets.base import Target, UpsertResult
from services.targets.clients import Clients

log = logging.getLogger(__name__)

AUTH_ALERT = "target_credentials_refused"
# A step stops waiting once no call has ended for this long: what is left in flight
# is slow, and the consumer is polled meanwhile (its calls go on in their threads).
QUIET_S = 0.1

# Opens a tenant's target, with this loader's share of its rate limit (None: no limit).
Opener = Callable[[Tenant, GroupRate | None], Target]


class Loader:
    def __init__(
        self,
        serde: Serde,
        tenants: dict[str, Tenant],
        max_in_flight: int = 16,
        *,
        kafka: KafkaSettings | None = None,
        writer: str = "loader",
        max_parked: int = 10_000,
        max_parked_per_tenant: int = 5_000,
        step_wait_s: float = 0.5,
        breaker_max_cooldown_s: float = 300.0,
        workers: int = 64,
        partitions: int | None = None,
        targets: Mapping[str, Target] | None = None,
        opener: Opener | None = None,
        alerter: Alerter | None = None,
        seek: Callable[[TopicPartition], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`max_in_flight`: the most calls one tenant has in flight in this loader (with
        its share of its target's `concurrency`); `workers`: the threads making calls,
        for all tenants together; `partitions`: the canonical topic's partition count,
        of which this loader's share sets its share of each tenant's limits (None: it
        takes them whole); `targets`: tenants' targets given (tests), `opener` opens the
        others (default: on one HTTP client per target host); `seek`: the consumer's,
        to read spilled records again."""
        self.serde = serde
        self.kafka = kafka
        self.writer = writer
        self.max_in_flight = max_in_flight
        self.max_parked = max_parked
        self.max_parked_per_tenant = max_parked_per_tenant
        self.step_wait_s = step_wait_s
        self.breaker_max_cooldown_s = breaker_max_cooldown_s
        self.partitions = partitions
        self.alerter = alerter
        self.rereads = Rereads(seek)
        self._clock = clock
        self.workers = Workers(workers)
        self.clients = Clients(workers)
        self._given = dict(targets or {})
        self._opener = opener or self._open_target
        self._held: set[int] = set()  # canonical partitions assigned to this loader
        self._wake = threading.Event()  # a lane is low on work
        self.tenants: dict[str, Tenant] = {}
        self.targets: dict[str, Target] = {}
        self.breakers: dict[str, Breaker] = {}
        self.rates: dict[str, GroupRate] = {}
        self.lanes: dict[str, Lane] = {}
        self._retiring: list[Lane] = []  # removed tenants' lanes, until their calls end
        self._replaced: list[tuple[Lane, Target]] = []  # closed once the lane is idle
        self._next_tenants: dict[str, Tenant] | None = None  # set_tenants, not applied yet
        self._tenants_lock = threading.Lock()
        self.ids = TargetIds(kafka, serde, {t.id: t.target.identity for t in tenants.values()})
        self._refused: dict[str, str] = {}  # tenant -> why its credentials were refused
        self.states = StateWriter(writer, serde, tenants)
        for tenant in tenants.values():
            self._add(tenant)

    def restore(self, states: list[dict[str, Any]]) -> None:
        """Carry on from this writer's stored states (counts, last load time)."""
        self.states.restore(states)

    def close(self) -> None:
        self.workers.close()
        for target in [*self.targets.values(), *(lane.target for lane in self._retiring)]:
            target.close()
        for _lane, target in self._replaced:
            target.close()
        self.clients.close()

    # -- tenants ----------------------------------------------------------------------

    def set_tenants(self, tenants: dict[str, Tenant]) -> None:
        """The tenants to load from now on (any thread): applied at the start of the next
        step. A new tenant gets its target and lane; a changed target is opened again
        (the tenant's pending records kept, its breaker closed); a removed tenant's
        records not yet started are dead-lettered (`unknown_tenant`), like its later
        ones, and its lane goes once its calls in flight have ended."""
        with self._tenants_lock:
            self._next_tenants = dict(tenants)

    def _apply_tenants(self, result: BatchResult) -> None:
        with self._tenants_lock:
            wanted, self._next_tenants = self._next_tenants, None
        if wanted is None:
            return
        gone = [t for t in self.tenants if t not in wanted]
        added = [t for t in wanted.values() if t.id not in self.tenants]
        changed = [
            t
            for t in wanted.values()
            if t.id in self.tenants and t.target != self.tenants[t.id].target
        ]
        for tenant_id in gone:
            self._remove(tenant_id, result)
        for tenant in added:
            self._add(tenant)
        for tenant in changed:
            self._change(tenant)
        self.tenants.update(wanted)  # (a change of anything but the target: nothing to do)
        if gone or added or changed:
            log.info(
                "tenants: %d added, %d changed, %d removed (%d now)",
                len(added),
                len(changed),
                len(gone),
                len(self.tenants),
                extra={"added": [t.id for t in added], "changed": [t.id for t in changed]},
            )

    def _open_target(self, tenant: Tenant, rate: GroupRate | None) -> Target:
        config = tenant.target
        return open_target(tenant.id, config, self.clients.for_target(config), limiter=rate)

    def _add(self, tenant: Tenant) -> None:
        config = tenant.target
        rate = self._rate_of(tenant)
        target = self._given.pop(tenant.id, None) or self._opener(tenant, rate)
        breaker = self._breaker_of(tenant)
        self.tenants[tenant.id] = tenant
        self.targets[tenant.id] = target
        self.breakers[tenant.id] = breaker
        self.ids.identities[tenant.id] = config.identity
        self.lanes[tenant.id] = Lane(
            tenant.id,
            target,
            breaker,
            self._concurrency_of(tenant),
            self.max_parked_per_tenant,
            self.workers,
            self.rereads,
            self._wake,
        )
        _export_breaker(tenant, breaker)

    def _change(self, tenant: Tenant) -> None:
        lane = self.lanes[tenant.id]
        old = self.tenants[tenant.id]
        self._replaced.append((lane, lane.target))  # its calls in flight end on it
        lane.target = self.targets[tenant.id] = self._opener(tenant, self._rate_of(tenant))
        lane.breaker = self.breakers[tenant.id] = self._breaker_of(tenant)
        self.tenants[tenant.id] = tenant
        lane.concurrency = self._concurrency_of(tenant)
        if old.target.identity != tenant.target.identity:
            self.ids.forget(tenant.id)  # another target instance: its ids are worth nothing
        self.ids.identities[tenant.id] = tenant.target.identity
        self._answered(tenant.id, lane.breaker)  # refused credentials may be new ones now
        _unexport_breaker(old)
        _export_breaker(tenant, lane.breaker)

    def _remove(self, tenant_id: str, result: BatchResult) -> None:
        lane = self.lanes.pop(tenant_id)
        old = self.tenants.pop(tenant_id)
        del self.targets[tenant_id], self.breakers[tenant_id]
        self.rates.pop(tenant_id, None)
        self._answered(tenant_id, lane.breaker)  # no alert left firing for it
        _unexport_breaker(old)
        lane.cancel()  # calls not running yet are not made
        for sku, pending in list(lane.pending.items()):
            started = lane.in_flight.get(sku)
            if started is None or started[0] is not pending:
                result.failures.append((pending.msg, _removed(tenant_id)))
                del lane.pending[sku]
        self.rereads.read_again(dict(lane.spilled))
        lane.spilled.clear()
        self._retiring.append(lane)

    def _rate_of(self, tenant: Tenant) -> GroupRate | None:
        rps = tenant.target.rate_limit_rps
        if not rps:
            self.rates.pop(tenant.id, None)
            return None
        rate = self.rates[tenant.id] = GroupRate(rps, self._share() or 1.0)
        return rate

    def _breaker_of(self, tenant: Tenant) -> Breaker:
        return Breaker(
            tenant.id,
            tenant.target.breaker_failures,
            tenant.target.breaker_cooldown_s,
            max_cooldown_s=self.breaker_max_cooldown_s,
        )

    # -- this loader's share of the group's limits (shares.py) ---------------------------

    def _share(self) -> float | None:
        """The share of the canonical partitions this loader holds (None: all, or not
        known)."""
        if not self.partitions or not self._held:
            return None
        return min(1.0, len(self._held) / self.partitions)

    def _concurrency_of(self, tenant: Tenant) -> int:
        concurrency = tenant.target.concurrency
        if self.partitions:  # (holding none: 1, for the calls it may still have to end)
            concurrency = concurrency_share(tenant.id, concurrency, self._held, self.partitions)
        return min(concurrency, self.max_in_flight)

    def _reshare(self) -> None:
        share = self._share()
        for tenant_id, lane in self.lanes.items():
            lane.concurrency = self._concurrency_of(self.tenants[tenant_id])
        if share is not None:  # (holding nothing, it has nothing to send)
            for rate in self.rates.values():
                rate.reshare(share)

    # -- what the run loop asks ---------------------------------------------------------

    def holds(self) -> dict[Partition, int]:
        """The lowest offset of a pending (or spilled) record per (topic, partition)."""
        low: dict[Partition, int] = {}
        self.rereads.holds(low)
        for lane in [*self.lanes.values(), *self._retiring]:
            lane.holds(low)
        return low

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget the pending records of partitions this loader no longer owns: their new
        owner reads them again from the committed offset."""
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self.rereads.revoked(gone)
        for lane in [*self.lanes.values(), *self._retiring]:
            lane.revoked(gone)
            # Calls not running yet are not made: some are of records no longer ours, and
            # this loader's share of the limits just shrank (ours start again next step).
            lane.cancel()
        self.ids.revoked(partitions)
        self._held -= {tp.partition for tp in partitions}
        self._reshare()

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """Read back the target ids of newly assigned partitions; take this loader's new
        share of the tenants' limits."""
        self.ids.assigned(partitions)
        self._held |= {tp.partition for tp in partitions}
        self._reshare()

    def rewound(self, batch: list[Message]) -> None:
        """The run loop reads `batch` again (its outputs were not committed)."""
        self.rereads.rewound(batch)

    def parked(self) -> int:
        return sum(len(lane.pending) for lane in [*self.lanes.values(), *self._retiring])

    # -- the step -------------------------------------------------------------------------

    def handle_batch(self, batch: list[Message]) -> BatchResult:
        result = BatchResult()
        self._apply_tenants(result)  # (set_tenants: between steps, never during one)
        tallies: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._collect(result, tallies)  # what ended since the last step, first
        self.rereads.batch()
        # Back-pressure: past `max_parked` held in all, a new record is spilled (read
        # again later, its offset held), never refused with the batch: the step below
        # must still run, or the records held would never go and nothing would move.
        room = self.max_parked - self.parked()
        for msg in batch:
            if not self.rereads.take(msg):  # read again for a spilled record near it
                result.counts["already taken"] += 1
                continue
            if self._spilled_undecoded(msg, room <= 0):
                result.counts["spilled"] += 1
                continue
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
            pending = Pending(msg, str(product["sku"]))
            kept = self.lanes[product["tenant"]].offer(pending, room <= 0)
            if kept == "kept":
                room -= 1
            else:
                result.counts[kept] += 1
        self._step(result, tallies)
        self._rewind()
        touched = self._account(tallies)
        result.outputs.extend(self._state_records(touched))
        return result

    def _spilled_undecoded(self, msg: Message, full: bool) -> bool:
        """Spill `msg` by its key (`<tenant>/<sku>`) without decoding it when its lane
        would not keep it (`Lane.spills`; `full`: no room in the loader). Decoding every
        record a pass reads only to spill it again made reading past a full loader cost
        as much as keeping the records. False: decode it."""
        tenant, sku = split_key(msg.key())
        lane = self.lanes.get(tenant)
        if lane is None or not sku or not lane.spills(msg, sku, full):
            return False
        lane.spill(msg)
        return True

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
                    lane.start(pending, self._upsert, lane, pending, known)
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
        self._collect_retiring(result, tallies)
        return failed

    def _collect_retiring(self, result: BatchResult, tallies: dict[str, Counter[str]]) -> None:
        """Removed tenants' calls that ended: written, or dead-lettered (as refused by
        the target, or as of a tenant no longer loaded); a lane with none left goes."""
        closed = False
        for lane in list(self._retiring):
            for pending, future in lane.finished():
                error = None if future.cancelled() else future.exception()
                if future.cancelled() or error is not None:
                    why = error if isinstance(error, SkippableError) else _removed(lane.tenant)
                    if lane.is_current(pending):
                        result.failures.append((pending.msg, why))
                        tallies[lane.tenant]["failed"] += 1
                else:
                    tallies[lane.tenant]["loaded"] += 1
                lane.done(pending)
            if not lane.in_flight:
                self._retiring.remove(lane)
                lane.target.close()
                closed = True
        for lane, target in list(self._replaced):
            if not lane.in_flight or lane not in self.lanes.values():
                self._replaced.remove((lane, target))
                target.close()
                closed = True
        if closed and not self._retiring and not self._replaced:
            # A host no tenant is on any more (and no call is still ending on): its
            # client goes.
            self.clients.keep([t.target for t in self.tenants.values()])

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
        if future.cancelled():
            return False  # never made (a revocation): started again if still ours
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

    def _upsert(self, lane: Lane, pending: Pending, known_id: str | None) -> UpsertResult:
        """Runs in a worker thread: every call the target makes carries the product's
        trace (`traceparent`, a new span each), and log lines its tenant, trace and record."""
        product = self.serde.decode_as("CanonicalProduct", pending.msg.value())
        with (
            logs.context(tenant=lane.tenant, **tracing.record_fields(pending.msg)),
            tracing.active(tracing.received(pending.msg, product["trace_id"])),
        ):
            lane.breaker.check()  # opened meanwhile: don't call a target that is down
            return lane.target.upsert(product, known_id)

    def _rewind(self) -> None:
        """Read again what lanes spilled, once they have room for it: each partition from
        the lowest offset any lane asks (one seek each: a second would undo the first).
        The offset stays held until its record is back (a crash meanwhile loses nothing)."""
        if self.parked() > self.max_parked // 2:
            return  # no room yet: what is read again would be spilled again
        seeks: dict[Partition, int] = {}
        for lane in self.lanes.values():
            for tp in lane.rewinds():
                where = (tp.topic, tp.partition)
                seeks[where] = min(tp.offset, seeks.get(where, tp.offset))
        self.rereads.read_again(seeks)

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

    def _account(self, tallies: dict[str, Counter[str]]) -> set[str]:
        """Count the step's outcomes and set each tenant's status; the tenants whose
        state may have changed."""
        now = datetime.now(UTC)
        touched = set(tallies)
        for tenant in {*self.lanes, *tallies}:
            tally = tallies.get(tenant, Counter())
            state = self.states[tenant]
            before = (state.get("status"), state.get("last_error"))
            state["loaded"] += tally["loaded"]
            state["failed"] += tally["failed"]
            state["dead_lettered"] += tally["failed"]
            if tally["loaded"]:
                state["last_load_at"] = now
                metrics.mark_success(tenant, "load")
            if tenant not in self.lanes:
                continue  # removed: its last calls counted, no status of its own any more
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
            if (state.get("status"), state.get("last_error")) != before:
                touched.add(tenant)
        return touched

    def _state_records(self, touched: set[str]) -> list[Any]:
        """A SyncState record for each tenant whose state changed since the last one."""
        if self.kafka is None:
            return []
        return self.states.records(self.kafka, touched)


def _removed(tenant: str) -> UnknownTenant:
    return UnknownTenant(
        f"tenant {tenant}: removed from the loaded tenants; no target configured for it",
        tenant=tenant,
    )


def breaker_value(breaker: Breaker) -> float:
    return metrics.BREAKER_VALUES[str(breaker.state)]


def _export_breaker(tenant: Tenant, breaker: Breaker) -> None:
    metrics.BREAKER_STATE.labels(tenant=tenant.id, target=tenant.target.type).set_function(
        partial(breaker_value, breaker)
    )


def _unexport_breaker(tenant: Tenant) -> None:
    try:
        metrics.BREAKER_STATE.remove(tenant.id, tenant.target.type)
    except KeyError:
        pass  # never exported
