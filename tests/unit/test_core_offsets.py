"""What the run loop commits once a partition's end is reached (past the transaction
markers), what it does with offsets lost to retention, and how Kafka's refusals are
reported and resolved. On fakes; no broker."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition
from prometheus_client import REGISTRY

from services.common import health, kafka_auth
from services.common.errors import RetriableError
from services.common.offsets import PROBLEM, LostOffsets, OffsetsLost
from services.common.runloop import RunLoop, per_record
from services.common.stopper import Stopper
from tests.unit.fakes import FakeMessage
from tests.unit.test_core_runloop import TOPIC, FakeConsumer, FakeProducer, Log, echo, msg, tps


def eof(partition: int, offset: int) -> FakeMessage:
    return msg(partition, offset, error=KafkaError(KafkaError._PARTITION_EOF))


def lost(partition: int, offset: int | None) -> FakeMessage:
    """librdkafka's event for a fetch whose offset is gone (None: nothing committed)."""
    return FakeMessage(
        _topic=TOPIC,
        _partition=partition,
        _offset=offset,  # type: ignore[arg-type]  # librdkafka gives None here
        _error=KafkaError(KafkaError._AUTO_OFFSET_RESET),
    )


@dataclass
class AssigningConsumer(FakeConsumer):
    """Also takes (re)assignments and answers committed offsets and watermarks."""

    low: int = 6
    committed_offsets: dict[int, int] = field(default_factory=dict)

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        self.log.events.append(("unassign", tps(partitions)))

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self.log.events.append(("assign", tps(partitions)))

    def get_watermark_offsets(
        self, tp: TopicPartition, *args: Any, **kwargs: Any
    ) -> tuple[int, int]:
        return self.low, 20

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(TOPIC, p) for p in range(3)]

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [
            TopicPartition(tp.topic, tp.partition, self.committed_offsets.get(tp.partition, -1001))
            for tp in partitions
        ]


@dataclass
class Alerts:
    fired: list[tuple[str, str, str]] = field(default_factory=list)
    cleared: list[tuple[str, str]] = field(default_factory=list)

    def fire(self, tenant: str, condition: str, reason: str) -> bool:
        self.fired.append((tenant, condition, reason))
        return True

    def clear(self, tenant: str, condition: str) -> None:
        self.cleared.append((tenant, condition))


def loop(consumer: FakeConsumer, log: Log, stopper: Stopper, **options: Any) -> RunLoop:
    return RunLoop(
        stage="load",
        consumer=consumer,  # type: ignore[arg-type]
        producer=FakeProducer(log),  # type: ignore[arg-type]
        topics=[TOPIC],
        handler=per_record(echo),
        dlq_topic="dlq",
        stopper=stopper,
        **options,
    )


def run(batches: list[list[FakeMessage]], **options: Any) -> Log:
    log, stopper = Log(), Stopper()
    loop(AssigningConsumer(log, stopper, batches), log, stopper, **options).run()
    return log


# -- lag 0: the end of a partition is committed ----------------------------------------


def test_the_end_of_a_partition_is_committed_past_the_trailing_markers() -> None:
    # Records at 4 and 5, then a transaction marker at 6: the end is 7.
    log = run([[msg(0, 4), msg(0, 5), eof(0, 7)]])

    assert log.of("commit") == [{(TOPIC, 0, 7)}]


def test_an_end_reached_without_records_is_committed_once() -> None:
    log = run([[msg(0, 4)], [eof(0, 6)], [eof(0, 6)], [eof(1, 0)]])

    assert log.of("commit") == [{(TOPIC, 0, 5)}, {(TOPIC, 0, 6)}, {(TOPIC, 1, 0)}]


def test_a_transactional_loop_commits_an_end_in_a_transaction_of_offsets_only() -> None:
    log = run([[msg(0, 1)], [eof(0, 3)]], transactional=True)

    assert log.of("send_offsets") == [
        ({(TOPIC, 0, 2)}, "group-metadata"),
        ({(TOPIC, 0, 3)}, "group-metadata"),
    ]
    assert log.of("commit") == []  # never outside a transaction
    assert [r.key for r in log.of("produce")] == [b"acme/1"]


def test_an_end_is_not_committed_with_a_batch_that_failed() -> None:
    def failing(_batch: list[Any]) -> Any:
        raise RetriableError("target down", retry_after=0.0)

    log, stopper = Log(), Stopper()
    consumer = AssigningConsumer(log, stopper, [[msg(0, 4), eof(0, 6)]])
    RunLoop(
        stage="load",
        consumer=consumer,  # type: ignore[arg-type]
        producer=FakeProducer(log),  # type: ignore[arg-type]
        topics=[TOPIC],
        handler=failing,
        dlq_topic="dlq",
        stopper=stopper,
    ).run()

    assert log.of("commit") == []


# -- offsets lost to retention ------------------------------------------------------------


def samples(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_new_group_reads_a_partition_from_the_beginning_without_alarm() -> None:
    log = run([[lost(2, None)]])

    assert log.of("unassign") == [{(TOPIC, 2, -1001)}]
    assert log.of("assign") == [{(TOPIC, 2, OFFSET_BEGINNING)}]


def test_lost_offsets_are_logged_counted_alerted_and_stop_the_stage() -> None:
    log, stopper, alerts = Log(), Stopper(), Alerts()
    consumer = AssigningConsumer(log, stopper, [[lost(0, 2)]], committed_offsets={1: 3, 2: 9})
    before = samples("siesa_sync_records_lost_total", stage="load", topic=TOPIC, partition="0")
    threading.Timer(0.3, stopper.stop).start()  # SIGTERM, later: the stage waits for it

    with pytest.raises(OffsetsLost, match="2 partitions lost records"):
        loop(consumer, log, stopper, alerter=alerts).run()

    after = samples("siesa_sync_records_lost_total", stage="load", topic=TOPIC, partition="0")
    assert after - before == 4  # offsets 2..5 are gone
    assert [(t, c) for t, c, _ in alerts.fired] == [("all", "offsets_lost")] * 2
    assert "offsets 2 to 5 (4 records) were deleted by retention" in alerts.fired[0][2]
    assert f"{TOPIC}[1]: offsets 3 to 5" in alerts.fired[1][2]  # partition 2 is at 9: fine
    assert PROBLEM in health.current().problems
    assert log.of("commit") == []
    assert log.names()[-1] == "close"  # left the group while it waited
    health.current().resolve(PROBLEM)


def test_lost_offsets_with_earliest_go_on_from_the_oldest_record_kept() -> None:
    alerts = Alerts()
    log = run([[lost(0, 2)], [msg(0, 6)]], lost_offsets="earliest", alerter=alerts)

    assert [c for _, c, _ in alerts.fired] == ["offsets_lost"]
    assert log.of("assign") == [{(TOPIC, 0, OFFSET_BEGINNING)}]
    assert log.of("commit") == [{(TOPIC, 0, 7)}]


def test_lost_offsets_handle_asks_no_more_than_the_policy() -> None:
    handler = LostOffsets("load", "earliest")
    log, stopper = Log(), Stopper()

    handler.handle(AssigningConsumer(log, stopper, [], low=2), lost(0, 2))  # type: ignore[arg-type]

    assert log.of("assign") == [{(TOPIC, 0, OFFSET_BEGINNING)}]


# -- Kafka refusing an operation ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_is_logged_counted_alerted_and_unready_until_it_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, alerts = Clock(), Alerts()
    refusals = kafka_auth.Refusals(clock)
    refusals.principal = "User:siesa-sync-transformer"
    refusals.alerter = alerts  # type: ignore[assignment]
    denied = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Topic authorization failed")
    labels = {"operation": "WRITE", "resource": "topic canon"}
    before = samples("siesa_sync_kafka_refusals_total", **labels)
    caplog.set_level(logging.ERROR)

    for _ in range(3):
        refusals.refused(denied, "WRITE", "topic canon")
    clock.now = kafka_auth.RELOG_S
    refusals.refused(denied, "WRITE", "topic canon")

    said = "Kafka refused WRITE on topic canon to User:siesa-sync-transformer"
    assert [r.getMessage().startswith(said) for r in caplog.records] == [True, True]
    assert samples("siesa_sync_kafka_refusals_total", **labels) - before == 4
    assert [c for _, c, _ in alerts.fired] == ["kafka_refused"] * 4  # the Alerter dedups
    assert said in health.current().problems[kafka_auth.PROBLEM]

    refusals.succeeded(except_operations=("WRITE",))  # an offsets-only commit
    assert kafka_auth.PROBLEM in health.current().problems
    refusals.succeeded()
    assert kafka_auth.PROBLEM not in health.current().problems
    assert alerts.cleared == [("all", "kafka_refused")]


def test_an_authentication_failure_from_a_client_is_a_refusal() -> None:
    refusals = kafka_auth.Refusals()
    refusals.principal = "User:siesa-sync-loader"

    refusals.on_client_error(
        KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials")
    )
    refusals.on_client_error(KafkaError(KafkaError._TRANSPORT, "broker down"))  # not ours
    refusals.succeeded()
    # A connection lost during the handshake: the credentials were never answered.
    refusals.on_client_error(
        KafkaError(
            KafkaError._AUTHENTICATION,
            "GroupCoordinator: SASL SCRAM-SHA-512 mechanism handshake failed: Local: Broker "
            "transport failure: broker's supported mechanisms: (n/a) (after 0ms in state DOWN)",
        )
    )
    assert kafka_auth.PROBLEM not in health.current().problems
    refusals.on_client_error(
        KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials")
    )

    problem = health.current().problems[kafka_auth.PROBLEM]
    assert problem.startswith("Kafka refused AUTHENTICATE on the cluster to User:siesa-sync-loader")
    refusals.succeeded()
    assert kafka_auth.PROBLEM not in health.current().problems


def test_a_refused_read_in_the_run_loop_names_the_topic() -> None:
    denied = msg(0, 0, error=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"))

    run([[denied]])

    assert "READ on topic raw" in health.current().problems[kafka_auth.PROBLEM]
    kafka_auth.current().succeeded()
