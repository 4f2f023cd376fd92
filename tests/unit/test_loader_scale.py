"""The loader's cost per tenant is bounded: 500 tenants write through the loader's pool
of threads, not through threads of their own; a slow tenant holds only its concurrency
of it; tenants of one target host share one HTTP client that keeps no cookies; an idle
tenant costs a few kilobytes; a product's target id, under 200 bytes."""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

import httpx
import pytest

from services.common.serde import default_serde
from services.common.tenants import Tenant
from services.loader.ids import TargetIds
from services.loader.service import Loader
from services.targets.clients import Clients
from tests.unit.fakes import set_secrets, tenant_config
from tests.unit.test_loader_lanes import SilentTarget
from tests.unit.test_loader_service import FakeTarget, message

WORKERS = 16
# What an idle tenant may cost the loader at most (its lane, breaker, target adapter and
# session, on the shared client): 1,000 tenants in under 8 MB (measured: ~3.5 KB).
IDLE_TENANT_BYTES = 8_000


def tenant(tenant_id: str, **target: Any) -> Tenant:
    overrides = {f"target__{k}": v for k, v in target.items()}
    return Tenant.model_validate(
        tenant_config(tenant_id, env="L", source__base_url="http://siesa.test", **overrides)
    )


def tenants(count: int, **target: Any) -> dict[str, Tenant]:
    return {f"t{i:04d}": tenant(f"t{i:04d}", **target) for i in range(count)}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")


def test_500_tenants_write_through_a_bounded_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    many = tenants(500)
    targets = {t: FakeTarget() for t in many}
    before = threading.active_count()
    loader = Loader(serde=default_serde(), tenants=many, workers=WORKERS, targets=targets)
    try:
        batch = [
            message(n, f"S{k}", tenant=t)
            for n, (t, k) in enumerate((t, k) for t in many for k in range(3))
        ]
        loader.handle_batch(batch)  # type: ignore[arg-type]
        most = threading.active_count() - before
        for _ in range(100):
            if not loader.holds():
                break
            loader.handle_batch([])
            most = max(most, threading.active_count() - before)

        assert all(sorted(t.held) == ["S0", "S1", "S2"] for t in targets.values())
        assert loader.workers.threads <= WORKERS
        assert most <= WORKERS
    finally:
        loader.close()


def test_a_slow_tenant_holds_only_its_concurrency_of_the_pool() -> None:
    silent = SilentTarget()
    fast = FakeTarget()
    loader = Loader(
        serde=default_serde(),
        tenants={"slow": tenant("slow", concurrency=2), "fast": tenant("fast")},
        workers=4,
        targets={"slow": silent, "fast": fast},
        step_wait_s=0.5,
    )
    try:
        slow = [message(i, f"S{i}", tenant="slow") for i in range(100)]
        loader.handle_batch(slow)  # type: ignore[arg-type]
        loader.handle_batch([message(200 + i, f"F{i}", tenant="fast") for i in range(50)])  # type: ignore[misc]
        for _ in range(20):
            if len(fast.held) == 50:
                break
            loader.handle_batch([])

        assert len(fast.held) == 50  # the slow tenant's 98 waiting calls were not ahead
        assert silent.calls == 2  # its concurrency, however much it has waiting
        assert loader.workers.running(loader.lanes["slow"]) == 2
    finally:
        silent.answer.set()
        loader.close()


def test_tenants_of_one_host_share_one_client_that_keeps_no_cookies() -> None:
    clients = Clients(8)
    many = tenants(3)
    other = tenant("other", base_url="https://wms.test:8443/api")
    try:
        shared = {id(clients.for_target(t.target)) for t in many.values()}
        assert len(shared) == 1
        assert id(clients.for_target(other.target)) not in shared
        assert len(clients) == 2

        client = clients.for_target(other.target)
        response = httpx.Response(
            200,
            headers={"Set-Cookie": "session=tenant-a; Path=/"},
            request=httpx.Request("GET", "https://wms.test:8443/api/x"),
        )
        client.cookies.extract_cookies(response)
        assert list(client.cookies.jar) == []  # never sent with another tenant's call

        clients.keep([t.target for t in many.values()])
        assert len(clients) == 1
    finally:
        clients.close()


def test_an_idle_tenant_costs_a_few_kilobytes() -> None:
    many = tenants(1_000)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        loader = Loader(serde=default_serde(), tenants=many, workers=WORKERS)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    try:
        grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
        per_tenant = grown / len(many)
        print(
            f"an idle tenant costs the loader {per_tenant:.0f} bytes ({len(loader.clients)} client)"
        )
        assert per_tenant < IDLE_TENANT_BYTES
        assert len(loader.clients) == 1
        assert loader.workers.threads == 0  # none started before there is work
    finally:
        loader.close()


# What a product's target id costs the loader (kept for every product it wrote, so that
# an update costs one call): measured ~140 bytes; ~320 when keyed by (tenant, sku).
TARGET_ID_BYTES = 200


def test_a_products_target_id_costs_under_200_bytes() -> None:
    ids = TargetIds(None, default_serde(), {})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(50_000):
            # Fresh strings for each record, as decoded from Avro (nothing shared).
            tenant, sku = f"scale-{n // 1000:04d}", f"SKU-{n:06d}"
            ids.learned(tenant, sku, n % 6, str(100_000 + n))
        per_id = (tracemalloc.get_traced_memory()[0] - before) / 50_000
    finally:
        tracemalloc.stop()

    print(f"{per_id:.0f} bytes per target id")
    assert len(ids) == 50_000
    assert ids.known("scale-0007", "SKU-007001") == "107001"
    assert per_id < TARGET_ID_BYTES


# What a record held ahead of a slow target costs the loader besides its message (its
# sku, its place in its lane): ~160 bytes measured. Keeping its decoded product and trace
# too cost ~1,080 with this test's small products, ~1,650 with a real one (33 MB for
# the 20,000 records a loader holds at most by default).
HELD_RECORD_BYTES = 500


def test_a_record_held_for_a_slow_target_costs_its_message_and_little_more() -> None:
    silent = SilentTarget()
    loader = Loader(
        serde=default_serde(),
        tenants={"slow": tenant("slow", concurrency=1)},
        workers=2,
        targets={"slow": silent},
        step_wait_s=0.01,
    )
    records = [message(i, f"SKU-{i:06d}", name=f"Product {i}", tenant="slow") for i in range(5_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loader.handle_batch(records)  # type: ignore[arg-type]
        per_record = (tracemalloc.get_traced_memory()[0] - before) / len(records)
    finally:
        tracemalloc.stop()
        silent.answer.set()
        loader.close()

    print(f"{per_record:.0f} bytes per record held")
    assert loader.parked() == len(records)  # all held: one call at a time, none answered
    assert per_record < HELD_RECORD_BYTES
