"""Tenants kept apart in the loader, with fake targets: a silent target holds no step and
no other tenant, refused credentials make the tenant `failed` with an alert, a tenant's
parked records are bounded (the rest read again later), and a target answering 200 with
a maintenance page is a passing fault of the tenant (against the Kong simulator app)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from starlette.testclient import TestClient

from services.common.alerts import Alerter
from services.common.errors import RetriableError, SkippableError
from services.common.serde import default_serde
from services.common.tenants import Tenant
from services.loader.breaker import BreakerState
from services.loader.service import AUTH_ALERT, Loader
from services.targets.auth import CredentialsRefused
from services.targets.base import UpsertResult
from services.targets.session import TargetSession, UnexpectedAnswer
from simulators.kong import create_app
from tests.unit.fakes import set_secrets, tenant_config
from tests.unit.kong_support import PASSWORD, USERNAME, kong_on, product, stored
from tests.unit.test_loader_service import FakeTarget, message

pytestmark = pytest.mark.filterwarnings("ignore:You should not use the 'timeout' argument")

TOPIC = "siesa.items.raw.v1"


class SilentTarget:
    """Answers nothing until `answer` is set (a target that never answers), then
    creates; raises `failing` instead while it is set."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.failing: RetriableError | None = None
        self.calls = 0

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        self.calls += 1
        if self.failing is not None:
            raise self.failing
        self.answer.wait(30)
        return UpsertResult(product["sku"], "created", f"id-{product['sku']}")

    def close(self) -> None:
        self.answer.set()


class Alerts(Alerter):
    def __init__(self) -> None:
        super().__init__(None, "loader")
        self.fired: list[tuple[str, str]] = []
        self.cleared: list[tuple[str, str]] = []

    def fire(self, tenant: str, condition: str, reason: str) -> bool:
        self.fired.append((tenant, condition))
        return super().fire(tenant, condition, reason)

    def clear(self, tenant: str, condition: str) -> None:
        self.cleared.append((tenant, condition))
        super().clear(tenant, condition)


def tenant(tenant_id: str, **target: Any) -> Tenant:
    overrides = {f"target__{k}": v for k, v in target.items()}
    return Tenant.model_validate(
        tenant_config(tenant_id, env="L", source__base_url="http://siesa.test", **overrides)
    )


@pytest.fixture
def silent() -> SilentTarget:
    return SilentTarget()


@pytest.fixture
def fast() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def alerts() -> Alerts:
    return Alerts()


@pytest.fixture
def seeks() -> list[TopicPartition]:
    return []


@pytest.fixture
def loader(
    monkeypatch: pytest.MonkeyPatch,
    silent: SilentTarget,
    fast: FakeTarget,
    alerts: Alerts,
    seeks: list[TopicPartition],
) -> Iterator[Loader]:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    made = Loader(
        serde=default_serde(),
        tenants={
            "slow": tenant("slow", breaker_failures=1, breaker_cooldown_s=60),
            "fast": tenant("fast"),
        },
        max_parked_per_tenant=3,
        step_wait_s=0.5,
        targets={"slow": silent, "fast": fast},
        alerter=alerts,
        seek=seeks.append,
    )
    yield made
    silent.answer.set()
    made.close()


def test_a_silent_target_holds_neither_the_step_nor_another_tenant(
    loader: Loader, silent: SilentTarget, fast: FakeTarget
) -> None:
    batch = [message(1, "S1", tenant="slow"), message(2, "F1", tenant="fast")]
    started = time.monotonic()
    loader.handle_batch(batch)  # type: ignore[arg-type]
    first = time.monotonic() - started
    loader.handle_batch([message(3, "F2", tenant="fast")])  # type: ignore[list-item]

    assert sorted(fast.held) == ["F1", "F2"]  # landed while slow's call hangs
    assert first < 5  # the step waited its bound (0.5 s), not the silent call
    # The silent tenant's record is held (offset 1), the fast tenant's are done.
    assert loader.holds() == {(TOPIC, 0): 1}

    silent.answer.set()
    for _ in range(20):
        if not loader.holds():
            break
        loader.handle_batch([])
    assert loader.holds() == {}


def test_refused_credentials_make_the_tenant_failed_with_an_alert_until_it_answers(
    loader: Loader, silent: SilentTarget, fast: FakeTarget, alerts: Alerts
) -> None:
    silent.failing = CredentialsRefused("tenant slow: Kong login: HTTP 400: credentials refused")
    loader.handle_batch([message(1, "S1", tenant="slow"), message(2, "F1", tenant="fast")])  # type: ignore[list-item]

    assert loader.breakers["slow"].state is BreakerState.OPEN  # at once, not after 5
    assert loader.states["slow"]["status"] == "failed"
    assert "credentials refused" in loader.states["slow"]["last_error"]
    assert alerts.fired == [("slow", AUTH_ALERT)]
    assert loader.states["fast"]["status"] == "idle"
    assert sorted(fast.held) == ["F1"]


class Log:
    """A topic's partitions and a consumer's positions in them: `seek` moves one back
    (the loader's `seek`), `read` gives what follows each position."""

    def __init__(self, messages: list[Any]) -> None:
        self.messages = messages
        self.positions: dict[int, int] = {}
        self.seeks: list[tuple[int, int]] = []

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.partition, tp.offset))
        self.positions[tp.partition] = tp.offset

    def seek_to(self, partition: int, offset: int) -> None:
        """A seek of the run loop's own (reading a batch again): not the loader's."""
        self.positions[partition] = offset

    def read(self, most: int = 4) -> list[Any]:
        batch = []
        for msg in self.messages:
            if len(batch) < most and msg.offset() >= self.positions.get(msg.partition(), 0):
                batch.append(msg)
                self.positions[msg.partition()] = msg.offset() + 1
        return batch


def test_a_tenants_parked_records_are_bounded_and_read_again_once_it_recovers(
    loader: Loader, silent: SilentTarget, fast: FakeTarget
) -> None:
    silent.failing = RetriableError("HTTP 503")
    slow = [message(i, f"S{i}", tenant="slow", partition=i % 2) for i in range(10)]
    log = Log([*slow, message(10, "F1", tenant="fast")])
    loader.rereads.seek = log.seek  # the consumer's seek
    loader.handle_batch(log.read(most=11))

    assert loader.parked() == 3  # its bound; the rest were not kept...
    assert loader.holds() == {(TOPIC, 0): 0, (TOPIC, 1): 1}  # ...but their offsets are
    assert sorted(fast.held) == ["F1"]  # the other tenant flows on
    assert log.seeks == []

    silent.failing = None
    silent.answer.set()
    loader.breakers["slow"].succeeded()  # (as a probe that got through would)
    for _ in range(50):
        loader.handle_batch(log.read())
        if not loader.holds() and not loader.parked():
            break

    # Room again: the partitions were read again from the lowest record not kept, and
    # every product landed; nothing was committed past a record before it was read again.
    assert sorted(log.seeks[:2]) == [(0, 4), (1, 3)]
    assert silent.calls >= 10
    assert loader.holds() == {}
    assert loader.states["slow"]["loaded"] == 10


def test_past_the_loaders_bound_records_are_read_again_and_what_is_held_still_goes(
    loader: Loader, silent: SilentTarget, fast: FakeTarget
) -> None:
    # The loader's bound on all tenants (here 3), reached by a target that hangs: the
    # steps go on (they used to refuse every batch, and the held calls were never
    # collected), the records past the bound are read again once the held ones went.
    loader.max_parked, loader.max_parked_per_tenant = 3, 100
    for lane in loader.lanes.values():
        lane.max_parked = 100
    slow = [message(i, f"S{i}", tenant="slow") for i in range(3)]
    log = Log([*slow, *(message(3 + i, f"F{i}", tenant="fast") for i in range(5))])
    loader.rereads.seek = log.seek
    loader.handle_batch(log.read(most=3))
    assert loader.parked() == 3  # the bound: the slow tenant's calls hang

    loader.handle_batch(log.read(most=5))  # no room: not kept, offsets held, no error
    assert loader.parked() == 3
    assert loader.holds() == {(TOPIC, 0): 0}
    assert fast.held == {}

    silent.answer.set()
    for _ in range(50):
        loader.handle_batch(log.read())
        if not loader.holds() and not loader.parked():
            break

    assert log.seeks[0] == (0, 3)  # read again from the first record not kept
    assert sorted(fast.held) == [f"F{i}" for i in range(5)]
    assert loader.states["slow"]["loaded"] == 3
    assert loader.holds() == {}


def test_revoked_partitions_forget_what_was_not_kept(loader: Loader, silent: SilentTarget) -> None:
    silent.failing = RetriableError("HTTP 503")
    loader.handle_batch([message(i, f"S{i}", tenant="slow") for i in range(6)])  # type: ignore[arg-type]
    assert loader.holds() == {(TOPIC, 0): 0}

    loader.revoked([TopicPartition(TOPIC, 0)])

    assert loader.holds() == {}


# -- a maintenance page with 200 --------------------------------------------------------


@pytest.fixture
def kong_app(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("K_USER", USERNAME)
    monkeypatch.setenv("K_PASSWORD", PASSWORD)
    monkeypatch.setattr(TargetSession.call.retry, "sleep", lambda _s: None)  # type: ignore[attr-defined]
    return create_app({USERNAME: PASSWORD})


def test_a_maintenance_page_with_200_is_a_passing_fault_not_a_write(kong_app: Any) -> None:
    kong = kong_on(kong_app)
    with TestClient(kong_app) as admin:
        kong.upsert(product(sku="FIRST"))  # logged in
        admin.post("/_admin/faults", json={"maintenance_html": True})
        with pytest.raises(UnexpectedAnswer) as caught:
            kong.upsert(product())
        assert not isinstance(caught.value, SkippableError)
        assert "text/html, not JSON" in caught.value.message

        admin.post("/_admin/faults", json={})
        assert kong.upsert(product()).action == "created"
        assert len(stored(admin)) == 2
    kong.close()


def test_revoked_credentials_are_refused_credentials(kong_app: Any) -> None:
    kong = kong_on(kong_app)
    with TestClient(kong_app) as admin:
        kong.upsert(product())
        admin.post("/_admin/faults", json={"credentials_revoked_s": 3600})
        with pytest.raises(CredentialsRefused) as caught:
            kong.upsert(product(name="LATER"))
        assert PASSWORD not in caught.value.message
    kong.close()
