"""The watchdog interrupts any Python code over its budget, at the next bytecode, and
never lets its interruption land outside the call it watched."""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest

from services.transformer.watchdog import WATCHDOG, Overran, Watchdog

BUDGET_S = 0.05
GENEROUS_S = 1.0


@pytest.fixture
def watchdog() -> Iterator[Watchdog]:
    watchdog = Watchdog()
    yield watchdog
    watchdog.stop()


def spin() -> None:
    while True:
        pass


def spin_swallowing_exceptions() -> None:
    while True:
        try:
            spin()
        except Exception:  # noqa: BLE001, S112 - what a careless callee does
            continue


@pytest.mark.parametrize("work", [spin, spin_swallowing_exceptions])
def test_a_call_over_its_budget_is_interrupted(watchdog: Watchdog, work: object) -> None:
    started = time.perf_counter()
    with pytest.raises(Overran, match="took longer than 50 ms"):
        watchdog.run(BUDGET_S, work)  # type: ignore[arg-type]

    assert BUDGET_S <= time.perf_counter() - started < GENEROUS_S


def test_the_budget_is_cpu_time_not_time_spent_waiting(watchdog: Watchdog) -> None:
    """A call is not charged while its thread waits (for a CPU, a lock, the GIL)."""
    started = time.perf_counter()

    assert watchdog.run(BUDGET_S, time.sleep, 3 * BUDGET_S) is None

    assert time.perf_counter() - started >= 3 * BUDGET_S


def test_a_call_within_its_budget_returns_its_result(watchdog: Watchdog) -> None:
    assert watchdog.run(BUDGET_S, sum, [1, 2, 3]) == 6
    with pytest.raises(ZeroDivisionError):
        watchdog.run(BUDGET_S, lambda: 1 / 0)


def test_calls_ending_around_their_deadline_never_get_a_late_interruption(
    request: pytest.FixtureRequest,
) -> None:
    """Hundreds of calls that end around the moment the watchdog fires: each either
    returns or raises Overran inside `run`; nothing is raised in the code after it."""
    watchdog = Watchdog(tick_s=0.0005)
    request.addfinalizer(watchdog.stop)
    # The watchdog gets the GIL within 0.5 ms rather than 5, so that it fires often
    # inside these short calls.
    request.addfinalizer(partial(sys.setswitchinterval, sys.getswitchinterval()))
    sys.setswitchinterval(0.0005)
    outcomes = {"returned": 0, "overran": 0}
    durations = random.Random(7)  # noqa: S311 - durations, not secrets

    def work(seconds: float) -> int:
        deadline = time.thread_time() + seconds
        while time.thread_time() < deadline:
            pass
        return 1

    for _ in range(300):
        try:
            watchdog.run(0.0005, work, durations.uniform(0.0002, 0.002))
            outcomes["returned"] += 1
        except Overran:
            outcomes["overran"] += 1
        # Plenty of bytecodes where a stray interruption would land.
        total = 0
        for n in range(200):
            total += n

    assert outcomes["overran"] > 0, outcomes
    assert outcomes["returned"] > 0, outcomes
    assert sum(outcomes.values()) == 300


def test_one_thread_over_budget_does_not_touch_another(watchdog: Watchdog) -> None:
    results: list[object] = []

    def steady() -> None:
        for _ in range(200):
            results.append(watchdog.run(BUDGET_S, sum, range(100)))

    other = threading.Thread(target=steady)
    other.start()
    with pytest.raises(Overran):
        watchdog.run(BUDGET_S, spin)
    other.join(timeout=30)

    assert results == [4950] * 200


def test_a_forked_child_is_watched_too() -> None:
    with pytest.raises(Overran):
        WATCHDOG.run(BUDGET_S, spin)  # the parent's watchdog thread is running

    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit code
        signal.alarm(10)  # unwatched, it would spin for ever: SIGALRM ends it
        try:
            WATCHDOG.run(BUDGET_S, spin)
        except Overran:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
