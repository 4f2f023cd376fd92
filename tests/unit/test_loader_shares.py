"""Each loader's share of a tenant's limits (shares.py): the shares of a group add up
to the tenant's limits, as partitions are assigned and revoked."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from confluent_kafka import TopicPartition

from services.common.serde import default_serde
from services.common.tenants import Tenant
from services.loader.service import Loader
from services.loader.shares import GroupRate, concurrency_share, limiter_for, slots
from tests.unit.fakes import set_secrets, tenant_config
from tests.unit.test_loader_lanes import SilentTarget
from tests.unit.test_loader_service import FakeTarget, message

PARTITIONS = 6
TOPIC = "siesa.items.raw.v1"  # (the test messages')


def splits(loaders: int) -> Iterator[list[list[int]]]:
    """Every way of dealing 6 partitions to `loaders` loaders, each holding some."""
    for owners in itertools.product(range(loaders), repeat=PARTITIONS):
        if len(set(owners)) == loaders:
            yield [[p for p, o in enumerate(owners) if o == n] for n in range(loaders)]


@pytest.mark.parametrize("concurrency", [6, 7, 8, 12, 13, 64])
@pytest.mark.parametrize("loaders", [1, 2, 3, 4, 6])
def test_concurrency_shares_add_up_to_the_limit(concurrency: int, loaders: int) -> None:
    for split in splits(loaders):
        shares = [concurrency_share("acme", concurrency, held, PARTITIONS) for held in split]
        assert sum(shares) == concurrency, split


@pytest.mark.parametrize("concurrency", [1, 2, 4, 5])
def test_a_concurrency_below_the_partitions_is_exceeded_only_by_loaders_with_no_slot(
    concurrency: int,
) -> None:
    for loaders in (1, 2, 3, 6):
        for split in splits(loaders):
            shares = [concurrency_share("t", concurrency, held, PARTITIONS) for held in split]
            slotless = sum(
                1 for held in split if not any(slots("t", concurrency, p, PARTITIONS) for p in held)
            )
            assert all(s >= 1 for s in shares)
            assert sum(shares) == concurrency + slotless
            assert sum(shares) <= min(concurrency + loaders - 1, PARTITIONS)


def test_tenants_get_their_extra_slots_on_different_partitions() -> None:
    extra = {
        tuple(p for p in range(PARTITIONS) if slots(t, 7, p, PARTITIONS) == 2)
        for t in (f"tenant-{i}" for i in range(20))
    }
    assert len(extra) > 1


def test_a_rate_share_keeps_its_fraction() -> None:
    limiter = limiter_for(100 / 3)
    assert limiter.limit == 33
    assert limiter.limit / limiter.window_s == pytest.approx(100 / 3)
    slow = limiter_for(2 / 6)
    assert (slow.limit, slow.window_s) == (1, pytest.approx(3.0))

    rates = [GroupRate(100, share) for share in (2 / 6, 1 / 6, 3 / 6)]
    assert sum(r.rps for r in rates) == pytest.approx(100)


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[Loader]:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    tenants = {
        t: Tenant.model_validate(
            tenant_config(
                t,
                env="L",
                source__base_url="http://siesa.test",
                target__rate_limit_rps=90,
                target__concurrency=12,
            )
        )
        for t in ("a", "b")
    }
    made = Loader(
        serde=default_serde(),
        tenants=tenants,
        partitions=PARTITIONS,
        targets={"a": FakeTarget(), "b": FakeTarget()},
        opener=lambda tenant, rate: FakeTarget(),
    )
    yield made
    made.close()


def tps(*partitions: int) -> list[TopicPartition]:
    return [TopicPartition("products.canonical.v1", p) for p in partitions]


def test_a_loader_takes_its_share_of_the_partitions_as_they_come_and_go(loader: Loader) -> None:
    assert loader.lanes["a"].concurrency == 1  # nothing assigned: nothing to write yet

    loader.assigned(tps(0, 1))
    assert loader.rates["a"].rps == pytest.approx(30)
    assert loader.lanes["a"].concurrency == 4

    loader.assigned(tps(2))  # cooperative: only what is added
    assert loader.rates["b"].rps == pytest.approx(45)
    assert loader.lanes["b"].concurrency == 6

    loader.revoked(tps(0, 1))
    assert loader.rates["a"].rps == pytest.approx(15)
    assert loader.lanes["a"].concurrency == 2

    loader.revoked(tps(2))  # holding none: the last share kept for calls still ending
    assert loader.rates["a"].rps == pytest.approx(15)
    assert loader.lanes["a"].concurrency == 1


def test_a_revocation_drops_the_calls_not_started_and_starts_ours_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    silent = SilentTarget()
    one = Tenant.model_validate(
        tenant_config("a", env="L", source__base_url="http://siesa.test", target__concurrency=1)
    )
    loader = Loader(
        serde=default_serde(), tenants={"a": one}, targets={"a": silent}, partitions=PARTITIONS
    )
    try:
        loader.assigned([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])
        batch = [
            message(1, "A", tenant="a"),  # running (its target silent)...
            message(2, "B", tenant="a", partition=1),  # ...and these two queued behind it
            message(3, "C", tenant="a"),
        ]
        loader.handle_batch(batch)  # type: ignore[arg-type]
        loader.revoked([TopicPartition(TOPIC, 1)])
        silent.answer.set()
        for _ in range(50):
            if not loader.holds():
                break
            loader.handle_batch([])

        assert loader.holds() == {}
        assert silent.calls == 2  # A and C: B's partition went elsewhere before its call
        assert loader.states["a"]["loaded"] == 2
    finally:
        silent.answer.set()
        loader.close()
