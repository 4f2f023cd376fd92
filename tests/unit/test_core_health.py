"""Readiness: ready once set, unready while any reported problem lasts, on the wire too.
Liveness: a loop with work and no progress past its bound fails /healthz."""

from __future__ import annotations

import httpx

from services.common.health import Health, HealthServer, Heartbeat


def test_a_reported_problem_makes_the_service_unready_until_resolved() -> None:
    health = Health("loader")
    health.set_ready()
    server = HealthServer(health, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/readyz"
        assert httpx.get(url).status_code == 200

        health.report("broker", "cannot reach 127.0.0.1:9092")
        health.report("authorization", "WRITE on topic x refused")
        answer = httpx.get(url)
        assert answer.status_code == 503
        assert answer.json()["problems"] == {
            "broker": "cannot reach 127.0.0.1:9092",
            "authorization": "WRITE on topic x refused",
        }

        health.resolve("broker")
        assert httpx.get(url).status_code == 503
        health.resolve("authorization")
        assert httpx.get(url).status_code == 200
    finally:
        server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_busy_loop_without_progress_past_its_bound_is_stalled() -> None:
    clock = Clock()
    beat = Heartbeat("run loop", bound_s=10, clock=clock)
    beat.beat()

    clock.now += 10
    assert beat.stalled() is None
    clock.now += 1
    assert beat.stalled() == "no progress for 11 s (bound 10 s)"
    beat.beat()
    assert beat.stalled() is None


def test_an_idle_loop_is_never_stalled_and_a_grace_covers_a_bounded_wait() -> None:
    clock = Clock()
    beat = Heartbeat("poll acme", bound_s=10, clock=clock)
    assert beat.stalled() is None  # never beaten: not busy yet
    beat.beat()
    beat.idle()
    clock.now += 3600
    assert beat.stalled() is None

    beat.beat(grace_s=60)  # e.g. a commit that may wait 60 s on the broker
    clock.now += 69
    assert beat.stalled() is None
    clock.now += 2
    assert beat.stalled() is not None


def test_progress_while_busy_counts_as_beats() -> None:
    clock = Clock()
    calls = [0.0]
    beat = Heartbeat("load loop", bound_s=10, clock=clock, progress=lambda: calls[0])
    beat.beat()
    for _ in range(5):  # a long batch whose target answers every 8 s
        clock.now += 8
        calls[0] += 1
        assert beat.stalled() is None
    clock.now += 11
    assert beat.stalled() == "no progress for 11 s (bound 10 s)"


def test_healthz_turns_503_naming_the_stalled_loop_and_never_while_a_problem_is_reported() -> None:
    clock = Clock()
    health = Health("transformer", stall_after_s=30, clock=clock)
    beat = health.heartbeat("transform loop")
    server = HealthServer(health, "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        beat.beat()
        assert httpx.get(url).json() == {"service": "transformer", "alive": True}

        clock.now += 31
        answer = httpx.get(url)
        assert answer.status_code == 503
        assert answer.json() == {
            "service": "transformer",
            "alive": False,
            "stalled": {"transform loop": "no progress for 31 s (bound 30 s)"},
        }

        # The broker is down: the loop waits on it, a restart would not help.
        health.report("broker", "cannot reach 127.0.0.1:9092")
        assert httpx.get(url).status_code == 200
        clock.now += 100
        health.resolve("broker")  # back: the loop gets its whole bound again
        assert httpx.get(url).status_code == 200
        clock.now += 31
        assert httpx.get(url).status_code == 503

        health.forget("transform loop")  # the loop ended
        assert httpx.get(url).status_code == 200
    finally:
        server.stop()
