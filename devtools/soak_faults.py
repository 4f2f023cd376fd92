"""The soak's faults as they happen: target outages and 429 storms (through the
simulators' fault settings), service kills, a broker restart and an operator resync,
each begun and ended on schedule (devtools/soak_plan.py) and recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from devtools.broker import LocalBroker
from devtools.soak_checks import say
from devtools.soak_load import Tenant
from devtools.soak_plan import Planned
from devtools.stack import Stack


@dataclass
class Faults:
    broker: LocalBroker
    stack: Stack
    tenants: list[Tenant]
    elapsed: Callable[[], float]  # seconds since the soak's load began
    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    broker_thread: threading.Thread | None = None

    def tenant_of(self, target: str) -> Tenant:
        return next(t for t in self.tenants if t.target == target)

    def set_target(self, target: str, faults: dict[str, Any]) -> None:
        """Set a simulator's faults; Kong and WMS keep refusing their rejected ids."""
        if target == "siesa":
            self.stack.set_faults(self.stack.siesa_url, **faults)
            return
        tenant = self.tenant_of(target)
        self.stack.set_faults(tenant.url(self.stack), reject_external_ids=tenant.rejected, **faults)

    def _sim_url(self, target: str) -> str:
        return self.stack.siesa_url if target == "siesa" else self.tenant_of(target).url(self.stack)

    def begin(self, planned: Planned) -> dict[str, Any]:
        at = round(self.elapsed(), 1)
        record: dict[str, Any] = {"kind": planned.kind, "target": planned.target, "at_s": at}
        say(f"[{at:7.1f}s] fault: {planned.name} {planned.faults or ''}".rstrip())
        if planned.kind in ("target_outage", "429_storm"):
            faults = dict(planned.faults)
            if planned.kind == "target_outage":
                faults["error_status"] = 503
            self.set_target(planned.target, faults)
            record["duration_s"] = planned.duration_s
        elif planned.kind == "service_kill":
            self.stack.kill(planned.target)
        elif planned.kind == "broker_restart":
            down = planned.duration_s
            self.broker_thread = threading.Thread(
                target=self._restart_broker, args=(record, down), daemon=True
            )
            self.broker_thread.start()
        elif planned.kind == "resync":
            tenant = self.tenant_of("kong")
            record["target"] = tenant.id
            self.wait_broker()
            say(f"  {self.stack.run_cli(['resync', '--tenant', tenant.id]).strip()}")
        self.records.append(record)
        return record

    def end(self, planned: Planned, record: dict[str, Any]) -> None:
        if planned.kind in ("target_outage", "429_storm"):
            answer = httpx.get(f"{self._sim_url(planned.target)}/_admin/faults", timeout=30)
            record["injected"] = answer.json().get("injected", {})
            self.set_target(planned.target, {})
        elif planned.kind == "service_kill":
            self.stack.restart(planned.target)
            record["restarted_after_s"] = round(self.elapsed() - record["at_s"], 1)
        say(f"[{self.elapsed():7.1f}s] end of {planned.name} {record.get('injected', '')}".rstrip())

    def _restart_broker(self, record: dict[str, Any], down_s: float) -> None:
        began = time.monotonic()
        try:
            self.broker.restart(down_s=down_s)
            record["back_after_s"] = round(time.monotonic() - began, 1)
        except Exception as exc:  # noqa: BLE001 - reported as a failed check, not lost
            self.errors.append(f"broker restart failed: {exc}")

    def wait_broker(self) -> None:
        if self.broker_thread is not None:
            self.broker_thread.join(timeout=180)
