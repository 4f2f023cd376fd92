"""`make soak`: the whole pipeline under mixed load and periodic faults for N minutes,
then "target == source" for every tenant, a DLQ holding only the records made to fail
on purpose, and services whose memory did not grow.

    python -m devtools.soak [--minutes 30]

Everything runs on this machine on free ports: its own broker (so it can be restarted)
in a temp folder, the three simulators and the three services (devtools.stack). Two
tenants: a Kong one (hybrid polling, reconcile every minute) and a WMS one (diff
polling), 5,000 seeded items each, polled every 5 s. The faults follow
devtools.soak_plan.schedule. The summary goes to stdout and `soak-results.json`; the
exit code is 1 if a check failed. Everything started is stopped, also on failure or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devtools import procs
from devtools.broker import LocalBroker
from devtools.expected import expected_sku, expected_wms_product, held_sku, mismatches
from devtools.soak_plan import Planned, memory_verdict, schedule
from devtools.stack import SERVICES, Stack
from services.common.settings import KafkaSettings
from services.ops.dlq import dead_letters
from simulators.catalogue import with_check_digit

RESULTS = procs.ROOT / "soak-results.json"
SEEDED = 5000
POLL_S = 5.0
EDITS_PER_MIN = 60  # per tenant
NEW_EVERY_S = 30.0  # one new item per tenant
DELETE_EVERY_S = 45.0  # one deleted item per tenant
REJECT_EDIT_EVERY_S = 60.0  # each rejected item edited again
SETTLE_TIMEOUT_S = 420.0


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Tenant:
    """One tenant of the soak and what the load did to its Siesa catalogue."""

    id: str
    target: str  # kong | wms
    company: int
    rejecting: int  # how many of its items the target refuses for good
    rejected: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # live, by external id
    deleted: set[str] = field(default_factory=set)
    edits: int = 0
    new: int = 0
    rejected_edits: int = 0

    def url(self, stack: Stack) -> str:
        return stack.kong_url if self.target == "kong" else stack.wms_url

    def held(self, stack: Stack) -> list[dict[str, Any]]:
        return stack.held(self.target)

    def held_count(self, stack: Stack) -> int:
        return int(
            stack.sim_stats(self.url(stack))["skus" if self.target == "kong" else "products"]
        )


@dataclass
class Soak:
    minutes: float
    broker: LocalBroker
    stack: Stack
    tenants: list[Tenant]
    started: float = 0.0
    faults: list[dict[str, Any]] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    memory: dict[str, list[tuple[float, int, float, float]]] = field(default_factory=dict)
    broker_thread: threading.Thread | None = None
    figures: dict[str, Any] = field(default_factory=dict)

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
            self._target_faults(tenant.target, {})

    # -- faults ---------------------------------------------------------------------

    def _tenant_of(self, target: str) -> Tenant:
        return next(t for t in self.tenants if t.target == target)

    def _target_faults(self, target: str, faults: dict[str, Any]) -> None:
        """Set a simulator's faults; Kong and WMS keep refusing their rejected ids."""
        if target == "siesa":
            self.stack.set_faults(self.stack.siesa_url, **faults)
            return
        tenant = self._tenant_of(target)
        self.stack.set_faults(tenant.url(self.stack), reject_external_ids=tenant.rejected, **faults)

    def _sim_url(self, target: str) -> str:
        return (
            self.stack.siesa_url if target == "siesa" else self._tenant_of(target).url(self.stack)
        )

    def begin(self, planned: Planned) -> dict[str, Any]:
        at = round(self.elapsed(), 1)
        record: dict[str, Any] = {"kind": planned.kind, "target": planned.target, "at_s": at}
        say(f"[{at:7.1f}s] fault: {planned.name} {planned.faults or ''}".rstrip())
        if planned.kind in ("target_outage", "429_storm"):
            faults = dict(planned.faults)
            if planned.kind == "target_outage":
                faults["error_status"] = 503
            self._target_faults(planned.target, faults)
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
            tenant = self._tenant_of("kong")
            record["target"] = tenant.id
            self._wait_broker()
            say(f"  {self.stack.run_cli(['resync', '--tenant', tenant.id]).strip()}")
        self.faults.append(record)
        return record

    def end(self, planned: Planned, record: dict[str, Any]) -> None:
        if planned.kind in ("target_outage", "429_storm"):
            answer = httpx.get(f"{self._sim_url(planned.target)}/_admin/faults", timeout=30)
            record["injected"] = answer.json().get("injected", {})
            self._target_faults(planned.target, {})
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

    def _wait_broker(self) -> None:
        if self.broker_thread is not None:
            self.broker_thread.join(timeout=180)

    # -- load -----------------------------------------------------------------------

    def edit(self, tenant: Tenant, count: int, tick: int) -> None:
        live = [r for r in sorted(tenant.rows) if r not in tenant.rejected]
        rows = []
        for i in range(count):
            ref = live[(tick * 7919 + i * 104729) % len(live)]
            rows.append(self._changed(tenant.rows[ref], tenant.edits + i))
        tenant.edits += len(rows)
        self._upsert(tenant, rows)

    def edit_rejected(self, tenant: Tenant) -> None:
        rows = [self._changed(tenant.rows[ref], tenant.rejected_edits) for ref in tenant.rejected]
        tenant.rejected_edits += len(rows)
        self._upsert(tenant, rows)

    @staticmethod
    def _changed(row: dict[str, Any], n: int) -> dict[str, Any]:
        row = dict(row)
        row["f120_descripcion"] = f"{row['f120_descripcion'].split(' SOAK')[0][:150]} SOAK{n}"
        if n % 5 == 0:
            row["f120_ind_estado"] = 1 - row["f120_ind_estado"]
        if n % 3 == 0:
            row["f120_peso"] = round(float(row["f120_peso"] or 0) + 0.25, 3)
        return row

    def add_item(self, tenant: Tenant) -> None:
        template = next(iter(tenant.rows.values()))
        tenant.new += 1
        ref = f"SOAK-{tenant.company}-{tenant.new:05d}"
        row = {k: v for k, v in template.items() if k not in ("f120_rowid",)}
        row.update(f120_referencia=ref, f120_id_item=900_000 + tenant.new)
        row["f120_descripcion"] = f"ARTICULO NUEVO DEL SOAK {tenant.new}"
        # A valid EAN-13 (an invalid check digit is not an EAN: Kong keeps it elsewhere).
        row["f120_codigo_barras"] = with_check_digit(f"77{tenant.company:05d}{tenant.new:05d}")
        self._upsert(tenant, [row])

    def delete_item(self, tenant: Tenant, tick: int) -> None:
        # Only seeded items: a new item deleted before any poll saw it was never held.
        seeded = [
            r for r in sorted(tenant.rows) if r.startswith("SKU-") and r not in tenant.rejected
        ]
        ref = seeded[(tick * 6151) % len(seeded)]
        self.stack.delete_item(tenant.company, ref)
        del tenant.rows[ref]
        tenant.deleted.add(ref)

    def _upsert(self, tenant: Tenant, rows: list[dict[str, Any]]) -> None:
        self.stack.upsert_items(tenant.company, rows)
        for row in rows:
            tenant.rows[row["f120_referencia"].strip()] = row

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
                record = self.begin(planned)
                after = planned.duration_s if planned.kind != "service_kill" else 3.0
                if planned.kind not in ("broker_restart", "resync"):
                    ends.append((now + after, planned, record))
            for item in [e for e in ends if e[0] <= now]:
                ends.remove(item)
                self.end(item[1], item[2])
            if now >= next_edit:
                tick += 1
                for tenant in self.tenants:
                    self.edit(tenant, round(EDITS_PER_MIN * POLL_S / 60), tick)
                next_edit += POLL_S
            if now >= next_new:
                for tenant in self.tenants:
                    self.add_item(tenant)
                next_new += NEW_EVERY_S
            if now >= next_delete and now > 0:
                for tenant in self.tenants:
                    self.delete_item(tenant, tick)
                next_delete += DELETE_EVERY_S
            elif now >= next_delete:
                next_delete += DELETE_EVERY_S
            if now >= next_reject:
                for tenant in self.tenants:
                    self.edit_rejected(tenant)
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
            self.end(planned, record)
        self._wait_broker()
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
            f"deleted {sum(len(t.deleted) for t in self.tenants)}, faults {len(self.faults)}; "
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

    def target_problems(self, tenant: Tenant) -> list[str]:
        source = self.stack.siesa_items(tenant.company)
        rejected = set(tenant.rejected)
        rows = [r for r in source if r["f120_referencia"].strip() not in rejected]
        held = tenant.held(self.stack)
        problems = mismatches(
            tenant.target,
            rows,
            [h for h in held if h["external_id"] not in rejected],
            tenant.deleted,
        )
        expect, flatten = (
            (expected_sku, held_sku) if tenant.target == "kong" else (expected_wms_product, dict)
        )
        by_id = {h["external_id"]: flatten(h) for h in held}
        for row in source:
            ref = row["f120_referencia"].strip()
            got = by_id.get(ref)
            if ref in rejected and got is not None:
                wanted = expect(row)
                if all(got.get(k) == v for k, v in wanted.items()):
                    problems.append(f"{ref}: refused on purpose, yet held in its latest version")
        return problems

    def dlq_problems(self, kafka: KafkaSettings) -> tuple[list[str], list[Any]]:
        letters = dead_letters(kafka)
        wanted = {f"{t.id}/{ref}" for t in self.tenants for ref in t.rejected}
        keys = [(d.key or b"").decode() for d in letters]
        problems = [
            f"{k}: dead-lettered but not refused on purpose" for k in sorted(set(keys) - wanted)
        ]
        problems += [
            f"{k}: refused on purpose but not in the DLQ" for k in sorted(wanted - set(keys))
        ]
        problems += [
            f"{(d.key or b'').decode()}: dead-lettered as {d.error_class!r}, not target_rejected"
            for d in letters
            if d.error_class != "target_rejected"
        ]
        return problems, letters

    def settle_and_check(self) -> dict[str, Any]:
        for target in ("siesa", "kong", "wms"):
            self._target_faults(target, {})
        kafka = KafkaSettings(
            bootstrap_servers=self.broker.bootstrap, topic_prefix=self.stack.topic_prefix
        )
        began = time.monotonic()
        say("load and faults stopped; waiting for the pipeline to settle...")
        last: dict[str, list[str]] = {}

        def settled() -> bool:
            self.check_crashes(self.elapsed())
            for tenant in self.tenants:
                last[tenant.id] = self.target_problems(tenant)
            last["dlq"] = self.dlq_problems(kafka)[0]
            return not any(last.values())

        with contextlib.suppress(TimeoutError):
            procs.wait_until(settled, timeout=SETTLE_TIMEOUT_S, interval=5.0, what="settled")
        settle_s = round(time.monotonic() - began, 1)
        _, letters = self.dlq_problems(kafka)
        checks: list[dict[str, Any]] = []
        tenants: dict[str, Any] = {}
        for tenant in self.tenants:
            problems = last[tenant.id]
            checks.append(_check(f"target == source ({tenant.id})", problems))
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
        checks.append(_check("DLQ holds only (and all) the refused ids", last["dlq"]))
        verdicts = {n: memory_verdict(n, self.memory.get(n, []), self.duration_s) for n in SERVICES}
        checks.append(
            _check(
                "memory did not grow", [f"{n}: {v.reason}" for n, v in verdicts.items() if not v.ok]
            )
        )
        crashes = [f"{c['service']} at {c['at_s']} s" for c in self.crashes]
        checks.append(_check("no service exited on its own", crashes + self.errors))
        return {
            "minutes": self.minutes,
            "ok": all(c["ok"] for c in checks),
            "checks": checks,
            "settle_s": settle_s,
            **self.figures,
            "tenants": tenants,
            "faults": self.faults,
            "faults_by_kind": dict(Counter(f["kind"] for f in self.faults)),
            "dlq": {
                "records": len(letters),
                "by_reason": dict(Counter(d.error_class for d in letters)),
                "by_key": dict(Counter((d.key or b"").decode() for d in letters)),
            },
            "memory": {n: v.figures() for n, v in verdicts.items()},
            "memory_samples": self.memory,
            "crashes": self.crashes,
        }


def _check(name: str, problems: list[str]) -> dict[str, Any]:
    return {"name": name, "ok": not problems, "problems": problems[:20], "count": len(problems)}


def print_summary(result: dict[str, Any]) -> None:
    say("")
    say(f"soak summary ({result['minutes']:g} min; settled {result['settle_s']} s after the load)")
    for tenant_id, t in result["tenants"].items():
        say(
            f"  {tenant_id} ({t['target']}): Siesa {t['siesa_items']} items, target holds "
            f"{t['held']}; {t['edits']} edits, {t['new_items']} new, {t['deleted']} deleted, "
            f"{len(t['rejected_ids'])} refused on purpose ({t['rejected_edits']} edits of them)"
        )
    say(f"  faults: {result['faults_by_kind']}")
    for f in result["faults"]:
        extra = {k: v for k, v in f.items() if k not in ("kind", "target", "at_s")}
        say(f"    {f['at_s']:7.1f}s {f['kind']:<15} {f['target']:<12} {extra or ''}")
    say(f"  DLQ: {result['dlq']['records']} records, by reason {result['dlq']['by_reason']}")
    for name, m in result["memory"].items():
        say(
            f"  {name:<12} RSS start {m['start_mb']:.1f} MB, end {m['end_mb']:.1f} MB, "
            f"peak {m['peak_mb']:.1f} MB ({m['samples']} samples): {m['reason']}"
        )
    for check in result["checks"]:
        say(f"  {'PASS' if check['ok'] else 'FAIL'}  {check['name']}")
        for problem in check["problems"]:
            say(f"        {problem}")
        if check["count"] > len(check["problems"]):
            say(f"        ... and {check['count'] - len(check['problems'])} more")
    say(f"soak {'passed' if result['ok'] else 'FAILED'}; results in {RESULTS.name}")


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
        result = soak.settle_and_check()
    finally:
        if result is None:
            say(f"soak stopped early; logs kept in {home / 'run' / 'logs'}:\n{stack.log_tails(10)}")
        say("stopping everything the soak started...")
        soak._wait_broker()
        stack.stop_all()
        broker.stop()
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_summary(result)
    if result["ok"]:
        shutil.rmtree(home, ignore_errors=True)
    else:
        say(f"logs kept in {home / 'run' / 'logs'}")
        sys.exit(1)


if __name__ == "__main__":
    main()
