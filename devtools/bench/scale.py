"""Scale (issue 17): many tenants on one process of each service, what it costs and
how fresh it stays.

Each case (`SCALE_CASES`, default ``1000x100@30 300x1000@5``: tenants x items per
tenant @ poll seconds) runs on its own simulators and topics:

1. **Seed and first sync.** Tenant ``scale-0001``... reads Siesa company 1... (a
   catalogue of its own, seed 1000 + n, so every external id is unique in the shared
   targets), in `hybrid` mode; odd tenants go to Kong, even ones to WMS. The services
   start; the first sync is complete when the targets hold every item (their stored
   counts), timed from the services' start.
2. **Idle.** `SCALE_IDLE_S` seconds (60) with no edits: each service's CPU seconds
   (/proc/<pid>/stat) over the window, as % of one core; for the extractor also CPU
   milliseconds per tenant poll.
3. **Edits.** For `SCALE_EDIT_MINUTES` (5), `SCALE_EDITS_PER_TENANT_MIN` (2) edits per
   tenant per minute on average, paced evenly: each a new name for a random item of a
   random tenant, never one edited before. An edit's freshness is the target
   simulator's ``_stored_at`` of that item minus the moment just before the edit was
   sent (both `time.time()` of this machine), as in the freshness bench.
4. **Resources.** Each service's peak RSS (VmHWM) at the end; its peak thread count,
   sampled every second through the whole case.

Goals (issue 17): freshness p99 <= poll interval + 3 s; extractor and loader peak RSS
<= 250 MB (the transformer is held to it too); extractor <= 64 threads. Figures are
named ``scale_<tenants>x<items>_*``; a goal's figure has baseline "goal <= X: met" (or
missed). Quicker runs: `SCALE_TENANTS` / `SCALE_ITEMS` replace the count in every case
(``SCALE_TENANTS=50 SCALE_EDIT_MINUTES=1`` takes a few minutes).
"""

from __future__ import annotations

import logging
import os
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devtools import procs
from devtools.bench import Figure, bench_stack
from devtools.bench.procstat import Sampler, cpu_seconds
from devtools.stack import SERVICES, Stack, env_prefix
from simulators.catalogue import generate_item

log = logging.getLogger("bench.scale")

RSS_GOAL_MB = 250.0
THREADS_GOAL = 64
FRESHNESS_MARGIN_S = 3.0
SEED_BASE = 1000
SHARED_CREDENTIALS = "SCALE_BENCH"  # every tenant's credentials: SCALE_BENCH_* variables
PROGRESS_S = 15.0


@dataclass(frozen=True)
class Case:
    tenants: int
    items: int
    poll_s: float

    @property
    def name(self) -> str:
        return f"scale_{self.tenants}x{self.items}"

    @property
    def freshness_goal_s(self) -> float:
        return self.poll_s + FRESHNESS_MARGIN_S


@dataclass(frozen=True)
class Knobs:
    idle_s: float = 60.0
    edit_minutes: float = 5.0
    edits_per_tenant_min: float = 2.0


def cases(env: dict[str, str]) -> list[Case]:
    """The cases `env` asks for: ``SCALE_CASES`` ("TxI@P ..."), with ``SCALE_TENANTS``
    and ``SCALE_ITEMS`` replacing the tenants or items of each if set."""
    found = []
    for spec in env.get("SCALE_CASES", "1000x100@30 300x1000@5").replace(",", " ").split():
        size, _, poll = spec.partition("@")
        tenants, _, items = size.partition("x")
        found.append(
            Case(
                int(env.get("SCALE_TENANTS") or tenants),
                int(env.get("SCALE_ITEMS") or items),
                float(poll or 30),
            )
        )
    return found


def knobs(env: dict[str, str]) -> Knobs:
    return Knobs(
        idle_s=float(env.get("SCALE_IDLE_S", Knobs.idle_s)),
        edit_minutes=float(env.get("SCALE_EDIT_MINUTES", Knobs.edit_minutes)),
        edits_per_tenant_min=float(
            env.get("SCALE_EDITS_PER_TENANT_MIN", Knobs.edits_per_tenant_min)
        ),
    )


class ScaleStack(Stack):
    """A `Stack` whose tenants share one set of credentials (``SCALE_BENCH_*``): a
    thousand tenants' own would be 7,000 variables in every service's environment,
    weighing on the memory the bench measures."""

    def env(self, role: str = "") -> dict[str, str]:
        own = {key for t in self.tenants for key in self.credentials.tenant_env(t["id"])}
        env = {key: value for key, value in super().env(role).items() if key not in own}
        env.update(self.credentials.tenant_env(SHARED_CREDENTIALS))
        return env


def _shared_refs(config: Any, prefix: str) -> Any:
    """`config` with every ``{"env": "<prefix>_X"}`` reference made ``SCALE_BENCH_X``."""
    if isinstance(config, dict):
        ref = config.get("env")
        if isinstance(ref, str) and ref.startswith(f"{prefix}_") and len(config) == 1:
            return {"env": SHARED_CREDENTIALS + ref[len(prefix) :]}
        return {key: _shared_refs(value, prefix) for key, value in config.items()}
    return config


def tenant_config(stack: Stack, n: int, poll_s: float) -> dict[str, Any]:
    """Tenant number `n` (from 1): company n, Kong if n is odd else WMS, hybrid mode."""
    tenant = f"scale-{n:04d}"
    make = stack.kong_tenant if n % 2 else stack.wms_tenant
    config = make(tenant, n, poll_interval_s=poll_s)
    config["source"].update(mode="hybrid", change_date_column="f120_fecha_actualizacion")
    shared: dict[str, Any] = _shared_refs(config, env_prefix(tenant))
    return shared


def edit_picks(tenants: int, items: int, rng: random.Random) -> Iterator[tuple[int, int]]:
    """(tenant number, rowid) of each edit: a random tenant, a random item of it not
    edited before (tenants whose items are all edited drop out)."""
    left = {n: list(range(1, items + 1)) for n in range(1, tenants + 1)}
    for rowids in left.values():
        rng.shuffle(rowids)
    open_tenants = list(left)
    while open_tenants:
        at = rng.randrange(len(open_tenants))
        n = open_tenants[at]
        yield n, left[n].pop()
        if not left[n]:
            open_tenants[at] = open_tenants[-1]
            open_tenants.pop()


def percentile(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def goal(value: float, limit: float) -> str:
    return f"goal <= {limit:g}: {'met' if value <= limit else 'missed'}"


class Run:
    """One case on its own stack; `figures()` after `measure()`."""

    def __init__(self, bootstrap: str, workdir: Path, case: Case, knobs: Knobs) -> None:
        self.case, self.knobs = case, knobs
        stack = bench_stack(bootstrap, workdir / case.name, ScaleStack)
        stack.tenants = [tenant_config(stack, n, case.poll_s) for n in range(1, case.tenants + 1)]
        self.stack = stack
        self.expected: dict[str, int] = {
            kind: case.items * sum(t["target"]["type"] == kind for t in stack.tenants)
            for kind in ("kong", "wms")
        }
        self.results: dict[str, float] = {}
        self.latencies: list[float] = []
        self.sampler: Sampler | None = None

    # -- phases -------------------------------------------------------------------------

    def measure(self) -> None:
        stack, case = self.stack, self.case
        try:
            stack.start_simulators()
            self._seed()
            stack.create_topics()
            started = time.monotonic()
            stack.start_services()
            self.sampler = Sampler({n: stack.processes[n].pid for n in SERVICES})
            self.sampler.start()
            self._wait_first_sync(started)
            self._idle()
            self.latencies = self._latencies(*self._edit_stream())
            self._resources()
        finally:
            if self.sampler is not None:
                self.sampler.stop()
                log.info(self._peaks())
            stack.stop_all()
        log.info("%s: %s", case.name, {k: round(v, 2) for k, v in self.results.items()})
        log.info(
            "%s: %d edits, freshness p50 %.2fs p95 %.2fs p99 %.2fs max %.2fs",
            case.name,
            len(self.latencies),
            *(percentile(self.latencies, p) for p in (50, 95, 99)),
            max(self.latencies),
        )

    def _seed(self) -> None:
        with httpx.Client(base_url=self.stack.siesa_url, timeout=60) as client:
            for n in range(1, self.case.tenants + 1):
                body = {"count": self.case.items, "seed": SEED_BASE + n}
                client.post(f"/_admin/companies/{n}/seed", json=body).raise_for_status()
        log.info("%s: seeded %d companies", self.case.name, self.case.tenants)

    def _targets(self) -> list[tuple[str, str]]:
        """(URL, admin store name) of each target simulator some tenant writes to."""
        stores = {"kong": (self.stack.kong_url, "skus"), "wms": (self.stack.wms_url, "products")}
        return [stores[kind] for kind, count in self.expected.items() if count]

    def _held(self) -> int:
        return sum(int(self.stack.sim_stats(url)[store]) for url, store in self._targets())

    def _progress(self, what: str) -> str:
        peaks = self.sampler.peaks if self.sampler else {}
        return f"{self.case.name} {what}; " + ", ".join(
            f"{n} {p.last_threads} threads {p.last_rss_mb:.0f} MB" for n, p in peaks.items()
        )

    def _peaks(self) -> str:
        """Each service's peak threads and RSS so far: logged however the case ends, so a
        case that fails (a service dying under the load) still tells what it cost."""
        assert self.sampler is not None  # noqa: S101 - called only once it started
        parts = []
        for name, peak in self.sampler.peaks.items():
            process = self.stack.processes.get(name)
            alive = process is not None and process.alive()
            hwm = f"{procs.memory_mb(process.pid)[1]:.0f} MB" if process and alive else "exited"
            parts.append(f"{name} {peak.threads} threads, peak RSS {hwm}")
        return f"{self.case.name} peaks: " + "; ".join(parts)

    def _wait_first_sync(self, started: float) -> None:
        total = sum(self.expected.values())
        shown = started

        def synced() -> bool:
            nonlocal shown
            self.stack.check_alive()
            held = self._held()
            if time.monotonic() - shown >= PROGRESS_S:
                shown = time.monotonic()
                took = shown - started
                log.info(self._progress(f"first sync: {held:,} of {total:,} ({took:.0f}s)"))
            return held >= total

        procs.wait_until(synced, timeout=600 + total / 20, interval=1.0, what="the first sync")
        took = time.monotonic() - started
        self.results.update(first_sync_s=took, first_sync_items_per_s=total / took)
        log.info(self._progress(f"first sync of {total:,} items took {took:.1f}s"))

    def _idle(self) -> None:
        pids = {name: self.stack.processes[name].pid for name in SERVICES}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        window = time.monotonic()
        # Pacing a measurement window (nothing to wait for), checking the services live.
        while time.monotonic() - window < self.knobs.idle_s:
            self.stack.check_alive()
            time.sleep(min(5.0, max(0.0, self.knobs.idle_s - (time.monotonic() - window))))
        seconds = time.monotonic() - window
        for name, pid in pids.items():
            self.results[f"{name}_idle_cpu_pct"] = (cpu_seconds(pid) - before[name]) / seconds * 100
        polls = self.case.tenants * seconds / self.case.poll_s
        used = self.results["extractor_idle_cpu_pct"] / 100 * seconds
        self.results["extractor_idle_cpu_ms_per_poll"] = used / polls * 1000
        log.info(
            self._progress(
                f"idle {seconds:.0f}s: "
                + ", ".join(f"{n} {self.results[f'{n}_idle_cpu_pct']:.1f}%" for n in SERVICES)
            )
        )

    def _edit_stream(self) -> tuple[float, dict[str, tuple[str, float]]]:
        """Send the edits, paced evenly: (when the stream began, external id -> (new
        name, time.time() just before its edit was sent))."""
        case, knobs = self.case, self.knobs
        total = min(
            round(case.tenants * knobs.edits_per_tenant_min * knobs.edit_minutes),
            case.tenants * case.items,
        )
        interval = knobs.edit_minutes * 60 / max(total, 1)
        began = time.time()
        edits: dict[str, tuple[str, float]] = {}
        rng = random.Random(case.tenants * case.items)  # noqa: S311 - reproducible picks
        picks = edit_picks(case.tenants, case.items, rng)
        next_at = shown = time.monotonic()
        with httpx.Client(base_url=self.stack.siesa_url, timeout=60) as client:
            for count, (n, rowid) in enumerate(picks, start=1):
                if count > total:
                    break
                row = generate_item(n, SEED_BASE + n, rowid)
                name = f"SCALE EDIT {count:06d} {row['f120_descripcion'][:20]}".rstrip()
                body = [{"f120_referencia": row["f120_referencia"], "f120_descripcion": name}]
                sent_at = time.time()
                client.post(f"/_admin/companies/{n}/items", json=body).raise_for_status()
                edits[row["f120_referencia"].strip()] = (name, sent_at)
                if time.monotonic() - shown >= PROGRESS_S:
                    shown = time.monotonic()
                    self.stack.check_alive()
                    stored = self._stored(began, edits)
                    log.info(self._progress(f"edits: {count:,} of {total:,} sent, {stored} stored"))
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the load, not waiting
        log.info("%s: %d edits sent in %.0fs", case.name, len(edits), time.time() - began)
        return began, edits

    def _stored(self, since: float, edits: dict[str, tuple[str, float]]) -> int:
        """How many of `edits` the targets hold with their new name."""
        return sum(
            1
            for external_id, (name, at) in self._changed(since).items()
            if edits.get(external_id, ("", 0.0))[0] == name
        )

    def _changed(self, since: float) -> dict[str, tuple[str, float]]:
        """External id -> (name, _stored_at) of what the targets stored since `since`."""
        changed: dict[str, tuple[str, float]] = {}
        for url, path in self._targets():
            answer = httpx.get(f"{url}/_admin/{path}", params={"stored_since": since}, timeout=60)
            answer.raise_for_status()
            for item in answer.json():
                changed[item["external_id"]] = (item["name"], item["_stored_at"])
        return changed

    def _latencies(self, began: float, edits: dict[str, tuple[str, float]]) -> list[float]:
        """Wait until every edit is stored; seconds from each edit to its store."""
        found: list[float] = []

        def all_stored() -> bool:
            self.stack.check_alive()
            changed = self._changed(began)
            if any(changed.get(key, ("", 0.0))[0] != name for key, (name, _) in edits.items()):
                return False
            found.extend(changed[key][1] - at for key, (_, at) in edits.items())
            return True

        wait = 120 + 3 * self.case.poll_s
        procs.wait_until(all_stored, timeout=wait, interval=2.0, what="every edit in its target")
        return found

    def _resources(self) -> None:
        assert self.sampler is not None  # started before the first sync  # noqa: S101
        self.sampler.sample()
        for name in SERVICES:
            self.results[f"{name}_rss_mb"] = procs.memory_mb(self.stack.processes[name].pid)[1]
            self.results[f"{name}_threads"] = self.sampler.peaks[name].threads

    # -- figures ------------------------------------------------------------------------

    def figures(self) -> list[Figure]:
        case, r = self.case, self.results
        name = case.name
        figures = [
            Figure(f"{name}_first_sync_s", r["first_sync_s"], "s", "no goal", 0.0),
            Figure(
                f"{name}_first_sync_items_per_s", r["first_sync_items_per_s"], "items/s", "-", 0
            ),
        ]
        for p in (50, 95):
            value = percentile(self.latencies, p)
            figure = Figure(f"{name}_freshness_p{p}_s", value, "s", "poll interval", case.poll_s)
            figures.append(figure)
        p99 = percentile(self.latencies, 99)
        goal_s = case.freshness_goal_s
        figures.append(Figure(f"{name}_freshness_p99_s", p99, "s", goal(p99, goal_s), goal_s))
        for service in SERVICES:
            rss = r[f"{service}_rss_mb"]
            figures.append(
                Figure(f"{name}_{service}_rss_mb", rss, "MB", goal(rss, RSS_GOAL_MB), RSS_GOAL_MB)
            )
        threads = r["extractor_threads"]
        figures.append(
            Figure(f"{name}_extractor_threads", threads, "threads", goal(threads, THREADS_GOAL), 64)
        )
        for service in ("transformer", "loader"):
            figures.append(
                Figure(f"{name}_{service}_threads", r[f"{service}_threads"], "threads", "-", 0)
            )
        for service in SERVICES:
            pct = r[f"{service}_idle_cpu_pct"]
            figures.append(Figure(f"{name}_{service}_idle_cpu_pct", pct, "%", "one core", 100.0))
        figures.append(
            Figure(
                f"{name}_extractor_idle_cpu_ms_per_poll",
                r["extractor_idle_cpu_ms_per_poll"],
                "ms",
                "-",
                0,
            )
        )
        return figures


def run(bootstrap: str, workdir: Path) -> list[Figure]:
    logging.getLogger("httpx").setLevel(logging.WARNING)
    env = dict(os.environ)
    figures: list[Figure] = []
    for case in cases(env):
        log.info("%s: poll %gs", case.name, case.poll_s)
        one = Run(bootstrap, workdir, case, knobs(env))
        one.measure()
        figures.extend(one.figures())
    return figures
