"""Reading again what a lane spilled, and only that: the records read with a spilled one
(other tenants', the tenant's own kept ones) are not written twice, a newer version is
never overwritten by an older one read again, a batch the run loop reads again is taken
again whole, and the bits kept per partition are few."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from devtools import procs
from services.common.serde import default_serde
from services.loader.rereads import Rereads
from services.loader.service import Loader
from services.targets.base import UpsertResult
from tests.unit.fakes import FakeMessage, set_secrets
from tests.unit.test_loader_lanes import TOPIC, Log, tenant
from tests.unit.test_loader_service import FakeTarget, message


class GatedTarget(FakeTarget):
    """A FakeTarget whose calls wait until `gate` is set (a target that hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        self.gate.wait(30)
        return super().upsert(product, known_id)


@pytest.fixture
def slow() -> GatedTarget:
    return GatedTarget()


@pytest.fixture
def fast() -> FakeTarget:
    return FakeTarget()


@pytest.fixture
def loader(
    monkeypatch: pytest.MonkeyPatch, slow: GatedTarget, fast: FakeTarget
) -> Iterator[Loader]:
    set_secrets(monkeypatch, "L", "k", "k", "u", "p")
    made = Loader(
        serde=default_serde(),
        tenants={"slow": tenant("slow"), "fast": tenant("fast")},
        max_parked_per_tenant=3,
        step_wait_s=0.2,
        targets={"slow": slow, "fast": fast},
    )
    yield made
    slow.gate.set()
    made.close()


def drain(loader: Loader, log: Log) -> None:
    deadline = time.monotonic() + 20
    while loader.holds() or loader.parked():
        assert time.monotonic() < deadline, f"still held: {loader.holds()}"
        loader.handle_batch(log.read())


def wait_ended(loader: Loader, tenant_id: str, calls: int) -> None:
    lane = loader.lanes[tenant_id]
    procs.wait_until(lambda: lane.ended >= calls, timeout=10, interval=0.01, what="the calls")


def test_records_read_again_with_a_spilled_one_are_not_written_twice(
    loader: Loader, slow: GatedTarget, fast: FakeTarget
) -> None:
    # One partition: the slow tenant's lane keeps 3 (its calls hang), spills S3 and S4;
    # the fast tenant's records around them are written at once.
    records = [
        message(0, "S0", tenant="slow"),
        message(1, "S1", tenant="slow"),
        message(2, "S2", tenant="slow"),
        message(3, "F0", tenant="fast"),
        message(4, "S3", tenant="slow"),
        message(5, "F1", tenant="fast"),
        message(6, "S4", tenant="slow"),
        message(7, "F2", tenant="fast"),
    ]
    log = Log(records)
    loader.rereads.seek = log.seek
    first = loader.handle_batch(log.read(most=8))
    assert first.counts["spilled"] == 2
    assert loader.holds() == {(TOPIC, 0): 0}

    slow.gate.set()
    drain(loader, log)

    assert log.seeks == [(0, 4)]  # read again from the first record spilled...
    # ...and only the spilled records taken then: every product written once.
    assert Counter(fast.calls) == {"F0": 1, "F1": 1, "F2": 1}
    assert Counter(slow.calls) == {f"S{i}": 1 for i in range(5)}
    assert loader.states["slow"]["loaded"] == 5
    assert loader.states["fast"]["loaded"] == 3


def test_a_newer_version_is_never_overwritten_by_an_older_one_read_again(
    loader: Loader, slow: GatedTarget
) -> None:
    records = [
        *(message(i, f"S{i}", tenant="slow") for i in range(3)),
        message(3, "X", name="old", tenant="slow"),  # spilled: the lane is full
        message(4, "X", name="new", tenant="slow"),
    ]
    log = Log(records)
    loader.rereads.seek = log.seek
    loader.handle_batch(log.read(most=4))
    slow.gate.set()
    wait_ended(loader, "slow", 3)  # the lane has room again...

    # ...but the newer version is not kept ahead of the older one spilled: written
    # first, it would be overwritten when the older one is read again.
    loader.handle_batch(log.read(most=1))
    drain(loader, log)

    assert slow.held["X"]["name"] == "new"
    assert slow.calls.count("X") == 1  # the older version superseded once read again


def test_a_batch_the_run_loop_reads_again_is_taken_again_whole(
    loader: Loader, slow: GatedTarget
) -> None:
    records = [
        *(message(i, f"S{i}", tenant="slow") for i in range(3)),
        message(3, "S3", tenant="slow"),  # spilled: a window from offset 3
        message(4, "G0", tenant="ghost"),  # dead-lettered: no such tenant
    ]
    log = Log(records)
    loader.rereads.seek = log.seek
    loader.handle_batch(log.read(most=4))
    batch = log.read(most=1)
    failed = loader.handle_batch(batch)
    assert [msg.offset() for msg, _err in failed.failures] == [4]

    # Its dead letter was not committed: the run loop seeks back and reads it again.
    log.seek_to(0, 4)
    loader.rewound(batch)
    again = loader.handle_batch(log.read(most=1))

    assert [msg.offset() for msg, _err in again.failures] == [4]  # not passed over
    assert again.counts["already taken"] == 0


def test_a_seek_back_the_run_loop_replaced_is_made_again(loader: Loader, slow: GatedTarget) -> None:
    records = [
        *(message(i, f"S{i}", tenant="slow") for i in range(3)),
        message(3, "S3", tenant="slow"),  # spilled
        message(4, "F0", tenant="fast"),
    ]
    log = Log(records)
    loader.rereads.seek = log.seek
    loader.handle_batch(log.read(most=4))
    slow.gate.set()
    wait_ended(loader, "slow", 3)
    batch = log.read(most=1)
    loader.handle_batch(batch)  # the lane has room: it reads S3 again (a seek to 3)
    assert log.seeks == [(0, 3)]

    # The step's outputs were not committed: the run loop seeks back to its batch (4),
    # which would skip S3; the loader seeks to 3 again.
    log.seek_to(0, 4)
    loader.rewound(batch)

    assert log.seeks[-1] == (0, 3)
    drain(loader, log)
    assert "S3" in slow.held


def test_a_window_costs_a_bit_per_record_read_past_a_spill() -> None:
    rereads = Rereads()
    first = FakeMessage(_topic=TOPIC, _offset=1_000)
    rereads.take(first)
    rereads.spill(first)
    for offset in range(1_001, 301_000):  # 300,000 records read past it, one spilled
        msg = FakeMessage(_topic=TOPIC, _offset=offset)
        if rereads.take(msg) and offset == 300_999:
            rereads.spill(msg)

    assert rereads.window_bytes() <= 300_000 // 8 + 1

    # Read again: the two spilled records alone are taken, and the window goes.
    rereads.batch()
    taken = [o for o in range(1_000, 301_000) if rereads.take(FakeMessage(_topic=TOPIC, _offset=o))]
    assert taken == [1_000, 300_999]
    rereads.batch()
    assert rereads.window_bytes() == 0


def test_what_a_reading_again_has_still_to_pass_is_not_forgotten() -> None:
    rereads = Rereads()
    for offset in range(1_000, 1_100):
        msg = FakeMessage(_topic=TOPIC, _offset=offset)
        if rereads.take(msg) and offset in (1_000, 1_010):
            rereads.spill(msg)

    # Read again from 1,000: the first record spilled is taken, and a new batch begins
    # (the window is tidied) while the reading is still at 1,001.
    rereads.batch()
    assert rereads.take(FakeMessage(_topic=TOPIC, _offset=1_000))
    rereads.batch()
    taken = [o for o in range(1_001, 1_100) if rereads.take(FakeMessage(_topic=TOPIC, _offset=o))]

    assert taken == [1_010]  # 1,001-1,009 were not forgotten as taken, then taken again
    rereads.batch()
    assert rereads.window_bytes() == 0


def test_a_second_reading_again_never_skips_what_the_first_has_still_to_read() -> None:
    seeks: list[tuple[int, int]] = []
    rereads = Rereads(lambda tp: seeks.append((tp.partition, tp.offset)))
    for offset in range(1_000, 1_100):
        msg = FakeMessage(_topic=TOPIC, _offset=offset)
        if rereads.take(msg) and offset in (1_000, 1_050):  # two tenants' spills
            rereads.spill(msg)
    rereads.read_again({(TOPIC, 0): 1_000})  # the first tenant has room again
    taken = [o for o in range(1_000, 1_021) if rereads.take(FakeMessage(_topic=TOPIC, _offset=o))]

    rereads.read_again({(TOPIC, 0): 1_050})  # then the second: the reading will get there
    low: dict[tuple[str, int], int] = {}
    rereads.holds(low)
    taken += [o for o in range(1_021, 1_100) if rereads.take(FakeMessage(_topic=TOPIC, _offset=o))]

    assert seeks == [(0, 1_000)]  # no seek forward to 1,050: 1,021-1,049 would be skipped
    assert low == {(TOPIC, 0): 1_050}  # held until read
    assert taken == [1_000, 1_050]


def test_a_reading_before_the_window_forgets_none_of_its_bits() -> None:
    rereads = Rereads()
    for offset in range(1_000, 1_100):
        msg = FakeMessage(_topic=TOPIC, _offset=offset)
        if rereads.take(msg) and offset in (1_000, 1_020):
            rereads.spill(msg)
    rereads.batch()
    assert rereads.take(FakeMessage(_topic=TOPIC, _offset=1_000))  # its first byte clear now

    # The run loop reads a batch again from before the window (990), and a batch begins.
    assert rereads.take(FakeMessage(_topic=TOPIC, _offset=990))
    rereads.batch()
    taken = [o for o in range(991, 1_100) if rereads.take(FakeMessage(_topic=TOPIC, _offset=o))]

    # Before the window, everything is taken (nothing known of it); in it, the spilled
    # record alone: the window's bits were not cut by the reading before them.
    assert taken == [*range(991, 1_000), 1_020]
