"""One tenant's lane in the loader: what it has pending, what is in flight, its target,
its breaker, and how many of its records it may keep.

Lanes are what keeps tenants apart. A lane has at most `concurrency` calls running at
once, on the loader's one pool of threads (`workers.py`): its other started calls wait
in its own queue, handed to a thread only when it has a free slot, lanes taking turns.
So a tenant whose target is slow, or silent until its timeout, only ever occupies its
own slots: another tenant's records never queue behind its calls. The loader does not
wait for a lane's calls to end: it hands a lane new work when the lane has room and
collects what is done at every step.

A lane keeps at most `max_parked` records (distinct products, newest version each).
Past that, a record of the tenant is not kept but *spilled*: only the lowest spilled
offset per partition is remembered, offsets are never committed past it, and once the
lane has room again those partitions are read again from there (`rewinds`), taking back
only the records spilled (`rereads.py`). So a tenant whose target refuses it for hours
costs bounded memory and holds no one else up. The loader's own bound on all lanes
together spills the same way (`offer(full=True)`). Once a lane spilled a record of a
partition, it spills its later records of that partition too until they are read
again: kept, a newer version could be written before the spilled older one, which
would then overwrite it.

An idle lane is small (a few empty dicts, a breaker; its queue exists only while it has
work): the loader's memory grows with the work in flight, not with the tenants.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import Message, TopicPartition

from services.common.records import coordinates
from services.loader.breaker import Breaker, BreakerState
from services.loader.rereads import Partition, Rereads
from services.loader.workers import Workers
from services.targets.base import Target, UpsertResult

# Calls started per slot of a lane: the ones queued (in the lane's own queue) keep its
# slots busy while the loader polls, commits or waits on the broker; no other tenant
# waits behind them, and a queued call whose breaker has opened meanwhile is not made.
QUEUED_PER_SLOT = 64


@dataclass(frozen=True, eq=False, slots=True)
class Pending:
    """A record kept to write: its message and its product's sku alone. The product is
    decoded again when its call starts: a decoded product and its trace cost ~1.6 KB,
    which tens of thousands of records held ahead of slow targets would each keep."""

    msg: Message
    sku: str


class Lane:
    def __init__(
        self,
        tenant: str,
        target: Target,
        breaker: Breaker,
        concurrency: int,
        max_parked: int,
        workers: Workers,
        rereads: Rereads,
        wake: threading.Event | None = None,
    ) -> None:
        """`rereads`: the loader's, told what is spilled; `wake`: set when the lane runs
        low on work (its queued calls have started), so the loader hands it more without
        waking at every call's end."""
        self.tenant = tenant
        self.target = target  # (replaced when the tenant's target changes)
        self.workers = workers
        self.rereads = rereads
        self.wake = wake or threading.Event()
        self._lock = threading.Lock()
        self._unfinished = 0
        self._ended_calls: deque[tuple[str, Future[UpsertResult]]] = deque()  # not collected
        self.ended = 0  # calls ended so far (the loader sees whether calls keep ending)
        self.breaker = breaker
        self._concurrency = concurrency
        self.max_parked = max_parked
        self.pending: dict[str, Pending] = {}
        self.in_flight: dict[str, tuple[Pending, Future[UpsertResult]]] = {}
        self.spilled: dict[Partition, int] = {}

    @property
    def concurrency(self) -> int:
        """The most calls of this lane running at once."""
        return self._concurrency

    @concurrency.setter
    def concurrency(self, value: int) -> None:
        self._concurrency = max(1, value)
        self.workers.resized(self)

    def cancel(self) -> None:
        """Calls started but not running yet are not made (they end cancelled)."""
        self.workers.cancel(self)

    # -- records in ------------------------------------------------------------------

    def offer(self, pending: Pending, full: bool = False) -> str:
        """Keep `pending` (newest version of its product): "kept", "superseded" (an older
        version was replaced, or this one is older than the one kept) or "spilled" (past
        the lane's bound, or `full`: past the loader's)."""
        older = self.pending.get(pending.sku)
        if older is not None:
            if (older.msg.offset() or 0) > (pending.msg.offset() or 0):
                return "superseded"  # a replay of an older version
            self.pending[pending.sku] = pending
            return "superseded"
        if self.spills(pending.msg, pending.sku, full):
            self.spill(pending.msg)
            return "spilled"
        self.pending[pending.sku] = pending
        return "kept"

    def spills(self, msg: Message, sku: str, full: bool = False) -> bool:
        """Whether a record of `sku` is not to be kept: past the lane's bound or the
        loader's (`full`), or after a record of its partition this lane spilled (not
        read again yet); never when a version of its product is kept (it replaces it)."""
        if sku in self.pending:
            return False
        topic, partition, _offset = coordinates(msg)
        return full or len(self.pending) >= self.max_parked or (topic, partition) in self.spilled

    def spill(self, msg: Message) -> None:
        """Not kept: its partition is read again from it (the lowest offset spilled),
        and only it and the others spilled are taken then."""
        topic, partition, offset = coordinates(msg)
        if offset < self.spilled.get((topic, partition), offset + 1):
            self.spilled[topic, partition] = offset
        self.rereads.spill(msg)

    def is_current(self, pending: Pending) -> bool:
        """Whether `pending` is still the version to write (not replaced, not revoked)."""
        return self.pending.get(pending.sku) is pending

    def done(self, pending: Pending) -> None:
        if self.is_current(pending):
            del self.pending[pending.sku]

    # -- work out ----------------------------------------------------------------------

    def ready(self, tried: set[int]) -> list[Pending]:
        """The records to start now: none while the breaker is open, one probe when it is
        half open (and nothing is in flight), else up to the lane's free room (a few
        calls per slot, queued in the lane's own queue). A record
        is never started while an older version of its product is in flight, nor again
        in the step that already tried it (`tried`: ids of records that failed)."""
        state = self.breaker.state
        if state is BreakerState.OPEN:
            return []
        room = self.concurrency * QUEUED_PER_SLOT - len(self.in_flight)
        if state is BreakerState.HALF_OPEN:
            room = 0 if self.in_flight else 1
        todo: list[Pending] = []
        for sku, pending in self.pending.items():
            if len(todo) >= room:
                break
            if sku not in self.in_flight and id(pending) not in tried:
                todo.append(pending)
        return todo

    def start(self, pending: Pending, call: Any, *args: Any) -> None:
        with self._lock:
            self._unfinished += 1
        future: Future[UpsertResult] = self.workers.submit(self, call, *args)
        self.in_flight[pending.sku] = (pending, future)
        future.add_done_callback(partial(self._ended, pending.sku))

    def _ended(self, sku: str, future: Future[UpsertResult]) -> None:
        with self._lock:
            self._unfinished -= 1
            self.ended += 1
            self._ended_calls.append((sku, future))
            low = self._unfinished <= self.concurrency
        if low:
            self.wake.set()

    def finished(self) -> Iterator[tuple[Pending, Future[UpsertResult]]]:
        """The calls that are over (taken out of flight), in the order they ended: only
        those are looked at, not every call in flight (thousands at 1,000 tenants, at
        every turn of a step)."""
        while True:
            with self._lock:
                if not self._ended_calls:
                    return
                sku, future = self._ended_calls.popleft()
            flying = self.in_flight.get(sku)
            if flying is not None and flying[1] is future:
                del self.in_flight[sku]
                yield flying

    # -- offsets -----------------------------------------------------------------------

    def holds(self, low: dict[Partition, int]) -> None:
        """Lower `low` to the lowest offset this lane still holds per partition."""
        for pending in self.pending.values():
            topic, partition, offset = coordinates(pending.msg)
            if offset < low.get((topic, partition), offset + 1):
                low[topic, partition] = offset
        for where, offset in self.spilled.items():
            if offset < low.get(where, offset + 1):
                low[where] = offset

    def rewinds(self) -> list[TopicPartition]:
        """Where to read again, once the lane has room for what it spilled (half of its
        bound free and its target writable): the spilled partitions at their lowest
        spilled offset. Forgotten here: the loader holds them until they are read."""
        if not self.spilled or len(self.pending) > self.max_parked // 2:
            return []
        if self.breaker.state is not BreakerState.CLOSED:
            return []
        seeks = [TopicPartition(t, p, offset) for (t, p), offset in self.spilled.items()]
        self.spilled.clear()
        return seeks

    def revoked(self, gone: set[Partition]) -> None:
        """Forget what this lane holds of partitions no longer this loader's; a call in
        flight for one of them ends unheeded (its new owner writes the record again)."""
        for sku in [s for s, p in self.pending.items() if coordinates(p.msg)[:2] in gone]:
            del self.pending[sku]
        for where in [w for w in self.spilled if w in gone]:
            del self.spilled[where]
