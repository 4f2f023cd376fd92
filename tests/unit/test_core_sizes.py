"""Records and the broker's size limit: a dead letter is cut to fit its topic and says
so; an output over the limit dead-letters the record it came from (issue 13)."""

from __future__ import annotations

from services.common.dlq import TRUNCATED, dead_letter, dead_letter_record
from services.common.errors import SkippableError
from services.common.records import OutRecord
from services.common.runloop import per_record
from services.common.sizes import DEFAULT_MAX_BYTES, record_size, within
from tests.unit.fakes import FakeMessage


def size_of(record: OutRecord) -> int:
    return record_size(record.key, record.value, record.headers)


def test_a_dead_letter_that_fits_is_left_whole() -> None:
    record = dead_letter_record(
        key=b"acme/K",
        value=b"v" * 1000,
        error=SkippableError("bad"),
        stage="extract",
        dlq_topic="dlq",
        max_bytes=10_000,
    )

    assert record.value == b"v" * 1000
    assert TRUNCATED not in dict(record.headers)


def test_a_dead_letter_too_big_is_cut_value_first_and_says_so() -> None:
    value = bytes(range(256)) * 8000  # 2,048,000 bytes
    record = dead_letter_record(
        key=b"acme/BIG",
        value=value,
        error=SkippableError("too long"),
        stage="extract",
        dlq_topic="dlq",
        max_bytes=DEFAULT_MAX_BYTES,
    )

    assert size_of(record) <= DEFAULT_MAX_BYTES
    assert record.key == b"acme/BIG"
    assert record.value is not None
    assert value.startswith(record.value)
    note = dict(record.headers)[TRUNCATED]
    assert note == f"value: 2048000 bytes, the first {len(record.value)} kept"


def test_a_key_too_big_is_cut_too_once_the_value_is_gone() -> None:
    record = dead_letter_record(
        key=b"k" * 5000,
        value=b"v" * 5000,
        error=SkippableError("x"),
        stage="load",
        dlq_topic="dlq",
        max_bytes=3000,
    )

    assert size_of(record) <= 3000
    assert record.value == b""
    assert record.key is not None
    note = str(dict(record.headers)[TRUNCATED])
    assert note.startswith("value: 5000 bytes, the first 0 kept; key: 5000 bytes, the first ")


def test_a_consumed_record_dead_lettered_is_cut_to_the_stage_limit() -> None:
    msg = FakeMessage(_key=b"acme/K", _value=b"x" * 50_000)

    record = dead_letter(msg, SkippableError("no"), "transform", "dlq", 20_000)

    assert size_of(record) <= 20_000
    assert dict(record.headers)["error.stage"] == "transform"


def test_an_output_over_the_limit_dead_letters_its_record_and_the_batch_goes_on() -> None:
    def handle(msg: FakeMessage) -> list[OutRecord]:
        return [OutRecord("canonical", msg.key(), msg.value(), [])]

    small = FakeMessage(_key=b"acme/S", _value=b"s" * 10, _offset=1)
    big = FakeMessage(_key=b"acme/B", _value=b"b" * 5000, _offset=2)

    result = per_record(within(handle, 1000))([small, big])  # type: ignore[arg-type,list-item]

    assert [o.key for o in result.outputs] == [b"acme/S"]
    ((failed, error),) = result.failures
    assert failed is big
    assert error.error_class == "too_large"
    assert "would be 5006 bytes, over the 1000 a record may hold" in error.message
