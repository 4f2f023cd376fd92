"""Stand-in scheduler: a thread per started tenant, behind the interface of the bounded
pool that replaces it (branch extractor-sched): `Scheduler(workers, stopper)`,
`start(poller)`, `stop(tenant)`, `command(tenant, name)`, `run()`, `tenants()`.

Each tenant polls on its own thread with a stop flag of its own (set by `stop` or by
the process's stop), so a stop ends its scan at the next page: what was read is
committed, the rest read again by the next owner. A FatalError from a tenant's loop
stops the whole scheduler and `run` raises it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from services.common.errors import FatalError
from services.common.stopper import Stopper
from services.extractor.poller import TenantPoller


class _TenantStop(Stopper):
    """A tenant's stop flag: set alone, or with the process's."""

    def __init__(self, parent: Stopper) -> None:
        super().__init__()
        self.parent = parent

    @property
    def stopped(self) -> bool:
        return self._event.is_set() or self.parent.stopped

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds) or self.parent.stopped


@dataclass
class _Running:
    poller: TenantPoller
    stop: _TenantStop
    thread: threading.Thread


class Scheduler:
    def __init__(self, workers: int, stopper: Stopper) -> None:
        self.workers = workers  # unused by the stand-in: a thread per tenant
        self.stopper = stopper
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._failures: list[FatalError] = []

    def tenants(self) -> list[str]:
        with self._lock:
            return list(self._running)

    def start(self, poller: TenantPoller) -> None:
        tenant = poller.tenant.id
        stop = _TenantStop(self.stopper)

        def body() -> None:
            try:
                poller.run(stop)
            except FatalError as exc:
                self._failures.append(exc)
                self.stopper.stop()

        thread = threading.Thread(target=body, name=f"poll-{tenant}")
        with self._lock:
            if tenant in self._running:
                raise ValueError(f"tenant {tenant} already started")
            self._running[tenant] = _Running(poller, stop, thread)
        thread.start()

    def stop(self, tenant: str, timeout: float | None = None) -> None:
        """Stop polling `tenant`: returns once its scan in progress has ended."""
        with self._lock:
            running = self._running.pop(tenant, None)
        if running is not None:
            running.stop.stop()
            running.thread.join(timeout)

    def command(self, tenant: str, name: str) -> bool:
        """Hand `name` to the tenant's poller (applied before its next scan); False when
        the tenant is not started here."""
        with self._lock:
            running = self._running.get(tenant)
        if running is None:
            return False
        running.poller.command(name)
        return True

    def run(self) -> None:
        """Until the process's stop; then every tenant is stopped. Raises the first
        FatalError of a tenant's loop."""
        while not self.stopper.wait(1.0):
            pass
        for tenant in self.tenants():
            self.stop(tenant)
        if self._failures:
            raise self._failures[0]
