"""Every service serves /healthz, /readyz and /metrics (Prometheus text, parsed with the
Prometheus parser) as a real process, and the metrics count what really happened."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from devtools import procs
from devtools.stack import SERVICES, Stack

COMPANY = 8585


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url``/metrics by (name, sorted labels)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_each_service_is_healthy_ready_and_its_metrics_count_the_sync(stack: Stack) -> None:
    stack.tenants = [stack.kong_tenant("acme", COMPANY)]
    stack.start_simulators()
    stack.seed(COMPANY, 5)
    stack.create_topics()
    stack.start_services()

    def ready(service: str) -> bool:
        stack.check_alive()
        try:
            return httpx.get(f"{stack.health_url(service)}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    for service in SERVICES:
        procs.wait_until(lambda s=service: ready(s), timeout=60, what=f"{service} ready")
        health = httpx.get(f"{stack.health_url(service)}/healthz", timeout=2).json()
        assert health == {"service": service, "alive": True}
    procs.wait_until(lambda: len(stack.kong_skus()) == 5, timeout=90, what="5 SKUs in Kong")

    def counted() -> bool:
        loader = scrape(stack.health_url("loader"))
        return (
            value(loader, "siesa_sync_records_total", stage="load", tenant="acme", outcome="in")
            >= 5
        )

    procs.wait_until(counted, timeout=30, what="the loader's metrics counting 5 records")
    extractor = scrape(stack.health_url("extractor"))
    transformer = scrape(stack.health_url("transformer"))
    loader = scrape(stack.health_url("loader"))
    assert (
        value(
            extractor, "siesa_sync_target_calls_total", tenant="acme", target="siesa", status="200"
        )
        >= 1
    )
    assert value(extractor, "siesa_sync_poll_seconds_count", tenant="acme", mode="diff") >= 1
    assert (
        value(
            transformer, "siesa_sync_records_total", stage="transform", tenant="acme", outcome="out"
        )
        == 5
    )
    assert value(transformer, "siesa_sync_batch_seconds_count", stage="transform") >= 1
    assert (
        value(loader, "siesa_sync_target_calls_total", tenant="acme", target="kong", status="201")
        >= 5
    )
    assert value(loader, "siesa_sync_breaker_state", tenant="acme", target="kong") == 0
    assert any(name == "siesa_sync_consumer_lag" for name, _ in loader)
    for samples, stage in ((extractor, "extract"), (transformer, "transform"), (loader, "load")):
        last = value(
            samples, "siesa_sync_last_success_timestamp_seconds", tenant="acme", stage=stage
        )
        assert time.time() - 300 < last <= time.time(), (stage, last)
        build = [labels for name, labels in samples if name == "siesa_sync_build_info"]
        assert len(build) == 1
        assert {"version", "python", "librdkafka"} <= dict(build[0]).keys()
