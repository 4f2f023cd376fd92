"""The broker watch: an unreachable broker is said once with its address and why, keeps
the service unready, is reminded at a bounded rate and cleared when it answers; the
clients' errors reach it; librdkafka's repeated lines are held back. No broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import REGISTRY

from services.common import health, kafka, kafka_auth, reachability
from services.common.assignment import PARTITIONS, Assignment
from services.common.health import Health
from services.common.reachability import BrokerWatch, Repeats, client_error
from services.common.stopper import Stopper

ADDRESS = "127.0.0.1:9092"
REFUSED = f"{ADDRESS}/bootstrap: Connect to ipv4#{ADDRESS} failed: Connection refused"


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Broker:
    """A probe that fails while `down`."""

    def __init__(self) -> None:
        self.down = True
        self.probes = 0

    def __call__(self, _timeout_s: float) -> None:
        self.probes += 1
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))


@pytest.fixture
def watch() -> Iterator[tuple[BrokerWatch, Broker, Health, Clock]]:
    broker, target, clock = Broker(), Health("loader"), Clock()
    target.set_ready()
    yield BrokerWatch(ADDRESS, broker, target=target, clock=clock), broker, target, clock
    reachability.install(None)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == reachability.__name__]


def test_unreachable_is_said_once_with_address_and_why_then_at_a_bounded_rate(
    watch: tuple[BrokerWatch, Broker, Health, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    w, broker, target, clock = watch
    caplog.set_level(logging.INFO)
    w.suspect(f"{REFUSED} (after 0ms in state CONNECT)")

    assert w.check() is False
    assert lines(caplog) == [
        f"cannot reach the Kafka broker at {ADDRESS}: {REFUSED}; retrying every 5 s at "
        "most, not ready until it answers"
    ]
    assert not target.ready
    assert target.problems == {"broker": f"cannot reach the Kafka broker at {ADDRESS}: {REFUSED}"}

    for _ in range(20):  # 20 probes in 50 s: no new line
        clock.now += 2.5
        w.suspect(REFUSED)
        w.check()
    assert len(lines(caplog)) == 1
    clock.now += 15
    w.check()
    assert len(lines(caplog)) == 2
    assert lines(caplog)[1].startswith(f"still cannot reach the Kafka broker at {ADDRESS} after")

    broker.down = False
    clock.now += 5
    assert w.check() is True
    assert lines(caplog)[2] == f"the Kafka broker at {ADDRESS} answers again after 70 s"
    assert target.ready
    assert target.problems == {}


def test_the_wait_at_start_up_ends_when_the_broker_answers_or_at_a_stop() -> None:
    broker, stopper = Broker(), Stopper()

    def comes_up(timeout_s: float) -> None:
        broker.down = broker.probes < 2
        broker(timeout_s)

    up = BrokerWatch(ADDRESS, comes_up, target=Health("loader"), max_backoff_s=0.01)
    assert up.wait_until_reachable(stopper) is True
    assert broker.probes == 3

    stopper.stop()
    never = BrokerWatch(ADDRESS, Broker(), target=Health("loader"), max_backoff_s=0.01)
    assert never.wait_until_reachable(stopper) is False


def test_transport_errors_go_to_the_watch_and_fatal_ones_make_the_service_unready(
    watch: tuple[BrokerWatch, Broker, Health, Clock],
) -> None:
    w, broker, _target, _clock = watch
    reachability.install(w)
    broker.down = False

    client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    assert w.suspected  # the watch probes on its next turn

    state = health.current()
    client_error(KafkaError(KafkaError._FENCED, "producer fenced", fatal=True))
    try:
        assert "fatal" in state.problems
        assert "producer fenced" in state.problems["fatal"]
    finally:
        state.resolve("fatal")


def test_the_watch_asks_the_broker_unsuspected_so_a_loop_that_polls_nothing_hides_nothing(
    watch: tuple[BrokerWatch, Broker, Health, Clock],
) -> None:
    """No client reports an error (a run loop blocked in a transaction's call polls no
    client): the watch still finds the broker gone within its recheck, and back."""
    _w, broker, target, _clock = watch
    w = BrokerWatch(ADDRESS, broker, target=target, recheck_s=0.05, max_backoff_s=0.05)
    stopper = Stopper()
    broker.down = False
    thread = w.watch(stopper)
    try:
        broker.down = True
        deadline = time.monotonic() + 30
        while "broker" not in target.problems and time.monotonic() < deadline:
            stopper.wait(0.01)
        assert not target.ready
        assert not w.suspected  # nobody told it
        broker.down = False
        while not target.ready and time.monotonic() < deadline:
            stopper.wait(0.01)
        assert target.ready
    finally:
        stopper.stop()
        thread.join(5)


AUTH_FAILED = KafkaError(
    KafkaError._AUTHENTICATION,
    "SASL authentication error: Authentication failed due to invalid credentials",
)


def test_the_one_client_error_callback_sends_refusals_to_kafka_auth_and_the_rest_to_the_watch(
    watch: tuple[BrokerWatch, Broker, Health, Clock],
) -> None:
    w, _broker, _target, _clock = watch
    reachability.install(w)
    state = health.current()
    try:
        kafka.client_error(AUTH_FAILED)
        assert "invalid credentials" in state.problems[kafka_auth.PROBLEM]
        assert not w.suspected  # a refusal is no transport error

        kafka.client_error(KafkaError(KafkaError._TRANSPORT, REFUSED))
        assert w.suspected
    finally:
        kafka_auth.current().succeeded()
    assert kafka_auth.PROBLEM not in state.problems


def test_credentials_refused_at_start_up_are_said_once_retried_and_no_unreachable_broker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A service with wrong credentials waits not ready, saying so once (kafka_auth's
    line), never "cannot reach"; the broker's first answer ends the refusal."""
    refusals, state = kafka_auth.current(), health.current()
    refusals.principal = "User:siesa-sync-loader"
    accepted = {"now": False}
    probes: list[float] = []

    def probe(timeout_s: float) -> None:
        probes.append(timeout_s)
        if not accepted["now"]:  # the client's errors, served as the probe fails
            kafka.client_error(AUTH_FAILED)
            kafka.client_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    w = BrokerWatch(ADDRESS, probe, target=state, refusals=refusals, max_backoff_s=0.01)
    reachability.install(w)
    caplog.set_level(logging.INFO)
    try:
        for _ in range(5):
            assert w.check() is False
        assert not w.accepted
        assert reachability.BROKER not in state.problems  # the broker answers...
        problem = state.problems[kafka_auth.PROBLEM]  # ...and refuses: that is the problem
        assert problem.startswith("Kafka refused AUTHENTICATE on the cluster to User:siesa-sync")
        refused = [r for r in caplog.records if r.name == kafka_auth.__name__]
        assert len(refused) == 1  # said once
        assert lines(caplog) == []  # no "cannot reach"

        accepted["now"] = True
        assert w.wait_until_reachable(Stopper()) is True
        assert w.accepted
        assert kafka_auth.PROBLEM not in state.problems
        assert "Kafka accepts User:siesa-sync-loader's operations again" in caplog.messages
        assert len(probes) == 6
    finally:
        refusals.succeeded()
        state.resolve(reachability.BROKER)


def test_repeated_lines_pass_once_a_minute_with_how_many_were_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    logger = logging.getLogger("test.repeats")
    repeats = Repeats(every_s=60, clock=clock)
    logger.addFilter(repeats)
    caplog.set_level(logging.INFO, logger="test.repeats")
    try:
        for ms in range(100):  # librdkafka: the same failure every few ms
            logger.error("Connect failed: Connection refused (after %dms in state CONNECT)", ms)
            clock.now += 0.5
        logger.error("something else")
        clock.now += 11
        logger.error("Connect failed: Connection refused (after 3ms in state CONNECT)")
    finally:
        logger.removeFilter(repeats)

    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "Connect failed: Connection refused (after 0ms in state CONNECT)",
        "something else",
        "Connect failed: Connection refused (after 3ms in state CONNECT) "
        "(99 more like it in the last 61 s)",
    ]


class Consumer:
    def get_watermark_offsets(self, tp: TopicPartition, **_kw: object) -> tuple[int, int]:
        return 0, 10

    def committed(self, tps: list[TopicPartition], **_kw: object) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, 4) for tp in tps]


def test_a_consumer_is_ready_only_while_it_holds_partitions() -> None:
    state = health.current()
    held = Assignment("load", Consumer())  # type: ignore[arg-type]
    try:
        held.waiting()
        assert PARTITIONS in state.problems
        held.assign([TopicPartition("canonical", 0), TopicPartition("canonical", 1)])
        assert PARTITIONS not in state.problems
        held.revoke([TopicPartition("canonical", 0)])
        assert PARTITIONS not in state.problems
        held.revoke([TopicPartition("canonical", 1)])
        assert state.problems[PARTITIONS].startswith("no partitions assigned")
    finally:
        state.resolve(PARTITIONS)


def test_lag_is_refreshed_from_the_broker_and_the_loop_position() -> None:
    held = Assignment("lagtest", Consumer())  # type: ignore[arg-type]
    held.assign([TopicPartition("canonical", 0), TopicPartition("canonical", 1)])
    held.processed([TopicPartition("canonical", 0, 7)])

    held.refresh()

    def lag(partition: int) -> float | None:
        labels = {"stage": "lagtest", "topic": "canonical", "partition": str(partition)}
        return REGISTRY.get_sample_value("siesa_sync_consumer_lag", labels)

    assert lag(0) == 10 - 7  # the loop's position
    assert lag(1) == 10 - 4  # never processed here: the group's committed offset
    held.revoke([TopicPartition("canonical", 0), TopicPartition("canonical", 1)])
    assert lag(0) is None
    health.current().resolve(PARTITIONS)
