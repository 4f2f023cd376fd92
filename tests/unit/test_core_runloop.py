"""The run loop's pure parts (`per_record`, offsets) and its behaviour on fakes: what is
produced, dead-lettered, committed or rewound for a batch. No broker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import REGISTRY

from services.common.errors import FatalError, RetriableError, SkippableError
from services.common.offsets import first_offsets, next_offsets
from services.common.records import OutRecord
from services.common.runloop import BatchResult, RunLoop, per_record
from services.common.stopper import Stopper
from tests.unit.fakes import FakeMessage

TOPIC = "raw"
OUTCOMES = ("in", "out", "dead_lettered")


def trace_of(offset: int) -> str:
    """The W3C trace id of the record at `offset` (32 hex digits)."""
    return f"{offset + 1:032x}"


def msg(
    partition: int,
    offset: int,
    value: bytes = b"ok",
    topic: str = TOPIC,
    error: KafkaError | None = None,
) -> FakeMessage:
    """A record of tenant acme keyed and traced by its offset."""
    return FakeMessage(
        _topic=topic,
        _partition=partition,
        _offset=offset,
        _key=f"acme/{offset}".encode(),
        _value=value,
        _headers=[("trace_id", trace_of(offset).encode())],
        _error=error,
    )


def tps(offsets: list[TopicPartition]) -> set[tuple[str, int, int]]:
    return {(tp.topic, tp.partition, tp.offset) for tp in offsets}


# -- per_record, next_offsets, first_offsets ----------------------------------------


def echo(message: Any) -> list[OutRecord]:
    if message.value() == b"poison":
        raise SkippableError(f"offset {message.offset()} is poison", tenant="acme")
    return [OutRecord(topic="out", key=message.key(), value=message.value())]


def test_per_record_collects_outputs_and_fails_only_the_poison_record() -> None:
    batch = [msg(0, 1), msg(0, 2, b"poison"), msg(0, 3)]

    result = per_record(echo)(batch)  # type: ignore[arg-type]

    assert [r.key for r in result.outputs] == [b"acme/1", b"acme/3"]
    assert [(m.offset(), e.message) for m, e in result.failures] == [(2, "offset 2 is poison")]


@pytest.mark.parametrize("error", [RetriableError("later"), FatalError("stop")])
def test_per_record_lets_retriable_and_fatal_errors_stop_the_batch(error: Exception) -> None:
    def handle(_message: Any) -> list[OutRecord]:
        raise error

    with pytest.raises(type(error)):
        per_record(handle)([msg(0, 1)])  # type: ignore[arg-type]


def test_per_record_dead_letters_a_bug_met_on_one_record_and_goes_on() -> None:
    def handle(message: Any) -> list[OutRecord]:
        if message.offset() == 2:
            raise KeyError("f120_referencia")
        return echo(message)

    result = per_record(handle)([msg(0, 1), msg(0, 2), msg(0, 3)])  # type: ignore[arg-type]

    assert [r.key for r in result.outputs] == [b"acme/1", b"acme/3"]
    [(failed, error)] = result.failures
    assert failed.offset() == 2
    assert error.error_class == "unexpected"
    assert error.message == "unexpected KeyError: 'f120_referencia'"


def test_next_offsets_is_one_past_the_highest_offset_per_partition() -> None:
    batch = [msg(0, 7), msg(1, 3), msg(0, 5), msg(0, 9), msg(1, 2), msg(0, 4, topic="other")]

    assert tps(next_offsets(batch)) == {(TOPIC, 0, 10), (TOPIC, 1, 4), ("other", 0, 5)}  # type: ignore[arg-type]


def test_first_offsets_is_the_lowest_offset_per_partition() -> None:
    batch = [msg(0, 7), msg(1, 3), msg(0, 5), msg(0, 9), msg(1, 2), msg(0, 4, topic="other")]

    assert tps(first_offsets(batch)) == {(TOPIC, 0, 5), (TOPIC, 1, 2), ("other", 0, 4)}  # type: ignore[arg-type]


def test_offsets_of_an_empty_batch_are_empty() -> None:
    assert next_offsets([]) == []
    assert first_offsets([]) == []


# -- RunLoop on fakes ---------------------------------------------------------------


@dataclass
class Log:
    events: list[tuple[str, Any]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[Any]:
        return [detail for event, detail in self.events if event == name]


@dataclass
class FakeConsumer:
    """Hands out `batches` one per consume(), then stops the loop."""

    log: Log
    stopper: Stopper
    batches: list[list[FakeMessage]]

    def subscribe(self, topics: list[str], **_callbacks: Any) -> None:
        self.log.events.append(("subscribe", topics))

    def consume(self, _num: int, _timeout: float) -> list[FakeMessage]:
        if self.batches:
            return self.batches.pop(0)
        self.stopper.stop()
        return []

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        assert asynchronous is False
        self.log.events.append(("commit", tps(offsets)))

    def seek(self, tp: TopicPartition) -> None:
        self.log.events.append(("seek", (tp.topic, tp.partition, tp.offset)))
        self.stopper.stop()  # a rewind ends the test: the back-off wait returns at once

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool) -> tuple[int, int]:
        return 0, 20  # every partition ends at offset 20

    def close(self) -> None:
        self.log.events.append(("close", None))


@dataclass
class FakeProducer:
    log: Log
    fail_commit: KafkaError | None = None
    fail_delivery: KafkaError | None = None

    def produce(self, topic: str, *, key: Any, value: Any, headers: Any, on_delivery: Any) -> None:
        self.log.events.append(("produce", OutRecord(topic, key, value, list(headers or []))))
        if on_delivery is not None:
            on_delivery(self.fail_delivery, None)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def begin_transaction(self) -> None:
        self.log.events.append(("begin", None))

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, _timeout: float) -> None:
        self.log.events.append(("send_offsets", (tps(offsets), metadata)))

    def commit_transaction(self, _timeout: float) -> None:
        if self.fail_commit is not None:
            raise KafkaException(self.fail_commit)
        self.log.events.append(("commit_transaction", None))

    def abort_transaction(self, _timeout: float) -> None:
        self.log.events.append(("abort", None))


def run_loop(
    batches: list[list[FakeMessage]],
    handler: Callable[[list[Any]], BatchResult],
    *,
    transactional: bool = False,
    fail_commit: KafkaError | None = None,
    fail_delivery: KafkaError | None = None,
    alerter: Any = None,
    alert_dlq_threshold: int = 100,
) -> Log:
    log = Log()
    stopper = Stopper()
    RunLoop(
        stage="transform",
        consumer=FakeConsumer(log, stopper, batches),  # type: ignore[arg-type]
        producer=FakeProducer(log, fail_commit, fail_delivery),  # type: ignore[arg-type]
        topics=[TOPIC],
        handler=handler,
        dlq_topic="dlq",
        stopper=stopper,
        transactional=transactional,
        alerter=alerter,
        alert_dlq_threshold=alert_dlq_threshold,
    ).run()
    return log


def test_outputs_and_dead_letters_are_produced_before_offsets_are_committed() -> None:
    batch = [msg(0, 5), msg(0, 6, b"poison"), msg(1, 2), msg(0, 7)]

    log = run_loop([batch], per_record(echo))

    produced = log.of("produce")
    assert [(r.topic, r.key) for r in produced] == [
        ("out", b"acme/5"),
        ("out", b"acme/2"),
        ("out", b"acme/7"),
        ("dlq", b"acme/6"),
    ]
    dead = dict(produced[-1].headers)
    assert dead["error.stage"] == "transform"
    assert dead["source.offset"] == "6"
    assert dead["trace_id"] == trace_of(6)
    assert dead["tenant"] == "acme"
    assert log.of("commit") == [{(TOPIC, 0, 8), (TOPIC, 1, 3)}]
    assert log.names().index("commit") > max(
        i for i, name in enumerate(log.names()) if name == "produce"
    )
    assert log.names()[-1] == "close"


def test_a_retriable_error_rewinds_the_batch_and_commits_nothing() -> None:
    def flaky(_batch: list[Any]) -> BatchResult:
        raise RetriableError("target down", retry_after=0.0)

    log = run_loop([[msg(0, 5), msg(0, 6), msg(2, 9)]], flaky)

    assert set(log.of("seek")) == {(TOPIC, 0, 5), (TOPIC, 2, 9)}
    assert log.of("commit") == []
    assert log.of("produce") == []


def test_a_fatal_error_stops_the_loop_without_committing() -> None:
    def fatal(_batch: list[Any]) -> BatchResult:
        raise FatalError("cannot go on")

    with pytest.raises(FatalError):
        run_loop([[msg(0, 1)]], fatal)


def test_a_fatal_consumer_error_stops_the_loop() -> None:
    bad = msg(0, 0, error=KafkaError(KafkaError._FATAL, "fenced", fatal=True))

    with pytest.raises(FatalError, match="consumer failed"):
        run_loop([[bad]], per_record(echo))


def test_partition_eof_is_not_a_record() -> None:
    eof = msg(0, 3, error=KafkaError(KafkaError._PARTITION_EOF))

    log = run_loop([[eof, msg(0, 4)]], per_record(echo))

    assert [r.key for r in log.of("produce")] == [b"acme/4"]
    assert log.of("commit") == [{(TOPIC, 0, 5)}]


def test_a_transactional_loop_commits_offsets_inside_the_transaction() -> None:
    log = run_loop([[msg(0, 1), msg(0, 2, b"poison")]], per_record(echo), transactional=True)

    assert log.names()[:5] == ["subscribe", "begin", "produce", "produce", "send_offsets"]
    assert log.of("send_offsets") == [({(TOPIC, 0, 3)}, "group-metadata")]
    assert log.of("commit_transaction") == [None]
    assert log.of("commit") == []  # never outside the transaction
    assert [r.topic for r in log.of("produce")] == ["out", "dlq"]


def test_an_abortable_transaction_error_aborts_and_rewinds() -> None:
    abortable = KafkaError(KafkaError._STATE, "abort me", txn_requires_abort=True)

    log = run_loop(
        [[msg(0, 1), msg(0, 2)]], per_record(echo), transactional=True, fail_commit=abortable
    )

    assert log.of("abort") == [None]
    assert log.of("seek") == [(TOPIC, 0, 1)]
    assert log.of("commit_transaction") == []


def test_a_fatal_transaction_error_is_fatal() -> None:
    fenced = KafkaError(KafkaError._FENCED, "fenced", fatal=True)

    with pytest.raises(FatalError, match="transactional producer failed"):
        run_loop([[msg(0, 1)]], per_record(echo), transactional=True, fail_commit=fenced)


def test_stopper_wait_returns_at_once_when_stopped() -> None:
    stopper = Stopper()
    assert stopper.wait(0) is False
    stopper.stop()

    assert stopper.stopped
    assert stopper.wait(30) is True


def test_a_fatal_delivery_error_stops_the_loop() -> None:
    fenced = KafkaError(KafkaError._FENCED, "producer fenced", fatal=True)

    with pytest.raises(FatalError, match="producer fenced"):
        run_loop([[msg(0, 1)]], per_record(echo), fail_delivery=fenced)


@dataclass
class ReplayingConsumer(FakeConsumer):
    """A seek hands the batch out again from that offset, as Kafka would."""

    delivered: list[FakeMessage] = field(default_factory=list)

    def consume(self, num: int, timeout: float) -> list[FakeMessage]:
        batch = super().consume(num, timeout)
        self.delivered.extend(batch)
        return batch

    def seek(self, tp: TopicPartition) -> None:
        self.log.events.append(("seek", (tp.topic, tp.partition, tp.offset)))
        again = [
            m for m in self.delivered if (m.partition(), m.offset()) >= (tp.partition, tp.offset)
        ]
        self.batches.insert(0, again)


def test_a_retriable_failure_rewinds_and_the_batch_is_processed_again() -> None:
    log = Log()
    stopper = Stopper()
    calls: list[int] = []

    def flaky(batch: list[Any]) -> BatchResult:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RetriableError("target busy", retry_after=0.0)
        return per_record(echo)(batch)

    def rewound(batch: list[Any]) -> None:  # the handler told (the loader's rereads)
        log.events.append(("rewound", [m.offset() for m in batch]))

    RunLoop(
        stage="load",
        consumer=ReplayingConsumer(log, stopper, [[msg(0, 1), msg(0, 2)]]),  # type: ignore[arg-type]
        producer=FakeProducer(log),  # type: ignore[arg-type]
        topics=[TOPIC],
        handler=flaky,
        dlq_topic="dlq",
        stopper=stopper,
        on_rewound=rewound,
    ).run()

    assert calls == [2, 2]
    assert log.of("seek") == [(TOPIC, 0, 1)]
    assert [r.key for r in log.of("produce")] == [b"acme/1", b"acme/2"]  # once, not twice
    assert log.of("commit") == [{(TOPIC, 0, 3)}]
    assert log.names().index("commit") > log.names().index("seek")
    # The handler is told once, after the seek back (it may seek further back itself).
    assert log.of("rewound") == [[1, 2]]
    assert log.names().index("rewound") > log.names().index("seek")


def test_a_batch_is_counted_per_tenant_and_its_lag_exported() -> None:
    def sample(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    labels = {"stage": "transform", "tenant": "acme"}
    before = {o: sample("siesa_sync_records_total", labels | {"outcome": o}) for o in OUTCOMES}

    run_loop([[msg(0, 5), msg(0, 6, b"poison"), msg(1, 2)]], per_record(echo))

    after = {o: sample("siesa_sync_records_total", labels | {"outcome": o}) for o in OUTCOMES}
    assert {o: after[o] - before[o] for o in OUTCOMES} == {"in": 3, "out": 2, "dead_lettered": 1}
    lag = {"stage": "transform", "topic": TOPIC}
    assert sample("siesa_sync_consumer_lag", lag | {"partition": "0"}) == 20 - 7
    assert sample("siesa_sync_consumer_lag", lag | {"partition": "1"}) == 20 - 3


class FakeAlerter:
    def __init__(self) -> None:
        self.fired: list[tuple[str, str, str]] = []

    def fire(self, tenant: str, condition: str, reason: str) -> bool:
        self.fired.append((tenant, condition, reason))
        return True


def test_dead_letters_past_the_threshold_raise_an_alert_naming_the_tenant() -> None:
    alerter = FakeAlerter()
    batches = [[msg(0, 1, b"poison"), msg(0, 2)], [msg(0, 3, b"poison"), msg(0, 4, b"poison")]]

    run_loop(batches, per_record(echo), alerter=alerter, alert_dlq_threshold=3)

    assert [(t, c) for t, c, _ in alerter.fired] == [("acme", "dlq_growing")]
    assert "3 records dead-lettered at the transform stage" in alerter.fired[0][2]


def test_with_holds_offsets_stay_below_the_oldest_held_record_until_it_is_done() -> None:
    held: dict[tuple[str, int], int] = {}
    calls: list[int] = []

    def handler(batch: list[Any]) -> BatchResult:
        calls.append(len(batch))
        if batch:
            held[TOPIC, 0] = 6  # offset 6 waits (its target is down); 5 and 7 are done
        else:
            held.clear()  # a later, idle call finishes it
        return BatchResult()

    log = Log()
    stopper = Stopper()
    RunLoop(
        stage="load",
        consumer=FakeConsumer(log, stopper, [[msg(0, 5), msg(0, 6), msg(0, 7), msg(1, 2)]]),  # type: ignore[arg-type]
        producer=FakeProducer(log),  # type: ignore[arg-type]
        topics=[TOPIC],
        handler=handler,
        dlq_topic="dlq",
        stopper=stopper,
        holds=lambda: dict(held),
    ).run()

    assert calls == [4, 0]  # called again, empty, because it still held a record
    assert log.of("commit") == [
        {(TOPIC, 0, 6), (TOPIC, 1, 3)},  # not past the held record
        {(TOPIC, 0, 8)},  # then past it; only the partition that moved
    ]


WEDGED = threading.Event()


@dataclass
class WedgedProducer(FakeProducer):
    """send_offsets_to_transaction never returns, as librdkafka's can after a broker
    restart (confluentinc/librdkafka#5456)."""

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, _timeout: float) -> None:
        self.log.events.append(("wedged", None))
        WEDGED.wait(30)


@pytest.fixture
def quick_wedge(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("services.common.kafka.OFFSETS_TIMEOUT_S", 0.05)
    monkeypatch.setattr("services.common.kafka.OFFSETS_GRACE_S", 0.1)
    WEDGED.clear()
    yield
    WEDGED.set()  # let the stuck helper threads end


@pytest.mark.usefixtures("quick_wedge")
def test_a_wedged_transactional_producer_is_replaced_and_the_batch_redone() -> None:
    log = Log()
    stopper = Stopper()
    fresh = FakeProducer(log)
    RunLoop(
        stage="transform",
        consumer=ReplayingConsumer(log, stopper, [[msg(0, 1), msg(0, 2)]]),  # type: ignore[arg-type]
        producer=WedgedProducer(log),  # type: ignore[arg-type]
        new_producer=lambda: fresh,  # type: ignore[arg-type,return-value]
        topics=[TOPIC],
        handler=per_record(echo),
        dlq_topic="dlq",
        stopper=stopper,
        transactional=True,
        max_backoff=0.0,
    ).run()

    assert log.names().count("wedged") == 1
    assert log.of("seek") == [(TOPIC, 0, 1)]
    assert log.of("commit_transaction") == [None]  # the redone batch, on the new producer
    assert log.of("send_offsets") == [({(TOPIC, 0, 3)}, "group-metadata")]


def test_a_producer_failed_but_not_fenced_is_replaced_and_the_batch_redone() -> None:
    # INVALID_TXN_STATE, fatal, seen once a killed broker's transaction coordinator moved.
    log = Log()
    stopper = Stopper()
    invalid = KafkaError(KafkaError.INVALID_TXN_STATE, "failed to end transaction", fatal=True)
    RunLoop(
        stage="transform",
        consumer=ReplayingConsumer(log, stopper, [[msg(0, 1), msg(0, 2)]]),  # type: ignore[arg-type]
        producer=FakeProducer(log, fail_commit=invalid),  # type: ignore[arg-type]
        new_producer=lambda: FakeProducer(log),  # type: ignore[arg-type,return-value]
        topics=[TOPIC],
        handler=per_record(echo),
        dlq_topic="dlq",
        stopper=stopper,
        transactional=True,
        max_backoff=0.0,
    ).run()

    assert log.of("seek") == [(TOPIC, 0, 1)]
    assert log.of("commit_transaction") == [None]  # the redone batch, on the new producer
    assert "abort" not in log.names()


@pytest.mark.usefixtures("quick_wedge")
def test_a_wedged_producer_is_replaced_once_the_broker_is_back_without_an_exit() -> None:
    """The broker away when the wedged producer is replaced: init_transactions times out
    (retriable). The loop neither exits nor goes on with the stuck producer: the batch is
    retried, and the next try makes the new producer and commits on it."""
    log = Log()
    stopper = Stopper()
    fresh = FakeProducer(log)
    attempts: list[int] = []

    def new_producer() -> FakeProducer:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, "Timed out waiting", retriable=True)
            )
        return fresh

    RunLoop(
        stage="transform",
        consumer=ReplayingConsumer(log, stopper, [[msg(0, 1), msg(0, 2)]]),  # type: ignore[arg-type]
        producer=WedgedProducer(log),  # type: ignore[arg-type]
        new_producer=new_producer,  # type: ignore[arg-type,return-value]
        topics=[TOPIC],
        handler=per_record(echo),
        dlq_topic="dlq",
        stopper=stopper,
        transactional=True,
        max_backoff=0.0,
    ).run()

    assert len(attempts) == 2
    assert log.names().count("wedged") == 1  # the stuck producer was not used again
    assert log.of("seek") == [(TOPIC, 0, 1)]  # redone once, on the new producer
    assert log.of("commit_transaction") == [None]  # on the new producer
    assert log.of("send_offsets") == [({(TOPIC, 0, 3)}, "group-metadata")]


@pytest.mark.usefixtures("quick_wedge")
def test_a_wedged_producer_without_a_way_to_replace_it_stops_the_service() -> None:
    log = Log()
    stopper = Stopper()
    with pytest.raises(FatalError, match="no way to replace"):
        RunLoop(
            stage="transform",
            consumer=FakeConsumer(log, stopper, [[msg(0, 1)]]),  # type: ignore[arg-type]
            producer=WedgedProducer(log),  # type: ignore[arg-type]
            topics=[TOPIC],
            handler=per_record(echo),
            dlq_topic="dlq",
            stopper=stopper,
            transactional=True,
        ).run()
