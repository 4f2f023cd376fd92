"""`StateWriter`: the one way the services keep their SyncStates and write them."""

from __future__ import annotations

from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import StateWriter, new_state
from tests.unit.fakes import FakeTransactionalProducer

KAFKA = KafkaSettings(topic_prefix="p.")
SERDE = default_serde()


def decoded(records: list[object]) -> list[dict[str, object]]:
    return [SERDE.decode_as("SyncState", r.value) for r in records]  # type: ignore[attr-defined]


def test_a_state_is_written_once_per_change() -> None:
    states = StateWriter("loader-a")
    states["acme"]["loaded"] += 3

    (record,) = states.records(KAFKA)
    assert (record.topic, record.key) == ("p.sync.state.v1", b"acme/loader-a")
    assert decoded([record])[0]["loaded"] == 3
    assert states.records(KAFKA) == []  # nothing changed since
    states["acme"]["loaded"] += 1
    assert [s["loaded"] for s in decoded(states.records(KAFKA))] == [4]


def test_with_the_tenants_touched_only_those_and_the_never_written_are_compared() -> None:
    states = StateWriter("loader-a", tenants=["a", "b", "c"])
    assert sorted(s["tenant"] for s in decoded(states.records(KAFKA, touched=[]))) == [
        "a",
        "b",
        "c",
    ]  # never written: written whatever the step touched
    states["a"]["loaded"] += 1
    states["b"]["loaded"] += 1

    assert [s["tenant"] for s in decoded(states.records(KAFKA, touched=["b"]))] == ["b"]
    assert [s["tenant"] for s in decoded(states.records(KAFKA))] == ["a"]  # all compared
    states["d"]["loaded"] += 1  # a tenant first seen now: never written
    assert [s["tenant"] for s in decoded(states.records(KAFKA, touched=[]))] == ["d"]
    assert states.records(KAFKA, touched=[]) == []


def test_restore_takes_this_writers_states_of_its_tenants_only() -> None:
    states = StateWriter("loader-a", tenants=["acme"])
    states.restore(
        [
            new_state("acme", "loader-a", loaded=40),
            new_state("acme", "loader-b", loaded=99),
            new_state("gone", "loader-a", loaded=7),
        ]
    )

    assert states["acme"]["loaded"] == 40
    assert list(states) == ["acme"]
    assert states.records(KAFKA) == []  # as stored: nothing to write again


def test_a_proposal_is_kept_only_once_committed() -> None:
    states = StateWriter("extractor")
    proposal = states.changed("acme", status="syncing", extracted=5)
    record = states.record(KAFKA, proposal)

    assert states["acme"]["status"] == "idle"  # not committed yet
    states.keep(proposal)
    assert states["acme"]["extracted"] == 5
    assert decoded([record])[0]["status"] == "syncing"


def test_store_commits_the_state_alone_then_keeps_it() -> None:
    states = StateWriter("extractor")
    producer = FakeTransactionalProducer()

    states.store(producer, KAFKA, "acme", paused=True)  # type: ignore[arg-type]

    ((topic, key, value, _),) = producer.transactions[0]
    assert (topic, key) == ("p.sync.state.v1", b"acme/extractor")
    assert SERDE.decode_as("SyncState", value)["paused"] is True
    assert states["acme"]["paused"] is True
