"""Transactions: a retriable commit is retried, anything else aborted, a failed abort fatal."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.common.errors import FatalError, RetriableError
from services.common.kafka import produce_in_transaction
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

    with pytest.raises(FatalError, match="could not abort"):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]


def test_a_fatal_error_is_fatal_without_an_abort() -> None:
    producer = TxProducer(commit_errors=[KafkaError(KafkaError._FENCED, "fenced", fatal=True)])

    with pytest.raises(FatalError, match="fenced"):
        produce_in_transaction(producer, OUT)  # type: ignore[arg-type]

    assert "abort" not in producer.calls
