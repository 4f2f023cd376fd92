"""Tenants changed live in the loader (`Loader.set_tenants`, from another thread, applied
at the next step): an added tenant loads, a changed target is opened again with the
tenant's pending records kept, a removed tenant's records are dead-lettered as of an
unknown tenant (its calls in flight end first)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from services.common.errors import RetriableError, UnknownTenant
from services.common.serde import default_serde
from services.common.tenants import Tenant
from services.loader.service import Loader
from services.loader.shares import GroupRate
from services.targets.base import UpsertResult
from tests.unit.fakes import set_secrets, tenant_config
from tests.unit.test_loader_lanes import SilentTarget
from tests.unit.test_loader_service import FakeTarget, message


class DownTarget(FakeTarget):
    """Fails every write (retriable) while `down`."""

    down = False

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        if self.down:
            raise RetriableError("target down", tenant=product["tenant"])
        return super().upsert(product, known_id)


class Opened:
    """The opener the loader is given: a target per tenant and base URL, noted."""

    def __init__(self) -> None:
        self.targets: dict[tuple[str, str], DownTarget] = {}
        self.rates: dict[str, GroupRate | None] = {}

    def __call__(self, tenant: Tenant, rate: GroupRate | None) -> DownTarget:
        target = self.targets[tenant.id, tenant.target.base_url] = DownTarget()
        self.rates[tenant.id] = rate
        return target


def tenant(tenant_id: str, **target: Any) -> Tenant:
    overrides = {f"target__{k}": v for k, v in target.items()}
    return Tenant.model_validate(
        tenant_config(tenant_id, env="L", source__base_url="http://siesa.test", **overrides)
    )


@pytest.fixture
def opened() -> Opened:
    return Opened()


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch, opened: Opened) -> Iterator[Loader]:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    made = Loader(serde=default_serde(), tenants={"a": tenant("a")}, opener=opened)
    yield made
    made.close()


def settle(loader: Loader, timeout: float = 10) -> list[Any]:
    """Run steps until the loader holds nothing; the records they dead-lettered."""
    failures = []
    deadline = time.monotonic() + timeout
    while loader.holds() and time.monotonic() < deadline:
        failures += loader.handle_batch([]).failures
        time.sleep(0.01)  # (a removed tenant's last calls are not waited for in a step)
    return failures


def test_an_added_tenant_loads_from_the_next_step(loader: Loader, opened: Opened) -> None:
    result = loader.handle_batch([message(1, "B1", tenant="b")])  # type: ignore[list-item]
    assert isinstance(result.failures[0][1], UnknownTenant)  # not known yet

    # From another thread, as the tenants topic's reader does.
    setter = threading.Thread(
        target=loader.set_tenants,
        args=({"a": tenant("a"), "b": tenant("b", rate_limit_rps=5)},),
    )
    setter.start()
    setter.join()
    result = loader.handle_batch([message(2, "B2", tenant="b")])  # type: ignore[list-item]
    settle(loader)

    assert result.failures == []
    assert sorted(opened.targets["b", "http://kong.test"].held) == ["B2"]
    rate = opened.rates["b"]
    assert rate is not None
    assert rate.rps == 5
    assert loader.states["b"]["loaded"] == 1


def test_a_changed_target_is_opened_again_and_the_pending_records_kept(
    loader: Loader, opened: Opened
) -> None:
    old = opened.targets["a", "http://kong.test"]
    old.down = True
    loader.handle_batch([message(1, "A1", tenant="a"), message(2, "A2", tenant="a")])  # type: ignore[list-item]
    assert loader.parked() == 2

    loader.set_tenants({"a": tenant("a", base_url="http://kong-2.test")})
    settle(loader)

    new = opened.targets["a", "http://kong-2.test"]
    assert sorted(new.held) == ["A1", "A2"]
    assert old.held == {}
    assert loader.holds() == {}


def test_a_removed_tenants_records_are_dead_lettered_once_its_calls_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    silent = SilentTarget()
    loader = Loader(
        serde=default_serde(),
        tenants={"a": tenant("a", concurrency=1), "b": tenant("b")},
        targets={"a": silent, "b": FakeTarget()},
        step_wait_s=0.2,
    )
    try:
        # A1 is in flight (its target silent); A2, A3 wait behind it in its lane.
        loader.handle_batch([message(i, f"A{i}", tenant="a") for i in (1, 2, 3)])  # type: ignore[misc]
        loader.set_tenants({"b": tenant("b")})
        result = loader.handle_batch([message(4, "A4", tenant="a")])  # type: ignore[list-item]

        dead = {msg.key(): type(exc) for msg, exc in result.failures}
        assert dead == {b"a/A2": UnknownTenant, b"a/A3": UnknownTenant, b"a/A4": UnknownTenant}
        assert loader.holds() == {("siesa.items.raw.v1", 0): 1}  # A1 still in flight
        assert "a" not in loader.lanes

        silent.answer.set()  # A1's call ends: written, its offset no longer held
        assert settle(loader) == []
        assert loader.holds() == {}
        assert loader.states["a"]["loaded"] == 1
    finally:
        silent.answer.set()
        loader.close()


def test_a_hosts_client_goes_with_its_last_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    both = {"a": tenant("a"), "b": tenant("b", base_url="http://kong-2.test")}
    loader = Loader(serde=default_serde(), tenants=both)  # its own targets and clients
    try:
        assert len(loader.clients) == 2
        loader.set_tenants({"a": both["a"]})
        loader.handle_batch([])
        loader.handle_batch([])

        assert len(loader.clients) == 1
        assert set(loader.lanes) == {"a"}
    finally:
        loader.close()
