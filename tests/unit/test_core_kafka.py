"""Transactions: a retriable commit is retried, anything else aborted, a failed abort fatal."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.common import health, kafka_auth
from services.common.errors import FatalError, RetriableError
from services.common.kafka import (
    ProducerFailed,
    ProducerWedged,
    produce_in_transaction,
    send_offsets,
)
from services.common.records import OutRecord


@dataclass
class TxProducer:
    commit_errors: list[KafkaError] = field(default_factory=list)
    abort_error: KafkaError | None = None
    calls: list[str] = field(default_factory=list)

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, **_kwargs: object) -> None:
        self.calls.append(f"produce {topic}")

    def poll(self, _timeout: float) -> int:
        return 0

    def commit_transaction(self, _timeout: float) -> None:
        self.calls.append("commit")
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))

    def abort_transaction(self, _timeout: float) -> None:
        self.calls.append("abort")
        if self.abort_error is not None:
            raise KafkaException(self.abort_error)


OUT = [OutRecord(topic="raw", key=b"k", value=b"v")]


def test_a_retriable_commit_error_commits_again_without_aborting() -> None:
    timeout = KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True)
    producer = TxProducer(commit_errors=[timeout, timeout])

    produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    assert producer.calls == ["begin", "produce raw", "commit", "commit", "commit"]


@pytest.mark.parametrize(
    "error",
    [
        KafkaError(KafkaError._STATE, "not retriable, abort not flagged"),
        KafkaError(KafkaError._TIMED_OUT, "abortable", retriable=True, txn_requires_abort=True),
    ],
    ids=["plain", "abortable"],
)
def test_any_other_commit_error_aborts_and_asks_to_redo(error: KafkaError) -> None:
    producer = TxProducer(commit_errors=[error])

    with pytest.raises(RetriableError, match="transaction aborted"):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    assert producer.calls[-1] == "abort"


def test_a_commit_that_keeps_timing_out_is_aborted_in_the_end() -> None:
    timeout = KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True)
    producer = TxProducer(commit_errors=[timeout] * 10)

    with pytest.raises(RetriableError):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    assert producer.calls.count("commit") == 5
    assert producer.calls[-1] == "abort"


def test_a_failed_abort_is_fatal() -> None:
    producer = TxProducer(
        commit_errors=[KafkaError(KafkaError._STATE, "bad state")],
        abort_error=KafkaError(KafkaError._TIMED_OUT, "abort timed out"),
    )

    with pytest.raises(FatalError, match="could not abort") as raised:
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]
    # Not fenced: the run loop replaces the producer rather than stopping the service.
    assert isinstance(raised.value, ProducerFailed)


def test_a_fatal_error_is_fatal_without_an_abort() -> None:
    producer = TxProducer(commit_errors=[KafkaError(KafkaError._FENCED, "fenced", fatal=True)])

    with pytest.raises(FatalError, match="fenced"):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    assert "abort" not in producer.calls


def test_a_fatal_error_that_is_no_fencing_says_a_new_producer_could_go_on() -> None:
    # Seen after kill -9 of the broker holding the transaction coordinator (3 brokers).
    invalid = KafkaError(KafkaError.INVALID_TXN_STATE, "failed to end transaction", fatal=True)
    producer = TxProducer(commit_errors=[invalid])

    with pytest.raises(ProducerFailed, match="failed to end transaction"):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    assert "abort" not in producer.calls


REFUSED = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed")


@dataclass
class Produced:
    name: str

    def topic(self) -> str:
        return self.name


class LateReports(TxProducer):
    """The commit fails on a refused record whose delivery report is served only by
    the next poll."""

    def __init__(self) -> None:
        super().__init__(commit_errors=[REFUSED])
        self.reports: list[tuple[Any, Produced]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        super().produce(topic)
        self.reports.append((kwargs["on_delivery"], Produced(topic)))

    def poll(self, _timeout: float) -> int:
        if "commit" not in self.calls:
            return 0
        served, self.reports = self.reports, []
        for on_delivery, produced in served:
            on_delivery(REFUSED, produced)
        return len(served)


def test_a_refused_commit_names_the_topic_its_late_delivery_report_names() -> None:
    producer = LateReports()

    with pytest.raises(RetriableError, match="Topic authorization failed"):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    # Not "on topic": the report served after the failed commit names it.
    problem = health.current().problems[kafka_auth.PROBLEM]
    assert problem.startswith("Kafka refused WRITE on topic raw to ")


class StuckOffsets:
    """send_offsets_to_transaction that never returns, as librdkafka's can after a
    broker restart (confluentinc/librdkafka#5456)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send_offsets_to_transaction(self, *_args: object) -> None:
        self.release.wait()


def test_send_offsets_that_never_returns_is_reported_as_a_wedged_producer() -> None:
    producer = StuckOffsets()
    started = time.monotonic()
    with pytest.raises(ProducerWedged) as raised:
        send_offsets(producer, [], None, timeout_s=0.1, grace_s=0.2)  # type: ignore[arg-type]
    producer.release.set()
    assert 0.3 <= time.monotonic() - started < 5
    assert isinstance(raised.value, RetriableError)  # the batch is redone, not lost


def test_send_offsets_errors_come_through_as_they_are() -> None:
    class Failing:
        def send_offsets_to_transaction(self, *_args: object) -> None:
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))

    with pytest.raises(KafkaException):
        send_offsets(Failing(), [], None, timeout_s=0.1, grace_s=1)  # type: ignore[arg-type]
