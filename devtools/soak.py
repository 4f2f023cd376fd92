"""`make soak`: the whole pipeline under mixed load and periodic faults for N minutes,
then "target == source" for every tenant, a DLQ holding only the records made to fail
on purpose, and services whose memory did not grow.

    python -m devtools.soak [--minutes 30]

Everything runs on this machine on free ports: its own broker (so it can be restarted)
in a temp folder, the three simulators and the three services (devtools.stack). Two
tenants: a Kong one (hybrid polling, reconcile every minute) and a WMS one (diff
polling), 5,000 seeded items each, polled every 5 s. The faults follow
devtools.soak_plan.schedule (devtools.soak_faults puts them in place), the load is
devtools.soak_load's, the checks devtools.soak_checks'. The summary goes to stdout and
`soak-results.json`; the exit code is 1 if a check failed. Everything started is
stopped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools import procs
from devtools.broker import LocalBroker
from devtools.soak_checks import check, dlq_problems, print_summary, say, target_problems
from devtools.soak_faults import Faults
from devtools.soak_load import Load, Tenant
from devtools.soak_plan import Planned, memory_verdict, schedule
from devtools.stack import SERVICES, Stack
from services.common.settings import KafkaSettings

RESULTS = procs.ROOT / "soak-results.json"
SEEDED = 5000
POLL_S = 5.0
EDITS_PER_MIN = 60  # per tenant
NEW_EVERY_S = 30.0  # one new item per tenant
DELETE_EVERY_S = 45.0  # one deleted item per tenant
REJECT_EDIT_EVERY_S = 60.0  # each rejected item edited again
SETTLE_TIMEOUT_S = 420.0


@dataclass
class Soak:
    minutes: float
    broker: LocalBroker
    stack: Stack
    tenants: list[Tenant]
    started: float = 0.0
    crashes: list[dict[str, Any]] = field(default_factory=list)
    memory: dict[str, list[tuple[float, int, float, float]]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    faults: Faults = field(init=False)
    load: Load = field(init=False)

    def __post_init__(self) -> None:
        self.faults = Faults(self.broker, self.stack, self.tenants, self.elapsed)
        self.load = Load(self.stack)

    @property
    def duration_s(self) -> float:
        return self.minutes * 60

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    # -- set-up ---------------------------------------------------------------------

    def start(self) -> None:
        say(f"soak: broker on {self.broker.bootstrap}, files in {self.broker.home.parent}")
        self.broker.start()
        kong, wms = self.tenants
        kong_config = self.stack.kong_tenant(kong.id, kong.company, poll_interval_s=POLL_S)
        kong_config["source"].update(
            mode="hybrid", change_date_column="f120_fecha_actualizacion", reconcile_interval_s=60
        )
        wms_config = self.stack.wms_tenant(wms.id, wms.company, poll_interval_s=POLL_S)
        self.stack.tenants = [kong_config, wms_config]
        self.stack.start_simulators()
        self.stack.create_topics()
        for number, tenant in enumerate(self.tenants):
            self.stack.seed(tenant.company, SEEDED, seed=70 + number)
            for row in self.stack.siesa_items(tenant.company):
                tenant.rows[row["f120_referencia"].strip()] = row
            picks = [r for r in sorted(tenant.rows) if tenant.rows[r]["f120_ind_estado"] == 1]
            tenant.rejected = picks[100 : 100 + tenant.rejecting * 997 : 997]
        self.stack.start_services()
        began = time.monotonic()

        def synced() -> bool:
            self.stack.check_alive()
            return all(t.held_count(self.stack) >= SEEDED for t in self.tenants)

        procs.wait_until(synced, timeout=900, interval=2.0, what="the first full sync")
        self.figures["first_sync_s"] = round(time.monotonic() - began, 1)
        say(f"first full sync of {SEEDED} items per tenant: {self.figures['first_sync_s']} s")
        for tenant in self.tenants:
            say(f"  {tenant.id} ({tenant.target}) refuses for good: {', '.join(tenant.rejected)}")
            self.faults.set_target(tenant.target, {})

    # -- the run --------------------------------------------------------------------

    def run(self) -> None:
        plan = schedule(self.duration_s)
        ends: list[tuple[float, Planned, dict[str, Any]]] = []
        sample_every = min(30.0, self.duration_s / 20)
        next_edit = next_new = next_delete = next_reject = next_sample = 0.0
        next_progress = 60.0
        tick = 0
        self.started = time.monotonic()
        say(f"soak: {self.minutes:g} min of load, {len(plan)} faults planned")
        while (now := self.elapsed()) < self.duration_s:
            while plan and plan[0].at_s <= now:
                planned = plan.pop(0)
                record = self.faults.begin(planned)
                after = planned.duration_s if planned.kind != "service_kill" else 3.0
                if planned.kind not in ("broker_restart", "resync"):
                    ends.append((now + after, planned, record))
            for item in [e for e in ends if e[0] <= now]:
                ends.remove(item)
                self.faults.end(item[1], item[2])
            if now >= next_edit:
                tick += 1
                for tenant in self.tenants:
                    self.load.edit(tenant, round(EDITS_PER_MIN * POLL_S / 60), tick)
                next_edit += POLL_S
            if now >= next_new:
                for tenant in self.tenants:
                    self.load.add_item(tenant)
                next_new += NEW_EVERY_S
            if now >= next_delete and now > 0:
                for tenant in self.tenants:
                    self.load.delete_item(tenant, tick)
                next_delete += DELETE_EVERY_S
            elif now >= next_delete:
                next_delete += DELETE_EVERY_S
            if now >= next_reject:
                for tenant in self.tenants:
                    self.load.edit_rejected(tenant)
                next_reject += REJECT_EDIT_EVERY_S
            if now >= next_sample:
                self.sample_memory(now)
                next_sample += sample_every
            if now >= next_progress:
                self.progress(now)
                next_progress += 60.0
            self.check_crashes(now)
            time.sleep(0.5)  # the load's own pace: one step every half second
        for _, planned, record in ends:
            self.faults.end(planned, record)
        self.faults.wait_broker()
        self.sample_memory(self.elapsed())
        self.progress(self.elapsed())

    def sample_memory(self, now: float) -> None:
        for name in SERVICES:
            process = self.stack.processes.get(name)
            if process is None or not process.alive():
                continue
            with contextlib.suppress(OSError, KeyError):
                rss, peak = procs.memory_mb(process.pid)
                self.memory.setdefault(name, []).append((round(now, 1), process.pid, rss, peak))

    def progress(self, now: float) -> None:
        held = ", ".join(f"{t.id} holds {t.held_count(self.stack)}" for t in self.tenants)
        edits = sum(t.edits + t.rejected_edits for t in self.tenants)
        say(
            f"[{now:7.1f}s] edits {edits}, new {sum(t.new for t in self.tenants)}, "
            f"deleted {sum(len(t.deleted) for t in self.tenants)}, "
            f"faults {len(self.faults.records)}; "
            f"{held}"
        )

    def check_crashes(self, now: float) -> None:
        """A service that exited on its own is a product bug: noted, restarted, and the
        soak goes on (so the rest of the run still tells what else breaks)."""
        for name in SERVICES:
            process = self.stack.processes.get(name)
            if process is not None and not process.alive():
                tail = process.log_tail(15)
                self.crashes.append({"service": name, "at_s": round(now, 1), "log_tail": tail})
                say(f"[{now:7.1f}s] {name} exited on its own ({process.popen.returncode}):\n{tail}")
                self.stack.processes.pop(name)
                self.stack.restart(name)

    # -- the checks -----------------------------------------------------------------

    def settle_andcheck(self) -> dict[str, Any]:
        for target in ("siesa", "kong", "wms"):
            self.faults.set_target(target, {})
        kafka = KafkaSettings(
            bootstrap_servers=self.broker.bootstrap, topic_prefix=self.stack.topic_prefix
        )
        began = time.monotonic()
        say("load and faults stopped; waiting for the pipeline to settle...")
        last: dict[str, list[str]] = {}

        def settled() -> bool:
            self.check_crashes(self.elapsed())
            for tenant in self.tenants:
                last[tenant.id] = target_problems(self.stack, tenant)
            last["dlq"] = dlq_problems(kafka, self.tenants)[0]
            return not any(last.values())

        with contextlib.suppress(TimeoutError):
            procs.wait_until(settled, timeout=SETTLE_TIMEOUT_S, interval=5.0, what="settled")
        settle_s = round(time.monotonic() - began, 1)
        _, letters = dlq_problems(kafka, self.tenants)
        checks: list[dict[str, Any]] = []
        tenants: dict[str, Any] = {}
        for tenant in self.tenants:
            problems = last[tenant.id]
            checks.append(check(f"target == source ({tenant.id})", problems))
            tenants[tenant.id] = {
                "target": tenant.target,
                "siesa_items": len(tenant.rows),
                "held": tenant.held_count(self.stack),
                "edits": tenant.edits,
                "new_items": tenant.new,
                "deleted": len(tenant.deleted),
                "rejected_ids": tenant.rejected,
                "rejected_edits": tenant.rejected_edits,
            }
        checks.append(check("DLQ holds only (and all) the refused ids", last["dlq"]))
        verdicts = {n: memory_verdict(n, self.memory.get(n, []), self.duration_s) for n in SERVICES}
        checks.append(
            check(
                "memory did not grow", [f"{n}: {v.reason}" for n, v in verdicts.items() if not v.ok]
            )
        )
        crashes = [f"{c['service']} at {c['at_s']} s" for c in self.crashes]
        checks.append(check("no service exited on its own", crashes + self.faults.errors))
        return {
            "minutes": self.minutes,
            "ok": all(c["ok"] for c in checks),
            "checks": checks,
            "settle_s": settle_s,
            **self.figures,
            "tenants": tenants,
            "faults": self.faults.records,
            "faults_by_kind": dict(Counter(f["kind"] for f in self.faults.records)),
            "dlq": {
                "records": len(letters),
                "by_reason": dict(Counter(d.error_class for d in letters)),
                "by_key": dict(Counter((d.key or b"").decode() for d in letters)),
            },
            "memory": {n: v.figures() for n, v in verdicts.items()},
            "memory_samples": self.memory,
            "crashes": self.crashes,
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.soak")
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the load (30)")
    args = parser.parse_args()
    procs.interrupt_on_sigterm()
    home = Path(tempfile.mkdtemp(prefix="siesa-soak-"))
    broker = LocalBroker(port=procs.free_port(), home=home / "kafka", run_dir=home)
    stack = Stack(
        bootstrap=broker.bootstrap,
        run_dir=home / "run",
        siesa_port=procs.free_port(),
        kong_port=procs.free_port(),
        wms_port=procs.free_port(),
        topic_prefix="soak.",
    )
    tenants = [
        Tenant("soak-kong", "kong", 7101, rejecting=3),
        Tenant("soak-wms", "wms", 7102, rejecting=2),
    ]
    soak = Soak(args.minutes, broker, stack, tenants)
    result: dict[str, Any] | None = None
    try:
        soak.start()
        soak.run()
        result = soak.settle_andcheck()
    finally:
        if result is None:
            say(f"soak stopped early; logs kept in {home / 'run' / 'logs'}:\n{stack.log_tails(10)}")
        say("stopping everything the soak started...")
        soak.faults.wait_broker()
        stack.stop_all()
        broker.stop()
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_summary(result, RESULTS.name)
    if result["ok"]:
        shutil.rmtree(home, ignore_errors=True)
    else:
        say(f"logs kept in {home / 'run' / 'logs'}")
        sys.exit(1)


if __name__ == "__main__":
    main()
