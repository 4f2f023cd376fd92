"""Kept target ids under a target that lost its data, as real processes on the real broker:
Kong's store is reset under a running loader, another tenant's new products take the ids
this tenant's products had, then `siesa-sync replay --tenant T --from 1h --stage load`:
Kong holds exactly every product of both tenants, every field right, none overwritten
by another. Then the same after a loader restart, with the ids read back from
loader.target-ids.v1, which also makes each update one call."""

from __future__ import annotations

from typing import Any

import httpx

from devtools import procs
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from tests.e2e.loading import canonical, dead_letters, feed, requests_by, wait_for_count

COMPANY = 8020
OURS = 1_000


def product(tenant: str, i: int, version: str) -> dict[str, Any]:
    return canonical(
        tenant, f"{tenant.upper()}-{i:05d}", f"{tenant} {i} {version}", weight_kg=i / 10
    )


def held_exactly(stack: Stack, want: list[dict[str, Any]]) -> list[str]:
    """Why Kong does not hold exactly `want` (each once, with its own fields)."""
    customer = {"acme": 100, "globex": 200}
    skus = stack.kong_skus()
    by_sku: dict[str, dict[str, Any]] = {}
    problems = []
    for sku in skus:
        if sku["external_id"] in by_sku:
            problems.append(f"{sku['external_id']}: held twice")
        by_sku[sku["external_id"]] = sku
    expected = {p["sku"]: p for p in want}
    problems += [f"{s}: held but never sent" for s in sorted(set(by_sku) - set(expected))]
    for sku, p in expected.items():
        got = by_sku.get(sku)
        if got is None:
            problems.append(f"{sku}: missing")
            continue
        fields = {
            "name": p["name"],
            "reference": p["reference"],
            "customer_id": customer[p["tenant"]],
            "properties": {"unit": "UNIT", "weight_kg": p["weight_kg"]},
        }
        problems += [f"{sku}: {f} is {got.get(f)!r}" for f, v in fields.items() if got.get(f) != v]
    return problems


def wait_exactly(stack: Stack, want: list[dict[str, Any]], timeout: float) -> None:
    def done() -> bool:
        stack.check_alive()
        return not held_exactly(stack, want)

    try:
        procs.wait_until(done, timeout=timeout, interval=1.0, what=f"Kong holding {len(want)}")
    except TimeoutError:
        raise AssertionError("\n".join(held_exactly(stack, want)[:20])) from None


def patches(stats: dict[str, Any]) -> int:
    return sum(r["count"] for r in stats["requests"] if r["method"] == "PATCH")


def reset_and_replay(
    stack: Stack, kafka: KafkaSettings, ours: list[dict[str, Any]], round_: str
) -> list[dict[str, Any]]:
    """Reset Kong, let globex's new products take every id acme's products had, replay
    acme's last hour; returns globex's products (Kong must then hold them and `ours`)."""
    kept = max(s["id"] for s in stack.kong_skus() if s["customer_id"] == 100)
    httpx.post(f"{stack.kong_url}/_admin/reset", timeout=30).raise_for_status()
    theirs = [product("globex", i, round_) for i in range(kept)]
    feed(kafka, theirs)
    wait_for_count(stack, stack.kong_url, "skus", kept, timeout=180)
    assert {s["id"] for s in stack.kong_skus()} == set(range(1, kept + 1))  # acme's old ids

    stack.run_cli(["replay", "--tenant", "acme", "--from", "1h", "--stage", "load"])

    wait_exactly(stack, ours + theirs, timeout=300)
    return theirs


def test_a_reset_target_and_a_replay_leave_every_product_exactly_once_and_right(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [
        stack.kong_tenant("acme", COMPANY),
        stack.kong_tenant("globex", 8585, settings={"type_id": 1, "customer_id": 200}),
    ]
    stack.start_simulators()
    stack.start_loader(instance_id="ids")
    ours = [product("acme", i, "v1") for i in range(OURS)]
    feed(kafka, ours)
    wait_for_count(stack, stack.kong_url, "skus", OURS, timeout=180)

    theirs = reset_and_replay(stack, kafka, ours, "r1")

    # A restarted loader reads its ids back: each update is one call again...
    stack.stop("loader")
    stack.start_loader(instance_id="ids")
    before = stack.sim_stats(stack.kong_url)
    updated = [product("acme", i, "v2") for i in range(OURS)]
    feed(kafka, updated)
    wait_exactly(stack, updated + theirs, timeout=180)
    after = stack.sim_stats(stack.kong_url)
    calls = requests_by(after) - requests_by(before)
    print(f"after a restart: {calls} calls for {OURS} updates")
    assert calls <= OURS * 1.02
    assert patches(after) - patches(before) == OURS  # by the ids read back, no look-ups

    # ...and the ids read back are trusted no more than the ones it learned itself.
    reset_and_replay(stack, kafka, updated, "r2")
    assert dead_letters(kafka) == []
