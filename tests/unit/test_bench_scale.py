"""The scale benchmark's own logic: which cases it runs, the tenants it configures, the
edits it picks, its goals, and what it reads from /proc."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path

from devtools.bench import bench_stack
from devtools.bench.procstat import Sampler, cpu_seconds, threads
from devtools.bench.scale import (
    SHARED_CREDENTIALS,
    Case,
    Knobs,
    Run,
    ScaleStack,
    cases,
    edit_picks,
    goal,
    knobs,
    tenant_config,
)


def test_default_cases_are_the_issues_and_counts_can_be_scaled_down() -> None:
    assert cases({}) == [Case(1000, 100, 30.0), Case(300, 1000, 5.0)]
    assert cases({"SCALE_TENANTS": "50"}) == [Case(50, 100, 30.0), Case(50, 1000, 5.0)]
    assert cases({"SCALE_CASES": "20x20@2", "SCALE_ITEMS": "5"}) == [Case(20, 5, 2.0)]
    assert Case(1000, 100, 30.0).freshness_goal_s == 33.0
    assert Case(300, 1000, 5.0).name == "scale_300x1000"
    assert knobs({"SCALE_EDIT_MINUTES": "0.5"}) == Knobs(edit_minutes=0.5)


def test_goals_say_met_or_missed() -> None:
    assert goal(33.0, 33.0) == "goal <= 33: met"
    assert goal(1807, 64) == "goal <= 64: missed"


def test_tenants_alternate_targets_in_hybrid_mode_on_shared_credentials(tmp_path: Path) -> None:
    stack = bench_stack("127.0.0.1:9", tmp_path, ScaleStack)
    stack.tenants = [tenant_config(stack, n, 30.0) for n in (1, 2)]
    kong, wms = stack.tenants
    assert (kong["id"], kong["target"]["type"], kong["source"]["company"]) == (
        "scale-0001",
        "kong",
        1,
    )
    assert (wms["target"]["type"], wms["source"]["mode"]) == ("wms", "hybrid")
    assert kong["source"]["conni_key"] == {"env": f"{SHARED_CREDENTIALS}_SIESA_CONNI_KEY"}
    assert wms["target"]["auth"]["password"] == {"env": f"{SHARED_CREDENTIALS}_WMS_PASSWORD"}
    env = stack.env("extractor")
    assert env[f"{SHARED_CREDENTIALS}_SIESA_CONNI_TOKEN"] == stack.credentials.conni_token
    assert not [key for key in env if key.startswith("SCALE_000")]


def test_edits_spread_over_tenants_and_never_repeat_an_item(tmp_path: Path) -> None:
    picks = list(edit_picks(4, 5, random.Random(1)))  # noqa: S311 - reproducible test data
    assert sorted(picks) == [(n, rowid) for n in range(1, 5) for rowid in range(1, 6)]
    assert len(Counter(n for n, _ in picks[:8])) >= 3  # mixed, not tenant after tenant
    assert Run("127.0.0.1:9", tmp_path, Case(4, 5, 30.0), Knobs()).expected == {
        "kong": 10,
        "wms": 10,
    }


def test_proc_figures_of_this_process() -> None:
    pid = os.getpid()
    stop = threading.Event()
    extra = threading.Thread(target=stop.wait)
    before = threads(pid)
    extra.start()
    try:
        assert threads(pid) == before + 1
        sampler = Sampler({"me": pid}, interval=0.05)
        sampler.start()
        spent = cpu_seconds(pid)
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # burn CPU for the counter to see
            sum(range(1000))
        sampler.stop()
        assert cpu_seconds(pid) > spent
        assert sampler.peaks["me"].threads >= before + 1
        assert sampler.peaks["me"].last_rss_mb > 0
    finally:
        stop.set()
        extra.join()
