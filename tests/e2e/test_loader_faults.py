"""The loader against misbehaving targets, as real processes on the real broker: a rate
limit answered with 429 + Retry-After, a 20 s outage, tokens that expire every 2 s, and
one tenant's target down while another tenant syncs."""

from __future__ import annotations

import json
import time
from typing import Any

from devtools import procs
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from tests.e2e.loading import (
    canonical,
    dead_letters,
    feed,
    loader_states,
    requests_by,
    wait_for_count,
)

COMPANY = 8020
TOKEN_TTL_S = 2


def log_lines(stack: Stack, name: str = "loader") -> list[dict[str, Any]]:
    lines = []
    for line in stack.processes[name].log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_a_rate_limited_target_is_used_up_to_its_limit_and_no_faster(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [stack.kong_tenant("limited", COMPANY, rate_limit_rps=100)]
    stack.start_simulators()
    stack.set_faults(stack.kong_url, rate_limit_rps=100)
    stack.start_loader()
    feed(kafka, [canonical("limited", f"R-{i:04d}") for i in range(1_000)])

    wait_for_count(stack, stack.kong_url, "skus", 1_000, timeout=120)

    stats = stack.sim_stats(stack.kong_url)
    total = requests_by(stats)
    throttled = stats["served_429"]
    seconds = stats["last_request_at"] - stats["first_request_at"]
    rate = (total - throttled) / seconds
    print(
        f"rate limit: {total} requests in {seconds:.1f}s, {rate:.1f}/s answered, "
        f"{throttled} answered 429 ({throttled / total:.2%})"
    )
    assert total >= 1_000  # a create per product (none was written before)
    assert rate >= 85
    assert throttled / total < 0.02


def test_a_20s_outage_of_wms_delays_but_loses_nothing(stack: Stack, kafka: KafkaSettings) -> None:
    stack.tenants = [stack.wms_tenant("outage", COMPANY)]
    stack.start_simulators()
    stack.start_loader()
    feed(kafka, [canonical("outage", "WARM-UP")])
    wait_for_count(stack, stack.wms_url, "products", 1, timeout=60)
    stack.set_faults(stack.wms_url, outage_s=20, error_status=503)
    down_at = time.monotonic()
    feed(kafka, [canonical("outage", f"O-{i:03d}") for i in range(300)])

    def degraded() -> bool:
        return any(s["status"] == "degraded" for s in loader_states(kafka, "outage"))

    procs.wait_until(degraded, timeout=30, what="the tenant degraded in sync.state.v1")
    wait_for_count(stack, stack.wms_url, "products", 301, timeout=120)

    assert time.monotonic() - down_at >= 19  # nothing got through during the outage
    assert dead_letters(kafka) == []
    held = {p["external_id"] for p in stack.wms_products()}
    assert held == {"WARM-UP"} | {f"O-{i:03d}" for i in range(300)}
    breaker = [(line["tenant"], line["breaker"]) for line in log_lines(stack) if "breaker" in line]
    assert ("outage", "open") in breaker
    assert breaker[-1] == ("outage", "closed")


def test_tokens_expiring_every_2s_during_5000_products_cost_only_re_logins(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [stack.kong_tenant("ttl", COMPANY)]
    stack.start_simulators()
    # 2 s: the loader writes the 5,000 in a few seconds, so that tokens expire meanwhile.
    stack.set_faults(stack.kong_url, token_ttl_s=TOKEN_TTL_S)
    stack.start_loader()
    started = time.monotonic()
    feed(kafka, [canonical("ttl", f"T-{i:04d}") for i in range(5_000)])

    wait_for_count(stack, stack.kong_url, "skus", 5_000, timeout=240)

    took = time.monotonic() - started
    stats = stack.sim_stats(stack.kong_url)
    logins = requests_by(stats, route="/auth/token/login/")
    refused = requests_by(stats, status=401)
    print(f"token TTL {TOKEN_TTL_S}s: 5000 in {took:.1f}s, {logins} logins, {refused} 401s")
    assert dead_letters(kafka) == []
    # Tokens expired and were replaced, once each: not a login per call or per thread.
    assert 2 <= logins <= took / TOKEN_TTL_S + 2
    assert refused >= logins - 1
    assert len(stack.kong_skus()) == 5_000
    assert any("logged in to Kong again" in line.get("message", "") for line in log_lines(stack))


def test_one_tenant_in_outage_does_not_slow_another(stack: Stack, kafka: KafkaSettings) -> None:
    stack.tenants = [stack.wms_tenant("tenant-a", COMPANY), stack.kong_tenant("tenant-b", 8585)]
    stack.start_simulators()
    stack.start_loader()
    feed(kafka, [canonical("tenant-a", "A-WARM"), canonical("tenant-b", "B-WARM")])
    wait_for_count(stack, stack.kong_url, "skus", 1, timeout=60)
    wait_for_count(stack, stack.wms_url, "products", 1, timeout=60)

    # A's target down while B syncs 2,000 changes, A's 2,000 interleaved with B's.
    stack.set_faults(stack.wms_url, outage_s=40, error_status=503)
    mixed = []
    for i in range(2_000):
        mixed += [canonical("tenant-a", f"A-{i:04d}"), canonical("tenant-b", f"B1-{i:04d}")]
    started = time.monotonic()  # times include feeding, which overlaps the loading
    feed(kafka, mixed)
    wait_for_count(stack, stack.kong_url, "skus", 2_001, timeout=180)
    during = time.monotonic() - started
    assert stack.sim_stats(stack.wms_url)["products"] == 1  # A really was down meanwhile
    # A's records were parked, not lost: they land once its target is back.
    wait_for_count(stack, stack.wms_url, "products", 2_001, timeout=120)

    # Then B alone (the loader as warm as before): 2,000 more changes of the same kind.
    started = time.monotonic()
    feed(kafka, [canonical("tenant-b", f"B2-{i:04d}") for i in range(2_000)])
    wait_for_count(stack, stack.kong_url, "skus", 4_001, timeout=180)
    alone = time.monotonic() - started
    print(f"isolation: B alone {alone:.1f}s, B with A down {during:.1f}s")

    assert during <= 1.5 * alone
    assert dead_letters(kafka) == []
