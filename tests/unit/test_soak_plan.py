"""The soak's plan and memory verdict (devtools/soak_plan.py)."""

from __future__ import annotations

import itertools

import pytest

from devtools.soak_plan import memory_verdict, schedule


@pytest.mark.parametrize("minutes", [3, 6, 30])
def test_kills_come_before_the_second_fifth_and_every_fault_ends_before_the_last(
    minutes: int,
) -> None:
    duration = minutes * 60.0
    plan = schedule(duration)
    kinds = {p.kind for p in plan}
    assert kinds == {"service_kill", "429_storm", "target_outage", "broker_restart", "resync"}
    assert {p.target for p in plan if p.kind == "service_kill"} == {
        "extractor",
        "transformer",
        "loader",
    }
    assert all(p.at_s < 0.2 * duration for p in plan if p.kind == "service_kill")
    assert all(p.at_s + p.duration_s <= 0.8 * duration for p in plan)
    assert {p.target for p in plan if p.kind == "target_outage"} == {"kong", "wms"}
    assert {p.target for p in plan if p.kind == "429_storm"} >= {"siesa", "kong", "wms"}


def test_faults_on_one_simulator_never_overlap() -> None:
    plan = schedule(360.0)
    for target in ("siesa", "kong", "wms"):
        windows = sorted((p.at_s, p.at_s + p.duration_s) for p in plan if p.target == target)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows))


def samples(pid: int, second: float, last: float) -> list[tuple[float, int, float, float]]:
    return [(t, pid, second if t < 200 else last, 150.0) for t in range(0, 300, 10)]


def test_memory_within_the_tolerance_passes_and_growth_beyond_fails() -> None:
    assert memory_verdict("loader", samples(7, 100.0, 114.0), 300.0).ok
    assert memory_verdict("loader", samples(7, 200.0, 229.0), 300.0).ok  # 15 % of 200
    grown = memory_verdict("loader", samples(7, 100.0, 121.0), 300.0)
    assert not grown.ok
    assert "+21.0 MB" in grown.reason
    assert grown.peak_mb == 150.0


def test_only_the_last_process_counts_and_it_must_span_both_windows() -> None:
    early = [(t, 1, 500.0, 500.0) for t in range(0, 60, 10)]
    assert memory_verdict("x", early + samples(2, 80.0, 85.0)[6:], 300.0).ok
    late = [*samples(1, 80.0, 80.0)[:25], (250.0, 2, 60.0, 60.0), (290.0, 2, 60.0, 60.0)]
    verdict = memory_verdict("x", late, 300.0)
    assert not verdict.ok
    assert "not sampled" in verdict.reason
    assert not memory_verdict("x", [], 300.0).ok
