"""W3C trace context: every version of a product is one trace, from the source read to
the target's answer, and into the DLQ.

- The extractor starts a trace for each row it emits (`start`): a random 128-bit trace
  id (the record's `trace_id` field) and a span id for the read.
- Every record carries its place in the trace as a Kafka header, `traceparent` (W3C
  Trace Context, formatted and parsed by OpenTelemetry's propagator), beside the
  `trace_id` header. A stage continues the trace of the record it handles
  (`received(...).child()`): the same trace id, a new span id for its own step.
- HTTP calls made while a trace is `active` carry `traceparent` with a new span id
  each, the same trace id (`outgoing`): the loader's calls to a target, per product;
  a source's page requests in a scan, whose trace id is the scan's `sync_id`.
- A dead letter carries the failed record's `traceparent` and `trace_id`; a redrive or
  a replay sends the headers on, so the trace id never changes.
- JSON log lines about a record carry its `trace_id` (`record_fields`, with its
  topic/partition/offset), and lines written in an `active` trace that trace's id.

Trace flags: nothing here records spans, so a trace started here is not marked sampled
(W3C: the flag says the caller may have recorded); a trace continued keeps its flags.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common import logs
from services.common.records import coordinates, header_value

TRACEPARENT = "traceparent"
TRACE_ID = "trace_id"

_PROPAGATOR = TraceContextTextMapPropagator()
_EMPTY = Context()
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# Ids drawn without a system call each: a trace id must be unique, not secret.
_random = random.Random()  # noqa: S311 - ids, not secrets
NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


def is_trace_id(value: object) -> bool:
    """Whether `value` is a valid W3C trace id: 32 lowercase hex digits, not all zero."""
    return isinstance(value, str) and _TRACE_ID.fullmatch(value) is not None and value != "0" * 32


def _nonzero(bits: int) -> int:
    while True:
        value = _random.getrandbits(bits)
        if value:
            return value


@dataclass(frozen=True, slots=True)
class Trace:
    """A place in a trace: the trace id and the span (a read, a step, a call) there."""

    span: SpanContext

    @property
    def trace_id(self) -> str:
        return format_trace_id(self.span.trace_id)

    @property
    def traceparent(self) -> str:
        """The W3C `traceparent` header naming this span."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(self.span), _EMPTY))
        return carrier[TRACEPARENT]

    def child(self) -> Trace:
        """A new span of the same trace (a step or a call made from this one)."""
        return Trace(
            SpanContext(
                self.span.trace_id,
                _nonzero(64),
                is_remote=False,
                trace_flags=self.span.trace_flags,
                trace_state=self.span.trace_state,
            )
        )


def _trace(trace_id: int) -> Trace:
    return Trace(SpanContext(trace_id, _nonzero(64), is_remote=False, trace_flags=NOT_SAMPLED))


def start() -> Trace:
    """A new trace (a product version read from its source)."""
    return _trace(_nonzero(128))


def of_id(trace_id: str) -> Trace:
    """A span of trace `trace_id` (a W3C trace id: check it with `is_trace_id`)."""
    return _trace(int(trace_id, 16))


def parse(traceparent: str | bytes | None) -> Trace | None:
    """The span a `traceparent` header names; None when absent or not valid W3C."""
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode(errors="replace")
    if not traceparent:
        return None
    extracted = _PROPAGATOR.extract({TRACEPARENT: traceparent}, _EMPTY)
    span = trace.get_current_span(extracted).get_span_context()
    return Trace(span) if span.is_valid else None


def received(msg: Message, trace_id: str | None = None) -> Trace:
    """The trace a consumed record belongs to, at the span that wrote it.

    `trace_id` is what the record's value says, if read (else the `trace_id` header):
    its `traceparent` header is taken when it names that trace. Records written before
    headers carried `traceparent` have a trace id alone (a span of it stands for the
    writer's); a record with no valid W3C trace id at all starts a trace here."""
    said = trace_id if trace_id is not None else header_value(msg, TRACE_ID)
    parent = parse(header_value(msg, TRACEPARENT))
    if parent is not None and (not is_trace_id(said) or parent.trace_id == said):
        return parent
    if said is not None and is_trace_id(said):
        return of_id(said)
    return start()


def record_fields(msg: Message) -> dict[str, object]:
    """The log fields of a consumed record being handled, besides its tenant: its
    topic/partition/offset and trace id (the `trace_id` header)."""
    topic, partition, offset = coordinates(msg)
    return {
        "topic": topic,
        "partition": partition,
        "offset": offset,
        TRACE_ID: header_value(msg, TRACE_ID),
    }


@contextmanager
def active(current: Trace) -> Iterator[None]:
    """Calls made inside belong to `current`'s trace (`outgoing`), and log lines written
    inside carry its trace id."""
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(current.span)))
    try:
        with logs.context(trace_id=current.trace_id):
            yield
    finally:
        otel_context.detach(token)


def outgoing() -> dict[str, str]:
    """The headers of an HTTP call made now: `traceparent` with a new span of the active
    trace; none outside one."""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return {}
    return {TRACEPARENT: Trace(span).child().traceparent}
