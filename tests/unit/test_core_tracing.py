"""W3C trace context (services/common/tracing.py): a product's trace id carried from
record to record and onto HTTP calls, in a new span at each step."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from services.common import logs, tracing
from services.common.dlq import dead_letter
from services.common.errors import SkippableError
from tests.unit.fakes import FakeMessage

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
WRITER = f"00-{TRACE}-00f067aa0ba902b7-01"  # the span that wrote the record, sampled
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")


def consumed(*headers: tuple[str, str]) -> FakeMessage:
    return FakeMessage(
        _key=b"acme/SKU-1",
        _offset=7,
        _headers=[(k, v.encode()) for k, v in headers],
    )


def parts(traceparent: str) -> tuple[str, str]:
    match = TRACEPARENT.fullmatch(traceparent)
    assert match is not None, traceparent
    return match[1], match[2]


def test_a_new_trace_is_valid_w3c_and_each_is_its_own() -> None:
    started = [tracing.start() for _ in range(100)]

    for trace in started:
        trace_id, _ = parts(trace.traceparent)
        assert trace_id == trace.trace_id
        assert tracing.is_trace_id(trace.trace_id)
        parsed = tracing.parse(trace.traceparent)
        assert parsed is not None
        assert parsed.traceparent == trace.traceparent
    assert len({t.trace_id for t in started}) == 100
    assert started[0].traceparent.endswith("-00")  # no span recorded: not sampled


def test_a_child_keeps_the_trace_id_and_flags_in_a_new_span() -> None:
    parent = tracing.parse(WRITER)
    assert parent is not None

    child = parent.child()

    assert child.trace_id == TRACE
    assert parts(child.traceparent)[1] != "00f067aa0ba902b7"
    assert child.traceparent.endswith("-01")


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE}-{'0' * 16}-01"],
)
def test_an_absent_or_invalid_traceparent_parses_to_none(value: str | None) -> None:
    assert tracing.parse(value) is None


def test_a_received_record_continues_the_span_that_wrote_it() -> None:
    received = tracing.received(consumed(("trace_id", TRACE), ("traceparent", WRITER)))

    assert received.traceparent == WRITER


def test_a_record_without_traceparent_continues_its_trace_id() -> None:
    """Records written before `traceparent` existed: the trace id alone goes on."""
    assert tracing.received(consumed(("trace_id", TRACE))).trace_id == TRACE
    assert tracing.received(consumed(), trace_id=TRACE).trace_id == TRACE


def test_the_trace_id_a_record_says_wins_over_a_traceparent_of_another_trace() -> None:
    other = tracing.start().traceparent

    assert tracing.received(consumed(("traceparent", other)), trace_id=TRACE).trace_id == TRACE


def test_a_record_with_no_valid_trace_starts_one() -> None:
    received = tracing.received(consumed(("trace_id", "not-a-trace")))

    assert tracing.is_trace_id(received.trace_id)


def test_calls_inside_an_active_trace_carry_it_each_in_a_new_span() -> None:
    current = tracing.of_id(TRACE)
    assert tracing.outgoing() == {}

    with tracing.active(current):
        first, second = tracing.outgoing(), tracing.outgoing()

    assert tracing.outgoing() == {}
    assert parts(first["traceparent"])[0] == parts(second["traceparent"])[0] == TRACE
    assert first != second
    assert parts(first["traceparent"])[1] != parts(current.traceparent)[1]


def test_an_active_trace_is_its_threads_alone() -> None:
    seen: list[dict[str, str]] = []
    with tracing.active(tracing.of_id(TRACE)):
        other = threading.Thread(target=lambda: seen.append(tracing.outgoing()))
        other.start()
        other.join(timeout=10)

    assert seen == [{}]


def test_log_lines_name_the_active_trace_and_the_record(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.tracing")
    handler_filter = logs.ContextFilter()
    caplog.handler.addFilter(handler_filter)
    msg = consumed(("trace_id", TRACE))
    try:
        with logs.context(**tracing.record_fields(msg)):
            logger.warning("about the record")
        with tracing.active(tracing.start()), logs.context(offset=9):
            logger.warning("about another trace")
    finally:
        caplog.handler.removeFilter(handler_filter)

    first, second = caplog.records
    assert (first.topic, first.partition, first.offset, first.trace_id) == (  # type: ignore[attr-defined]
        "siesa.items.raw.v1",
        0,
        7,
        TRACE,
    )
    assert second.trace_id != TRACE  # type: ignore[attr-defined]
    assert tracing.is_trace_id(second.trace_id)  # type: ignore[attr-defined]


def test_a_dead_letter_keeps_the_failed_records_trace() -> None:
    error = SkippableError("tenant acme: field name: required", tenant="acme")

    letter = dict(
        dead_letter(
            consumed(("trace_id", TRACE), ("traceparent", WRITER)),
            error,
            stage="transform",
            dlq_topic="dlq",
        ).headers
    )

    assert letter["trace_id"] == TRACE
    assert letter["traceparent"] == WRITER
