"""Sync state on the real broker: latest committed record per tenant and writer."""

from __future__ import annotations

from services.common.kafka import make_producer
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import new_state, read_compacted, read_states, state_record
from services.common.topics import STATE


def test_read_states_returns_the_latest_committed_state_per_writer(kafka: KafkaSettings) -> None:
    serde = default_serde()
    producer = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}state-test")
    records = [
        state_record(kafka, serde, new_state("acme", "extractor", extracted=1)),
        state_record(kafka, serde, new_state("acme", "extractor", extracted=2)),
        state_record(kafka, serde, new_state("acme", "loader-a", loaded=5)),
        state_record(kafka, serde, new_state("beta", "extractor", status="failed")),
    ]
    producer.begin_transaction()
    for record in records:
        producer.produce(record.topic, key=record.key, value=record.value)
    producer.commit_transaction(30)
    aborted = state_record(kafka, serde, new_state("acme", "extractor", extracted=99))
    producer.begin_transaction()
    producer.produce(aborted.topic, key=aborted.key, value=aborted.value)
    producer.flush(30)
    producer.abort_transaction(30)

    states = read_states(kafka, serde)

    assert [(s["tenant"], s["writer"]) for s in states] == [
        ("acme", "extractor"),
        ("acme", "loader-a"),
        ("beta", "extractor"),
    ]
    assert states[0]["extracted"] == 2
    assert states[1]["loaded"] == 5
    assert states[2]["status"] == "failed"


def test_a_tombstone_removes_its_key_and_an_empty_topic_reads_empty(kafka: KafkaSettings) -> None:
    topic = kafka.topic(STATE)
    assert read_compacted(kafka, topic) == {}
    producer = make_producer(kafka)
    producer.produce(topic, key=b"acme/x", value=b"1")
    producer.produce(topic, key=b"acme/y", value=b"2")
    producer.produce(topic, key=b"acme/x", value=None)
    producer.flush(30)
    assert read_compacted(kafka, topic) == {b"acme/y": b"2"}
