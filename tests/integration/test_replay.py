"""Replay on the real broker: one tenant's last version per product in the window is
appended again to the stage's input, marked; nothing of other tenants; nothing older
than what came after the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.common.kafka import make_producer
from services.common.records import header_value
from services.common.scan import reader, scan
from services.common.settings import KafkaSettings
from services.common.topics import CANONICAL
from services.ops.replay import REPLAY_HEADER, replay
from services.ops.times import to_ms

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def at(minutes: int) -> int:
    return to_ms(T0 + timedelta(minutes=minutes))


def test_replay_appends_the_tenants_last_versions_in_the_window(kafka: KafkaSettings) -> None:
    topic = kafka.topic(CANONICAL)
    producer = make_producer(kafka)
    sent = [
        (b"acme/A", b"A1", 0),  # before the window
        (b"acme/A", b"A2", 10),
        (b"acme/A", b"A3", 20),  # A's last version in the window
        (b"acme/B", b"B1", 15),
        (b"beta/C", b"C1", 15),  # another tenant: never touched
        (b"acme/D", b"D1", 15),
        (b"acme/D", b"D2", 40),  # D changed after the window: not replayed
        (b"acme/E", b"E1", 45),  # after the window
    ]
    for key, value, minute in sent:
        producer.produce(topic, key=key, value=value, timestamp=at(minute))
    producer.flush(30)

    report = replay(kafka, "acme", "load", T0 + timedelta(minutes=5), T0 + timedelta(minutes=30))

    assert report.summary()["replayed"] == 2
    assert report.newer_after_window == 1
    consumer = reader(kafka)
    try:
        replayed = sorted(
            (m.key(), m.value())
            for m in scan(consumer, topic)
            if header_value(m, REPLAY_HEADER) == report.replay_id
        )
    finally:
        consumer.close()
    assert replayed == [(b"acme/A", b"A3"), (b"acme/B", b"B1")]
