"""The extractor's scheduler: every tenant polled on a bounded number of threads, fairly,
stopped and commanded one by one, and a fatal error stopping all of it. The tenants'
pollers are stand-ins whose steps say when they are next due, but for the last test (a
real poller whose Siesa hangs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from services.common.errors import FatalError
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.common.tenants import Tenant
from services.extractor.memory import TenantMemory
from services.extractor.poller import TenantPoller
from services.extractor.scan import Scanner
from services.extractor.schedule import Scheduler
from services.sources.siesa.source import SiesaSource
from tests.unit.fakes import FakeTransactionalProducer, on_handler, set_secrets, tenant_config

DEADLINE_S = 20.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.01)


@dataclass
class FakePoller:
    """A tenant whose step takes `work` (a callable given the tenant's stopper), then is
    next due `interval` s later."""

    tenant_id: str
    interval: float = 0.02
    work: Callable[[Stopper | None], None] | None = None
    steps: int = 0
    commands: list[str] = field(default_factory=list)
    closed: bool = False
    threads_seen: list[int] = field(default_factory=list)
    log: list[str] | None = None

    def step(self, stopper: Stopper | None = None) -> float:
        self.threads_seen.append(threading.active_count())
        if self.log is not None:
            self.log.append(self.tenant_id)
        if self.work is not None:
            self.work(stopper)
        self.steps += 1
        return time.monotonic() + self.interval

    def command(self, name: str) -> None:
        self.commands.append(name)

    def close(self) -> None:
        self.closed = True


class Running:
    """A scheduler's `run` on a thread of its own; what it raised, once it ended."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="scheduler-run")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.scheduler.run()
        except BaseException as exc:  # noqa: BLE001 - kept for the test to assert
            self.error = exc

    def end(self) -> None:
        self.scheduler.stopper.stop()
        self.thread.join(DEADLINE_S)
        assert not self.thread.is_alive(), "the scheduler did not end"


@pytest.fixture
def stopper() -> Stopper:
    return Stopper()


@pytest.fixture
def running(stopper: Stopper) -> Iterator[Callable[[Scheduler], Running]]:
    started: list[Running] = []

    def start(scheduler: Scheduler) -> Running:
        started.append(Running(scheduler))
        return started[-1]

    yield start
    stopper.stop()  # the test's scheduler ends, also when the test failed
    for run in started:
        run.thread.join(DEADLINE_S)


def test_200_tenants_are_all_polled_on_a_bounded_number_of_threads(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    before = threading.active_count()
    scheduler = Scheduler(4, stopper)
    pollers = [FakePoller(f"t{n:03}") for n in range(200)]
    for poller in pollers:
        scheduler.start(poller)
    run = running(scheduler)

    wait_until(lambda: all(p.steps >= 3 for p in pollers), "every tenant polled 3 times")
    peak = max(n for p in pollers for n in p.threads_seen)
    # The 4 workers and run's own thread: nothing per tenant.
    assert peak <= before + 4 + 1
    assert scheduler.tenants() == sorted(p.tenant_id for p in pollers)
    run.end()
    assert run.error is None
    assert all(p.closed for p in pollers)


def test_a_hanging_tenant_holds_one_worker_while_the_others_keep_being_polled(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    entered = threading.Event()

    def hang(tenant_stop: Stopper | None) -> None:  # a source that never answers
        entered.set()
        assert tenant_stop is not None
        tenant_stop.wait(3600)

    scheduler = Scheduler(2, stopper)
    stuck = FakePoller("stuck", work=hang)
    others = [FakePoller(f"ok{n}") for n in range(5)]
    scheduler.start(stuck)
    for poller in others:
        scheduler.start(poller)
    run = running(scheduler)

    wait_until(entered.is_set, "the hanging scan began")
    wait_until(lambda: all(p.steps >= 20 for p in others), "20 polls of every other tenant")
    assert stuck.steps == 0
    run.end()  # the process's stop ends the hanging scan too
    assert run.error is None
    assert stuck.closed


def test_due_tenants_run_oldest_due_first(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    gate, busy = threading.Event(), threading.Event()
    order: list[str] = []

    def hold(_: Stopper | None) -> None:
        busy.set()
        gate.wait(DEADLINE_S)

    scheduler = Scheduler(1, stopper)
    scheduler.start(FakePoller("first", interval=3600, work=hold))
    run = running(scheduler)
    wait_until(busy.is_set, "the only worker busy")
    for name in ("b", "c", "a"):  # due in this order, while the worker is busy
        scheduler.start(FakePoller(name, interval=3600, log=order))
    gate.set()

    wait_until(lambda: len(order) == 3, "the three due tenants polled")
    assert order == ["b", "c", "a"]
    run.end()


def test_stop_waits_for_the_scan_in_progress_which_notices_the_stop(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    in_scan = threading.Event()
    noticed = threading.Event()

    def scan(tenant_stop: Stopper | None) -> None:  # pages until told to stop
        in_scan.set()
        assert tenant_stop is not None
        if tenant_stop.wait(DEADLINE_S):
            noticed.set()

    scheduler = Scheduler(2, stopper)
    slow = FakePoller("slow", work=scan)
    other = FakePoller("other")
    scheduler.start(slow)
    scheduler.start(other)
    run = running(scheduler)
    wait_until(in_scan.is_set, "the scan began")

    started = time.monotonic()
    assert scheduler.stop("slow", timeout=DEADLINE_S)
    assert time.monotonic() - started < 5  # the scan noticed at once, not at its end
    assert noticed.is_set()
    assert slow.closed
    assert scheduler.tenants() == ["other"]
    steps = slow.steps
    polled = other.steps
    wait_until(lambda: other.steps >= polled + 5, "the other tenant polled on")
    assert slow.steps == steps  # never scheduled again
    assert not other.closed
    run.end()
    assert other.closed


def test_stop_gives_up_after_its_timeout_and_the_poller_is_closed_when_its_scan_ends(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    release = threading.Event()
    in_scan = threading.Event()

    def deaf(_: Stopper | None) -> None:  # a scan that does not look at its stopper
        in_scan.set()
        release.wait(DEADLINE_S)

    scheduler = Scheduler(2, stopper)
    poller = FakePoller("deaf", work=deaf)
    scheduler.start(poller)
    run = running(scheduler)
    wait_until(in_scan.is_set, "the scan began")

    assert not scheduler.stop("deaf", timeout=0.2)
    assert scheduler.tenants() == []
    assert not poller.closed
    # Started again while its old scan runs: the new poller waits for that scan.
    again = FakePoller("deaf")
    scheduler.start(again)
    release.set()
    wait_until(lambda: poller.closed, "the old poller closed by its worker")
    wait_until(lambda: again.steps >= 1, "the new poller polled")
    run.end()


def test_commands_reach_the_poller_and_resync_and_resume_make_it_due_now(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    scheduler = Scheduler(2, stopper)
    poller = FakePoller("acme", interval=3600)  # next due in an hour after each poll
    scheduler.start(poller)
    run = running(scheduler)
    wait_until(lambda: poller.steps == 1, "the first poll")

    scheduler.command("acme", "pause")
    scheduler.command("acme", "resync")
    wait_until(lambda: poller.steps == 2, "a poll right after the resync")
    scheduler.command("acme", "resume")
    wait_until(lambda: poller.steps == 3, "a poll right after the resume")
    assert poller.commands == ["pause", "resync", "resume"]
    with pytest.raises(KeyError):
        scheduler.command("nobody", "resync")
    run.end()


def test_a_fatal_error_stops_every_tenant_and_is_raised(
    stopper: Stopper, running: Callable[[Scheduler], Running]
) -> None:
    def fenced(_: Stopper | None) -> None:
        raise FatalError("producer fenced")

    scheduler = Scheduler(3, stopper)
    bad = FakePoller("bad", interval=0.2, work=fenced)
    good = [FakePoller(f"g{n}") for n in range(4)]
    for poller in [*good, bad]:
        scheduler.start(poller)
    run = running(scheduler)

    run.thread.join(DEADLINE_S)
    assert not run.thread.is_alive()
    assert isinstance(run.error, FatalError)
    assert "tenant bad: producer fenced" in run.error.message
    assert stopper.stopped  # the rest of the process stops too
    assert all(p.closed for p in [*good, bad])


def test_a_tenant_started_twice_is_refused(stopper: Stopper) -> None:
    scheduler = Scheduler(1, stopper)
    scheduler.start(FakePoller("acme"))
    with pytest.raises(ValueError, match="already scheduled"):
        scheduler.start(FakePoller("acme"))


def test_stopping_a_tenant_whose_siesa_hangs_ends_its_scan_at_once(
    stopper: Stopper, running: Callable[[Scheduler], Running], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked, release = threading.Event(), threading.Event()

    def hang(_: httpx.Request) -> httpx.Response:  # Siesa never answers (until the end)
        asked.set()
        release.wait(DEADLINE_S)
        return httpx.Response(503)

    set_secrets(monkeypatch, "P", "k" * 32, "token", "u", "p")
    tenant = Tenant.model_validate(tenant_config("acme", env="P", source__mode="diff"))
    scheduler = Scheduler(2, stopper)
    tenant_stop = scheduler.tenant_stopper()
    source = SiesaSource(tenant.source, tenant="acme", http=on_handler(hang), stopper=tenant_stop)
    poller = TenantPoller(
        Scanner(
            tenant=tenant,
            source=source,
            producer=FakeTransactionalProducer(),  # type: ignore[arg-type]
            serde=default_serde(),
            kafka=KafkaSettings(),
            memory=TenantMemory("acme"),
        )
    )
    scheduler.start(poller, tenant_stop)
    run = running(scheduler)
    try:
        assert asked.wait(DEADLINE_S)
        started = time.monotonic()
        assert scheduler.stop("acme", timeout=DEADLINE_S)
        assert time.monotonic() - started < 5  # not Siesa's 30 s timeout and retries
        assert scheduler.tenants() == []
    finally:
        release.set()
    run.end()
    assert run.error is None
