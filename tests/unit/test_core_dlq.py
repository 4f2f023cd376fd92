"""Dead letters: the failed record's key and bytes unchanged, with design.md's headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from services.common.dlq import dead_letter, dead_letter_record
from services.common.errors import SkippableError
from services.common.records import coordinates, header_value, trace_headers
from tests.unit.fakes import FakeMessage

DESIGN_HEADERS = [
    "error.stage",
    "error.class",
    "error.message",
    "error.attempts",
    "source.topic",
    "source.partition",
    "source.offset",
    "tenant",
    "trace_id",
    "traceparent",
    "failed_at",
]
# The failed record's place in its trace (W3C trace context).
TRACE_9 = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT_9 = f"00-{TRACE_9}-00f067aa0ba902b7-01"


# Where the dead letters below come from: siesa.items.raw.v1, partition 3, offset 42.
consumed = partial(
    FakeMessage,
    _partition=3,
    _offset=42,
    _key=b"acme/CAM-OXF-001",
    _value=b"\xc3\x01not really avro",
)


def headers_of(record_headers: list[tuple[str, str | bytes | None]]) -> dict[str, str]:
    out = {}
    for name, value in record_headers:
        assert isinstance(value, str)
        out[name] = value
    return out


def test_a_dead_letter_keeps_key_and_bytes_and_has_every_design_header() -> None:
    msg = consumed(
        _headers=[
            ("trace_id", TRACE_9.encode()),
            ("sync_id", b"sync-1"),
            ("traceparent", TRACEPARENT_9.encode()),
        ]
    )
    error = SkippableError(
        "tenant acme: field name: required", tenant="acme", error_class="mapping"
    )
    before = datetime.now(UTC)

    record = dead_letter(msg, error, stage="transform", dlq_topic="t.products.dlq.v1")

    assert record.topic == "t.products.dlq.v1"
    assert (record.key, record.value) == (msg.key(), msg.value())
    assert [name for name, _ in record.headers] == DESIGN_HEADERS
    headers = headers_of(record.headers)
    assert headers["error.stage"] == "transform"
    assert headers["error.class"] == "mapping"
    assert headers["error.message"] == "tenant acme: field name: required"
    assert headers["error.attempts"] == "1"
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (
        "siesa.items.raw.v1",
        "3",
        "42",
    )
    assert headers["tenant"] == "acme"
    assert headers["trace_id"] == TRACE_9
    assert headers["traceparent"] == TRACEPARENT_9
    failed_at = datetime.fromisoformat(headers["failed_at"])
    assert failed_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= failed_at <= datetime.now(UTC) + timedelta(seconds=1)


def test_a_replayed_dead_letter_counts_one_more_attempt() -> None:
    msg = consumed(_headers=[("error.attempts", b"2")])

    record = dead_letter(msg, SkippableError("again"), stage="load", dlq_topic="dlq")

    assert headers_of(record.headers)["error.attempts"] == "3"


@pytest.mark.parametrize(
    ("error_tenant", "msg_headers", "key", "expected"),
    [
        ("from-error", [("tenant", b"from-header")], b"from-key/x", "from-error"),
        (None, [("tenant", b"from-header")], b"from-key/x", "from-header"),
        (None, [], b"from-key/x", "from-key"),
        (None, None, None, ""),
    ],
)
def test_the_tenant_header_comes_from_the_error_then_header_then_key(
    error_tenant: str | None,
    msg_headers: list[tuple[str, bytes | None]] | None,
    key: bytes | None,
    expected: str,
) -> None:
    msg = consumed(_headers=msg_headers, _key=key)

    record = dead_letter(msg, SkippableError("x", tenant=error_tenant), stage="s", dlq_topic="d")

    assert headers_of(record.headers)["tenant"] == expected


def test_a_long_message_is_cut_to_4000_characters() -> None:
    record = dead_letter_record(
        key=None, value=b"{}", error=SkippableError("x" * 10_000), stage="extract", dlq_topic="d"
    )

    assert headers_of(record.headers)["error.message"] == "x" * 4000


def test_a_record_that_was_never_consumed_has_no_source_coordinates() -> None:
    record = dead_letter_record(
        key=None,
        value=b'{"f120_referencia": null}',
        error=SkippableError("no key", error_class="invalid_row"),
        stage="extract",
        dlq_topic="d",
        tenant="acme",
    )

    headers = headers_of(record.headers)
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (
        "",
        "-1",
        "-1",
    )
    assert headers["tenant"] == "acme"
    assert headers["error.class"] == "invalid_row"
    assert record.value == b'{"f120_referencia": null}'


def test_header_value_takes_the_last_one_and_decodes_bytes() -> None:
    msg = consumed(_headers=[("a", b"1"), ("b", None), ("a", b"2"), ("c", "text")])

    assert header_value(msg, "a") == "2"
    assert header_value(msg, "b") is None
    assert header_value(msg, "c") == "text"
    assert header_value(msg, "missing") is None
    assert header_value(consumed(_headers=None), "a") is None


def test_coordinates_and_trace_headers() -> None:
    assert coordinates(consumed()) == ("siesa.items.raw.v1", 3, 42)
    assert trace_headers("acme", "t1", "s1") == [
        ("tenant", b"acme"),
        ("trace_id", b"t1"),
        ("sync_id", b"s1"),
    ]
