"""Kafka clients built in one place, from `KafkaSettings`, with librdkafka's logs routed
into Python logging.

`client_config` is the one function every producer, consumer and admin client (services
and CLI alike) is configured by: bootstrap servers, `client.id`, every security setting
(`kafka_security`), the passthrough properties, and the one `error_cb`, `client_error`:
Kafka refusing the client (credentials, TLS, an ACL) goes to `kafka_auth`, everything
else (the broker unreachable, a fatal error) to `reachability`. Producers are idempotent
with `acks=all`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from services.common import kafka_auth, reachability
from services.common.errors import ConfigError, FatalError, RetriableError, SyncError
from services.common.kafka_security import passthrough, principal, security_config
from services.common.records import OutRecord
from services.common.settings import KafkaSettings

_rdkafka_log = logging.getLogger("librdkafka")
_log = logging.getLogger(__name__)


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """What every client gets: where the cluster is, who this client is, how it
    authenticates, the passthrough properties, and where its errors go."""
    kafka_auth.current().principal = principal(kafka)
    return {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        "logger": _rdkafka_log,
        "error_cb": client_error,
        **security_config(kafka),
        **passthrough(kafka),
    }


def client_error(error: KafkaError) -> None:
    """Every client's ``error_cb``: a refusal (authentication, TLS, authorization) is
    `kafka_auth`'s to report; any other error is `reachability`'s (transport errors make
    the broker suspect, a fatal error makes the service unready, the rest is logged with
    repeats held back)."""
    if kafka_auth.is_client_refusal(error):
        kafka_auth.current().on_client_error(error)
    else:
        reachability.client_error(error)


def producer_config(
    kafka: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **client_config(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    if transactional_id:
        config["transactional.id"] = transactional_id
        config["transaction.timeout.ms"] = 60_000
    config.update(overrides)
    return config


def consumer_config(
    kafka: KafkaSettings, *, group_id: str, stage: bool = False, **overrides: Any
) -> dict[str, Any]:
    """A consumer's config; `stage`: a run loop's consumer, whose lost offsets must not be
    skipped silently (`auto.offset.reset=error`: the run loop handles it, see runloop)."""
    config: dict[str, Any] = {
        **client_config(kafka),
        "group.id": group_id,
        "auto.offset.reset": "error" if stage else "earliest",
        # Offsets are committed by the run loop only after a batch is processed.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        # The end of a partition is an event: the run loop then commits the position,
        # which is past the trailing transaction markers (lag 0 for users' tools).
        "enable.partition.eof": True,
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": 15_000,
        "max.poll.interval.ms": 300_000,
        # librdkafka prefetches up to 100,000 records / 64 MB per partition by default:
        # on a full input topic that, not our code, made most of a service's memory.
        # A few seconds of work per partition keeps throughput and bounds the RSS.
        "queued.min.messages": 5_000,
        "queued.max.messages.kbytes": 8_192,
    }
    config.update(overrides)
    return config


def make_producer(
    kafka: KafkaSettings, *, transactional_id: str | None = None, **overrides: Any
) -> Producer:
    producer = _built(
        Producer, producer_config(kafka, transactional_id=transactional_id, **overrides)
    )
    if transactional_id:
        try:
            producer.init_transactions(30)
        except KafkaException as exc:
            error = exc.args[0]
            if kafka_auth.is_refusal(error):
                resource = f"transactional id {transactional_id}"
                kafka_auth.current().refused(error, "WRITE", resource)
            raise
    return producer


def make_consumer(
    kafka: KafkaSettings, *, group_id: str, stage: bool = False, **overrides: Any
) -> Consumer:
    return _built(Consumer, consumer_config(kafka, group_id=group_id, stage=stage, **overrides))


def make_admin(kafka: KafkaSettings) -> AdminClient:
    return _built(AdminClient, client_config(kafka))


C = TypeVar("C")


def _built(client: Callable[[dict[str, Any]], C], config: dict[str, Any]) -> C:
    """A client of `config`; librdkafka refusing a property is a ConfigError (exit 2)."""
    try:
        return client(config)
    except KafkaException as exc:
        error = exc.args[0]
        if error.code() != KafkaError._INVALID_ARG:
            raise
        raise ConfigError(
            f"Kafka client settings (KAFKA_LIBRDKAFKA__* or KAFKA_*): {error.str()}"
        ) from None


def produce_all(
    producer: Producer,
    records: Iterable[OutRecord],
    on_delivery: Callable[..., None] | None = None,
) -> None:
    """Produce every record, waiting for room when the local queue is full."""
    for record in records:
        while True:
            try:
                producer.produce(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.1)  # let deliveries drain, then try again
        producer.poll(0)


def produce_in_transaction(
    producer: Producer,
    outputs: Sequence[OutRecord],
    offsets: list[TopicPartition] | None = None,
    group_metadata: Any = None,
) -> None:
    """Produce `outputs` (and, for consume-transform-produce, the input `offsets`) in one
    transaction. On failure the transaction is aborted and RetriableError raised, so the
    caller can redo the work; FatalError when the producer can't go on: ProducerFailed
    when a new one could (not fenced by another, not refused), or the abort failed."""
    refused: list[tuple[KafkaError, str]] = []

    def on_delivery(err: KafkaError | None, msg: Any) -> None:
        if err is not None and kafka_auth.is_refusal(err) and msg is not None:
            refused.append((err, msg.topic()))

    try:
        producer.begin_transaction()
        produce_all(producer, outputs, on_delivery)
        if offsets:
            send_offsets(producer, offsets, group_metadata)
        _commit_transaction(producer)
    except KafkaException as exc:
        error = exc.args[0]
        _serve_reports(producer)  # they name the topics refused
        _report_refusals(error, refused)
        if error.fatal():
            if error.code() in FENCED or kafka_auth.is_refusal(error):
                raise FatalError(f"transactional producer failed: {error.str()}") from exc
            # Not fenced (e.g. INVALID_TXN_STATE once a killed broker's coordinator moved):
            # this producer is done for; a new one with its id fences its transaction.
            raise ProducerFailed(f"transactional producer failed: {error.str()}") from exc
        try:
            producer.abort_transaction(30)
        except KafkaException as abort_exc:
            # This producer is done for (e.g. the abort conflicts with an operation that
            # timed out and is still going on, seen under a loaded broker): a new one with
            # its transactional id fences and aborts the transaction left open.
            raise ProducerFailed(
                f"could not abort a failed transaction ({error.str()}): {abort_exc.args[0].str()}"
            ) from abort_exc
        raise RetriableError(f"transaction aborted: {error.str()}") from exc
    # Records written (or, for an offsets-only transaction, the group read) as allowed.
    kafka_auth.current().succeeded(except_operations=() if outputs else ("WRITE",))


def _serve_reports(producer: Producer) -> None:
    """Serve the delivery reports already in: a commit can fail on a refused record
    before that record's report was served (seen in CI: the refusal logged as of "topic",
    unnamed)."""
    for _ in range(1_000):
        if not producer.poll(0):
            return


def _report_refusals(error: KafkaError, refused: list[tuple[KafkaError, str]]) -> None:
    """Kafka refusing a transaction's records (WRITE on a topic), its offsets (READ on
    the group) or the transactional id itself: said loudly (kafka_auth)."""
    refusals = kafka_auth.current()
    for err, topic in {(e.code(), t): (e, t) for e, t in refused}.values():
        refusals.refused(err, "WRITE", f"topic {topic}")
    if kafka_auth.is_refusal(error):
        kind = kafka_auth.AUTHORIZATION.get(error.code(), "the cluster")
        operation = "READ" if error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED else "WRITE"
        refusals.refused(error, operation, kind)


# The call takes milliseconds on a healthy broker; a false "wedged" only costs a new
# producer and a redone batch, while every second of a real wedge stalls the pipeline.
OFFSETS_TIMEOUT_S = 10.0
OFFSETS_GRACE_S = 5.0


# Another producer took this transactional id: this one is a zombie and must stop.
FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)


class ProducerWedged(RetriableError):
    """The transactional producer is stuck in a call that will never return: drop it and
    make a new one with the same transactional id (which fences the stuck transaction)."""


class ProducerFailed(FatalError):
    """The transactional producer hit a fatal error that is no fencing: it is unusable,
    but a new one with the same transactional id can go on (the run loop makes one)."""


# What a consume-transform-produce loop survives by replacing its producer.
RENEWABLE: tuple[type[SyncError], ...] = (ProducerWedged, ProducerFailed)


def renewed(new_producer: Callable[[], Producer] | None, why: str) -> Producer:
    """A new transactional producer for one `ProducerWedged` (`why`): the same
    transactional id fences the stuck transaction. While the broker cannot give one
    (`init_transactions` timed out: it is away), RetriableError: the caller goes on
    waiting for it, not ready meanwhile (reachability), and tries again; FatalError
    without a way to make one, or when Kafka refuses it for good."""
    if new_producer is None:
        raise FatalError(f"{why}; no way to replace the producer")
    try:
        return new_producer()
    except KafkaException as exc:
        error = exc.args[0]
        if error.fatal() or not error.retriable():
            raise FatalError(f"{why}; no new producer: {error.str()}") from exc
        raise RetriableError(f"{why}; no new producer yet: {error.str()}") from exc


def send_offsets(
    producer: Producer,
    offsets: list[TopicPartition],
    group_metadata: Any,
    timeout_s: float | None = None,
    grace_s: float | None = None,
) -> None:
    """`send_offsets_to_transaction`, but never blocking for ever: librdkafka ignores its
    timeout when the group coordinator went away mid-transaction (a broker restart) and
    can wait for good (confluentinc/librdkafka#5456, #5511). The call runs on a helper
    thread; if it has not returned ``grace_s`` after its own timeout, ProducerWedged."""
    timeout_s = OFFSETS_TIMEOUT_S if timeout_s is None else timeout_s
    grace_s = OFFSETS_GRACE_S if grace_s is None else grace_s
    done = threading.Event()
    failure: list[KafkaException] = []

    def call() -> None:
        try:
            producer.send_offsets_to_transaction(offsets, group_metadata, timeout_s)
        except KafkaException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=call, name="send-offsets", daemon=True).start()
    if not done.wait(timeout_s + grace_s):
        raise ProducerWedged(
            f"send_offsets_to_transaction did not return in {timeout_s + grace_s:.0f} s"
        )
    if failure:
        raise failure[0]


def _commit_transaction(producer: Producer, attempts: int = 5) -> None:
    # librdkafka: a retriable commit error (e.g. a timeout) means "call commit again";
    # the transaction may still complete, so it must not be abandoned or redone.
    for attempt in range(1, attempts + 1):
        try:
            producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0]
            if attempt == attempts or not error.retriable() or error.txn_requires_abort():
                raise
            _log.warning("commit_transaction: %s; trying again", error.str())
        else:
            return
