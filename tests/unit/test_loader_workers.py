"""The loader's one pool of worker threads: bounded whatever the tenant count, a slow
lane holds only its concurrency (its other calls wait in its own queue, never ahead of
another lane's), and lanes take turns."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from services.loader.workers import Workers


@dataclass(eq=False)
class Owner:
    concurrency: int


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def workers() -> Iterator[Workers]:
    made = Workers(4)
    yield made
    made.close()


def test_a_slow_lane_holds_only_its_concurrency_and_no_one_waits_behind_it(
    workers: Workers,
) -> None:
    slow, fast = Owner(2), Owner(2)
    release = threading.Event()
    running = {"now": 0, "most": 0}
    lock = threading.Lock()

    def hang() -> str:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        release.wait(10)
        with lock:
            running["now"] -= 1
        return "slow"

    stuck = [workers.submit(slow, hang) for _ in range(50)]  # queued first, all of them
    quick = [workers.submit(fast, lambda i=i: i) for i in range(50)]

    assert [f.result(timeout=5) for f in quick] == list(range(50))  # not behind slow's
    wait_for(lambda: running["now"] == 2)
    assert workers.running(slow) == 2
    assert running["most"] == 2
    assert sum(f.done() for f in stuck) == 0
    assert workers.threads <= 4

    release.set()
    assert all(f.result(timeout=10) == "slow" for f in stuck)
    assert running["most"] == 2  # never more than its concurrency, start to end


def test_lanes_take_turns_one_call_each() -> None:
    one = Workers(1)
    order: list[str] = []
    gate = threading.Event()
    a, b = Owner(4), Owner(4)
    first = one.submit(a, gate.wait, 5)  # holds the only thread while both queue up
    futures = [one.submit(a, order.append, "a") for _ in range(4)]
    futures += [one.submit(b, order.append, "b") for _ in range(4)]
    gate.set()
    for f in [first, *futures]:
        f.result(timeout=5)
    one.close()

    # a, which queued all of its calls before b, gets no second call ahead of b's first.
    assert order == ["a", "b"] * 4 or order == ["b", "a"] * 4


def test_threads_are_bounded_by_the_pool_not_by_the_lanes() -> None:
    before = threading.active_count()  # pytest's, and what earlier tests left ending
    pool = Workers(8)
    gate = threading.Event()
    lanes = [Owner(8) for _ in range(500)]
    futures = [pool.submit(lane, gate.wait, 5) for lane in lanes for _ in range(2)]
    wait_for(lambda: pool.threads == 8)
    threads = threading.active_count()
    gate.set()
    for f in futures:
        f.result(timeout=10)
    pool.close()

    assert pool.threads == 8
    assert threads - before <= 8  # the pool's 8, whatever the 1,000 calls of 500 lanes


def test_cancel_drops_a_lanes_queued_calls_and_close_ends_the_rest(workers: Workers) -> None:
    lane = Owner(1)
    gate = threading.Event()
    running = workers.submit(lane, gate.wait, 5)
    wait_for(lambda: workers.running(lane) == 1)
    queued = [workers.submit(lane, lambda: "never") for _ in range(3)]

    assert workers.cancel(lane) == 3
    assert all(f.cancelled() for f in queued)
    gate.set()
    assert running.result(timeout=5) is True


def test_a_larger_concurrency_starts_queued_calls_at_once(workers: Workers) -> None:
    lane = Owner(1)
    gate = threading.Event()
    futures = [workers.submit(lane, gate.wait, 5) for _ in range(3)]
    wait_for(lambda: workers.running(lane) == 1)

    lane.concurrency = 3
    workers.resized(lane)

    wait_for(lambda: workers.running(lane) == 3)
    gate.set()
    assert all(f.result(timeout=5) for f in futures)
