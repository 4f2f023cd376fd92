"""Every service serves /healthz, /readyz and /metrics (Prometheus text), on the real
broker, as a real process."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools import procs
from devtools.stack import SERVICES, Stack


@pytest.mark.parametrize("service", SERVICES)
def test_service_serves_health_readiness_and_parsable_metrics(stack: Stack, service: str) -> None:
    stack.tenants = [stack.kong_tenant("acme", 8585)]
    stack.create_topics()
    stack.start_services((service,))
    url = stack.health_url(service)

    def ready() -> bool:
        stack.check_alive()
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    procs.wait_until(ready, timeout=60, what=f"{service} ready")
    assert httpx.get(f"{url}/healthz", timeout=2).json()["alive"] is True
    metrics = httpx.get(f"{url}/metrics", timeout=2)
    assert metrics.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics.text)}
    for name in ("siesa_sync_records", "siesa_sync_batch_seconds", "siesa_sync_consumer_lag"):
        assert name in families, sorted(families)
