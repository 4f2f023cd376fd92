"""One tenant's polling loop: pick the scan the tenant's mode asks for, run it, record
how it went, back off on failure; operator commands (resync, pause, resume) arrive
through `command` and are applied between scans.

`step` is one turn (commands, then the scan due, or none while paused) and says when
the tenant is next due: the extractor's `Scheduler` (schedule.py) runs the steps of
every tenant on a few worker threads; `run` is the same loop on a thread of its own.

- ``diff``: a full scan every ``poll_interval_s``;
- ``filter``: a filtered scan every ``poll_interval_s``;
- ``hybrid``: a filtered scan every ``poll_interval_s`` and a full (diff) reconcile
  every ``reconcile_interval_s`` (also the first scan, when nothing was reconciled yet).

A failing tenant shows ``failed`` (its source refused its credentials) or ``degraded``
(any other error: Siesa's ``codigo != 0``, an outage past the retries, an answer over
a cap...) with the reason in ``last_error``; its next successful scan sets it back to
``idle``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common import health, metrics
from services.common.alerts import Alerter
from services.common.errors import FatalError, RetriableError, SyncError
from services.common.stopper import Stopper
from services.common.tenants import Tenant
from services.extractor.memory import TenantMemory
from services.extractor.scan import ScanKind, Scanner, ScanResult
from services.sources.base import CredentialsRefused, SourceLimit, StopRequested

log = logging.getLogger(__name__)

COMMANDS = ("resync", "pause", "resume")
MAX_ERROR_LENGTH = 1000
# A paused tenant is looked at again after this long (a `resume` wakes it at once).
PAUSED_RECHECK_S = 3600.0


@dataclass
class TenantPoller:
    scanner: Scanner
    max_backoff_s: float = 60.0
    alerter: Alerter | None = None
    # Passing faults alert only once they last this many scans in a row.
    alert_after_failures: int = 3
    resync_requested: bool = False
    # Told of each command queued (the Scheduler's `commanded`: a resync or a resume
    # makes the tenant due at once).
    on_command: Callable[[str], None] | None = None
    # Failed scans in a row (the backoff grows with them).
    _failures: int = 0
    _commands: queue.SimpleQueue[str] = field(default_factory=queue.SimpleQueue)
    _wake: threading.Event = field(default_factory=threading.Event)

    @property
    def tenant(self) -> Tenant:
        return self.scanner.tenant

    @property
    def memory(self) -> TenantMemory:
        return self.scanner.memory

    @property
    def paused(self) -> bool:
        return bool(self.memory.state.get("paused"))

    def command(self, name: str) -> None:
        """Queue an operator command (any thread); the loop applies it before its next scan."""
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}")
        self._commands.put(name)
        self._wake.set()
        if self.on_command is not None:
            self.on_command(name)

    @property
    def tenant_id(self) -> str:
        return self.scanner.tenant.id

    def run(self, stopper: Stopper) -> None:
        """Poll this tenant on the calling thread until `stopper` stops it (a loop of
        `step`s with a heartbeat of its own); the extractor runs `step` on a
        `Scheduler`'s workers instead (services/extractor/schedule.py)."""
        # Liveness: busy while scanning, where each call Siesa answers is progress.
        beat = health.current().heartbeat(
            f"poll {self.tenant.id}", progress=lambda: metrics.calls_made(self.tenant.id)
        )
        try:
            while not stopper.stopped:
                beat.beat()
                try:
                    due = self.step(stopper)
                except StopRequested:
                    break
                beat.idle()
                self._sleep(stopper, max(0.0, due - time.monotonic()))
        finally:
            health.current().forget(beat.name)
            self.close()

    def step(self, stopper: Stopper | None = None) -> float:
        """One turn of the tenant: the commands queued so far applied, then the scan due
        (none while paused), its outcome recorded; returns when (`time.monotonic()`) the
        tenant is next due: a poll interval after this scan began, later after failures
        (backoff, doubling up to ``max_backoff_s``, or a source's Retry-After), an hour
        on while paused (a `resume` makes it due at once). Raises `FatalError` (stop
        everything) and `StopRequested` (the stop came while a request waited); any
        other error is this tenant's alone: recorded, alerted, backed off."""
        self._apply_commands()
        if self.paused:
            return time.monotonic() + PAUSED_RECHECK_S
        started = time.monotonic()
        try:
            self.poll_once(stopper)
            self._failures = 0
            self._healthy()
            delay = self.tenant.source.poll_interval_s - (time.monotonic() - started)
        except (FatalError, StopRequested):
            raise
        except SyncError as exc:
            self._failures += 1
            delay = self._failed(self._failures, exc)
        except Exception as exc:  # this tenant's scan failed; the others go on
            self._failures += 1
            log.exception("tenant %s: unexpected error in a scan", self.tenant.id)
            error = SyncError(f"unexpected {type(exc).__name__}: {exc}")
            error.error_class = "unexpected"
            delay = self._failed(self._failures, error)
        return time.monotonic() + max(0.0, delay)

    def close(self) -> None:
        """Release the tenant's scanner (its commit thread, its source)."""
        self.scanner.close()

    def poll_once(self, stopper: Stopper | None = None) -> ScanResult:
        """The scan due now (see the module's doc)."""
        kind = self.next_kind()
        reemit = self.resync_requested
        with metrics.POLL_SECONDS.labels(tenant=self.tenant.id, mode=kind).time():
            result = self.scanner.scan(kind, reemit=reemit, stopper=stopper)
        if reemit and result.complete:
            self.resync_requested = False
        return result

    def next_kind(self) -> ScanKind:
        mode = self.tenant.source.effective_mode
        if mode == "diff" or self.resync_requested:
            return "diff"
        if mode == "filter":
            return "filter"
        reconciled = self.memory.cursor.reconciled_at_ms
        interval_ms = self.tenant.source.reconcile_interval_s * 1000
        if reconciled is None or time.time() * 1000 - reconciled >= interval_ms:
            return "diff"
        return "filter"

    def _apply_commands(self) -> None:
        while True:
            try:
                name = self._commands.get_nowait()
            except queue.Empty:
                return
            log.info(
                "tenant %s: command %s", self.tenant.id, name, extra={"tenant": self.tenant.id}
            )
            if name == "resync":
                self.resync_requested = True
            elif (name == "pause") != self.paused:
                self._store_state(paused=name == "pause")

    def _failed(self, failures: int, exc: SyncError) -> float:
        status = "failed" if isinstance(exc, CredentialsRefused) else "degraded"
        self._store_state(
            status=status, last_error=f"{exc.error_class}: {exc.message}"[:MAX_ERROR_LENGTH]
        )
        metrics.TENANT_STATUS.labels(tenant=self.tenant.id, stage="extract").set(1)
        if self.alerter is not None and (
            status == "failed"
            or failures >= self.alert_after_failures
            or isinstance(exc, SourceLimit)  # no retry changes it: said at once
        ):
            self.alerter.fire(self.tenant.id, "sync_failed", f"{status}: {exc.message}")
        delay = min(self.max_backoff_s, self.tenant.source.poll_interval_s * 2.0**failures)
        if isinstance(exc, RetriableError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        log.error(
            "tenant %s: %s (%d in a row), next try in %.1fs: %s",
            self.tenant.id,
            status,
            failures,
            delay,
            exc.message,
            extra={"tenant": self.tenant.id, "error_class": exc.error_class},
        )
        return delay

    def _healthy(self) -> None:
        metrics.TENANT_STATUS.labels(tenant=self.tenant.id, stage="extract").set(0)
        metrics.mark_success(self.tenant.id, "extract")
        if self.alerter is not None:
            self.alerter.clear(self.tenant.id, "sync_failed")

    def _store_state(self, **update: object) -> None:
        try:
            self.scanner.store_state(**update)
        except RetriableError as exc:
            log.warning("tenant %s: could not store its state: %s", self.tenant.id, exc.message)

    def _sleep(self, stopper: Stopper, seconds: float) -> None:
        """Wait `seconds`, or less when stopped or woken by a command."""
        deadline = time.monotonic() + seconds
        while not stopper.stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self._wake.wait(min(0.2, left)):
                self._wake.clear()
                return
