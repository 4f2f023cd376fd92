"""Dead-letter redrive on the real broker: each dead letter back to its source topic
once, with its attempts; none past the maximum; none older than a newer version."""

from __future__ import annotations

from confluent_kafka import Producer

from devtools import procs
from services.common.dlq import dead_letter_record
from services.common.errors import SkippableError
from services.common.kafka import make_producer
from services.common.scan import reader, scan
from services.common.settings import KafkaSettings
from services.common.topics import CANONICAL, DLQ, STATE
from services.ops.dlq import Filters, dead_letters, redrive


def put(producer: Producer, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    """Produce one record synchronously; its (partition, offset)."""
    offsets: list[tuple[int, int]] = []
    producer.produce(
        topic,
        key=key,
        value=value,
        on_delivery=lambda e, m: offsets.append((m.partition(), m.offset())),
    )
    producer.flush(30)
    return offsets[0]


def fail(
    producer: Producer,
    kafka: KafkaSettings,
    key: bytes,
    value: bytes,
    attempts: int = 1,
    error_class: str = "validation",
) -> None:
    """``key``/``value`` goes through the canonical topic, then fails at the load stage."""
    source = kafka.topic(CANONICAL)
    partition, offset = put(producer, source, key, value)
    tenant = key.decode().split("/")[0]
    letter = dead_letter_record(
        key=key,
        value=value,
        error=SkippableError(f"bad {value.decode()}", tenant=tenant, error_class=error_class),
        stage="load",
        dlq_topic=kafka.topic(DLQ),
        source=(source, partition, offset),
        attempts=attempts,
        tenant=tenant,
    )
    producer.produce(letter.topic, key=letter.key, value=letter.value, headers=letter.headers)
    producer.flush(30)


def canonical_records(kafka: KafkaSettings) -> list[tuple[bytes, bytes, dict[str, bytes]]]:
    consumer = reader(kafka)
    try:
        return [
            (m.key(), m.value(), dict(m.headers() or []))
            for m in scan(consumer, kafka.topic(CANONICAL))
        ]
    finally:
        consumer.close()


def test_redrive_sends_each_dead_letter_once_within_its_filters(kafka: KafkaSettings) -> None:
    producer = make_producer(kafka)
    for n in range(3):
        fail(producer, kafka, f"acme/SKU-{n}".encode(), f"v{n}".encode())
    fail(producer, kafka, b"beta/SKU-9", b"other tenant")
    fail(producer, kafka, b"acme/SKU-7", b"tired", attempts=3)
    fail(producer, kafka, b"acme/SKU-8", b"old")
    put(producer, kafka.topic(CANONICAL), b"acme/SKU-8", b"new version")  # went through since
    fail(producer, kafka, b"acme/SKU-5", b"wrong class", error_class="target_rejected")
    before = len(canonical_records(kafka))

    report = redrive(kafka, Filters(tenant="acme", error_class="validation"))

    assert report.summary() == {
        "sent": 3,
        "already_redriven": 0,
        "at_max_attempts": 1,
        "superseded": 1,
        "not_redrivable": 0,
        "refused": 0,
    }
    # A transaction's records are readable once its markers are written, which the
    # broker does just after the commit returns: wait for them, briefly.
    after: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    def resent_readable() -> bool:
        nonlocal after
        after = canonical_records(kafka)
        return len(after) >= before + 3

    procs.wait_until(resent_readable, timeout=30, what="the redriven records")
    resent = [r for r in after if "redriven.from" in r[2]]
    assert len(after) == before + 3
    assert sorted(key for key, _, _ in resent) == [b"acme/SKU-0", b"acme/SKU-1", b"acme/SKU-2"]
    assert all(headers["error.attempts"] == b"1" for _, _, headers in resent)
    assert all(headers["tenant"] == b"acme" for _, _, headers in resent)

    again = redrive(kafka, Filters(tenant="acme", error_class="validation"))

    assert again.summary()["sent"] == 0
    assert again.summary()["already_redriven"] == 4  # 3 sent + 1 superseded, both marked
    assert len(canonical_records(kafka)) == before + 3


def test_dead_letters_filter_by_tenant_and_class(kafka: KafkaSettings) -> None:
    producer = make_producer(kafka)
    fail(producer, kafka, b"acme/A", b"1")
    fail(producer, kafka, b"beta/B", b"2", error_class="target_rejected")

    assert [d.key for d in dead_letters(kafka)] == [b"acme/A", b"beta/B"]
    assert [d.key for d in dead_letters(kafka, Filters(tenant="beta"))] == [b"beta/B"]
    assert [d.key for d in dead_letters(kafka, Filters(error_class="validation"))] == [b"acme/A"]


def test_a_dead_letter_naming_another_topic_is_refused_and_nothing_is_written_there(
    kafka: KafkaSettings,
) -> None:
    producer = make_producer(kafka)
    fail(producer, kafka, b"acme/OK-1", b"fine")
    state = kafka.topic(STATE)
    forged = dead_letter_record(
        key=b"acme/FORGED",
        value=b"not a state record",
        error=SkippableError("bad", tenant="acme", error_class="validation"),
        stage="load",
        dlq_topic=kafka.topic(DLQ),
        source=(state, 0, 0),  # a header pointing the redrive at the state topic
        tenant="acme",
    )
    producer.produce(forged.topic, key=forged.key, value=forged.value, headers=forged.headers)
    producer.flush(30)

    report = redrive(kafka, Filters(tenant="acme"))

    assert report.summary()["sent"] == 1
    assert [letter.key for letter, _ in report.refused] == [b"acme/FORGED"]
    why = report.refused[0][1]
    assert f"names {state!r} as its source" in why
    assert f"goes back only to {kafka.topic(CANONICAL)}" in why
    consumer = reader(kafka)
    try:
        assert [m.key() for m in scan(consumer, state)] == []
    finally:
        consumer.close()
