"""Every tenant's polls on a few worker threads: the extractor's cost per tenant is a
heap entry and its poller, not a thread.

Each tenant scheduled here is due at a time (`time.monotonic()`) kept in a heap; at
most ``workers`` threads take the tenant due the longest (oldest due first), run one
`step` of its poller (commands applied, then the scan due; services/extractor/poller.py)
and put it back in the heap at the time the step says it is next due. A tenant is never
in the heap while its step runs, so one tenant's scans never overlap, and a tenant
whose source is slow or hangs holds one worker while the others poll the rest.

- `start(poller)`: schedule a tenant, due now (any thread, before or while `run`s);
- `stop(tenant, timeout)`: unschedule it and ask its scan in progress to stop (its
  `Stopper`: a scan checks it between pages, a request waiting for the tenant's budget
  or a page ends early with `StopRequested`); returns once that scan has ended (True),
  or False after ``timeout`` (the scan's worker closes the poller when it ends);
- `command(tenant, name)`: resync, pause or resume, applied before the tenant's next
  scan; resync and resume make it due now;
- `run()`: work until the process's stopper stops; then every scan in progress is asked
  to stop, the workers end, every poller is closed. A `FatalError` from a step (e.g. a
  producer fenced) stops the process's stopper, and `run` raises it once all has ended.

Liveness (services/common/health.py): one heartbeat per worker, busy while it runs a
step (each call its tenant's source answers counts as progress), idle while it waits
for a tenant to be due.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from services.common import health, metrics
from services.common.errors import FatalError
from services.common.stopper import Stopper
from services.sources.base import StopRequested

log = logging.getLogger(__name__)

# The longest a worker waits on the heap without looking again (it is woken earlier by
# any change: a tenant started, put back, commanded, or the stop).
MAX_WAIT_S = 1.0
# Commands that make their tenant due at once.
WAKING = ("resync", "resume")


class Poller(Protocol):
    """What the scheduler runs: a tenant's `TenantPoller` (or a test's stand-in)."""

    @property
    def tenant_id(self) -> str: ...

    def step(self, stopper: Stopper | None = None) -> float: ...

    def command(self, name: str) -> None: ...

    def close(self) -> None: ...


class TenantStopper(Stopper):
    """One tenant's stop flag: set by `Scheduler.stop` for that tenant, or by the
    process's stopper (seen by `stopped` and within a second by `wait`)."""

    def __init__(self, parent: Stopper) -> None:
        super().__init__()
        self.parent = parent

    @property
    def stopped(self) -> bool:
        return self._event.is_set() or self.parent.stopped

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._event.wait(min(left, MAX_WAIT_S))
        return True


class _Entry:
    """A scheduled tenant: its poller, its stop flag, when it is due (None: running)."""

    def __init__(self, poller: Poller, stopper: TenantStopper) -> None:
        self.poller = poller
        self.stopper = stopper
        self.due: float | None = None
        self.seq = 0  # the heap item that is current (older ones are skipped)
        self.running = False
        self.wake = False  # a waking command came while its step ran
        self.deferred = False  # due while an earlier poller of its tenant ran


class Scheduler:
    """Tenants' polls on at most ``workers`` threads (see the module's doc)."""

    def __init__(
        self, workers: int, stopper: Stopper, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        self.workers = workers
        self.stopper = stopper
        self._clock = clock
        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = itertools.count(1)
        # Pollers unscheduled while their step ran: closed by the worker when it ends.
        self._orphans: dict[int, Poller] = {}
        self._fatal: list[str] = []
        # Tenants whose step runs (a tenant stopped and started again while its old
        # step still runs waits for that step to end).
        self._running: set[str] = set()

    # -- tenants ---------------------------------------------------------------

    def tenant_stopper(self) -> TenantStopper:
        """A stop flag for a tenant about to be started: give it to the tenant's source
        (its waits for Siesa and for its request budget then end on `stop`) and to
        `start`."""
        return TenantStopper(self.stopper)

    def start(self, poller: Poller, stopper: TenantStopper | None = None) -> None:
        """Schedule `poller`'s tenant, due now; `stopper`: the tenant's stop flag, if
        its source was given one (`tenant_stopper`). A tenant already scheduled is an
        error; one being stopped may be started again (its new poller waits for the
        old step)."""
        tenant = poller.tenant_id
        with self._cond:
            if tenant in self._entries:
                raise ValueError(f"tenant {tenant} is already scheduled")
            entry = _Entry(poller, stopper or TenantStopper(self.stopper))
            self._entries[tenant] = entry
            self._push(tenant, entry, self._clock())

    def stop(self, tenant: str, timeout: float = 30.0) -> bool:
        """Unschedule `tenant`; True once its scan in progress (if any) has ended and
        its poller is closed, False if the scan still runs after ``timeout`` s (its
        worker closes the poller when the scan ends)."""
        with self._cond:
            entry = self._entries.pop(tenant, None)
            if entry is None:
                return True
            entry.stopper.stop()
            self._cond.notify_all()
            deadline = time.monotonic() + timeout
            while entry.running:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._orphans[id(entry.poller)] = entry.poller
                    log.warning("tenant %s: its scan did not end within %.0fs", tenant, timeout)
                    return False
                self._cond.wait(left)
        entry.poller.close()
        return True

    def command(self, tenant: str, name: str) -> None:
        """Hand `name` to the tenant's poller (applied before its next scan); resync and
        resume make the tenant due now. KeyError for a tenant not scheduled here."""
        with self._cond:
            self._entries[tenant].poller.command(name)
        self.commanded(tenant, name)

    def commanded(self, tenant: str, name: str) -> None:
        """`name` was queued on the tenant's poller (by `command`, or by whoever holds
        the poller: a `TenantPoller`'s ``on_command``): resync and resume make the tenant
        due now, or right after its step in progress. A tenant not scheduled: ignored."""
        if name not in WAKING:
            return
        with self._cond:
            entry = self._entries.get(tenant)
            if entry is None:
                return
            if entry.running:
                entry.wake = True
            else:
                self._push(tenant, entry, self._clock())

    def tenants(self) -> list[str]:
        """The tenants scheduled, sorted."""
        with self._cond:
            return sorted(self._entries)

    # -- running ---------------------------------------------------------------

    def run(self) -> None:
        """Work until the process's stopper stops (see the module's doc)."""
        workers = [
            threading.Thread(target=self._work, args=(n,), name=f"extract-{n}")
            for n in range(self.workers)
        ]
        for worker in workers:
            worker.start()
        try:
            while not self.stopper.wait(3600.0):
                pass
        finally:
            with self._cond:
                for entry in self._entries.values():
                    entry.stopper.stop()
                self._cond.notify_all()
            for worker in workers:
                worker.join()
            with self._cond:
                entries, self._entries = list(self._entries.values()), {}
                self._heap.clear()
            for entry in entries:
                entry.poller.close()
        if self._fatal:
            raise FatalError("; ".join(self._fatal))

    def _push(self, tenant: str, entry: _Entry, due: float) -> None:
        """(Under the lock.) Make `tenant` due at `due`, replacing its earlier time."""
        entry.due, entry.seq = due, next(self._seq)
        heapq.heappush(self._heap, (due, entry.seq, tenant))
        self._cond.notify()

    def _take(self) -> tuple[str, _Entry] | None:
        """(Under the lock.) The tenant due the longest, once one is due; None once
        stopping."""
        while not self.stopper.stopped:
            while self._heap:
                _, seq, tenant = self._heap[0]
                entry = self._entries.get(tenant)
                if entry is None or entry.seq != seq or entry.running:
                    heapq.heappop(self._heap)  # stopped, rescheduled or running: stale
                    continue
                if tenant in self._running:  # its old poller's step: put back after it
                    heapq.heappop(self._heap)
                    entry.deferred = True
                    continue
                break
            now = self._clock()
            if self._heap and self._heap[0][0] <= now:
                _, _, tenant = heapq.heappop(self._heap)
                entry = self._entries[tenant]
                entry.running, entry.due, entry.wake = True, None, False
                self._running.add(tenant)
                return tenant, entry
            wait = self._heap[0][0] - now if self._heap else MAX_WAIT_S
            self._cond.wait(min(max(wait, 0.0), MAX_WAIT_S))
        return None

    def _work(self, number: int) -> None:
        current = [""]  # the tenant whose step runs ("": none), for the heartbeat
        beat = health.current().heartbeat(
            f"extract worker {number}", progress=lambda: _calls_of(current[0])
        )
        try:
            while True:
                with self._cond:
                    taken = self._take()
                if taken is None:
                    return
                tenant, entry = taken
                current[0] = tenant
                beat.beat()
                due = self._step(tenant, entry)
                beat.idle()
                current[0] = ""
                self._put_back(tenant, entry, due)
        finally:
            health.current().forget(beat.name)

    def _step(self, tenant: str, entry: _Entry) -> float | None:
        """Run one step of the tenant; when it is next due, None when it stopped."""
        try:
            return entry.poller.step(entry.stopper)
        except StopRequested:
            return None
        except FatalError as exc:
            self._fail(f"tenant {tenant}: {exc.message}")
        except BaseException as exc:  # a step records its tenant's errors: this is a bug
            log.exception("tenant %s: its poller failed", tenant)
            self._fail(f"tenant {tenant}: poller failed: {type(exc).__name__}: {exc}")
        return None

    def _fail(self, message: str) -> None:
        with self._cond:
            self._fatal.append(message)
        self.stopper.stop()  # everything stops, the process exits 1 (run raises)

    def _put_back(self, tenant: str, entry: _Entry, due: float | None) -> None:
        with self._cond:
            entry.running = False
            self._running.discard(tenant)
            now = self._clock()
            current = self._entries.get(tenant)
            if current is entry and not entry.stopper.stopped:
                if due is None:  # StopRequested, yet not stopped: try again shortly
                    due = now + MAX_WAIT_S
                self._push(tenant, entry, now if entry.wake else due)
            elif current is not None and current.deferred:
                current.deferred = False
                self._push(tenant, current, now)
            orphan = self._orphans.pop(id(entry.poller), None)
            self._cond.notify_all()
        if orphan is not None:
            orphan.close()


def _calls_of(tenant: str) -> float:
    """Calls the tenant's source answered so far (0 for no tenant)."""
    return metrics.calls_made(tenant) if tenant else 0.0
