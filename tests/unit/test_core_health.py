"""Readiness: ready once set, unready while any reported problem lasts, on the wire too."""

from __future__ import annotations

import httpx

from services.common.health import Health, HealthServer


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
