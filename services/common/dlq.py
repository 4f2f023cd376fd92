"""Dead letters: the failed record's key and bytes, unchanged, with why and where from,
and its place in its trace (`trace_id`, `traceparent`: a redrive carries them on)."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import Message

from services.common import tracing
from services.common.errors import SyncError
from services.common.records import OutRecord, coordinates, header_value
from services.common.tenants import tenant_of_key


def dead_letter(msg: Message, error: SyncError, *, stage: str, dlq_topic: str) -> OutRecord:
    """The DLQ record for consumed `msg`, which failed at `stage` with `error`."""
    return dead_letter_record(
        key=msg.key(),
        value=msg.value(),
        error=error,
        stage=stage,
        dlq_topic=dlq_topic,
        source=coordinates(msg),
        attempts=int(header_value(msg, "error.attempts") or "0") + 1,
        tenant=error.tenant or header_value(msg, "tenant") or tenant_of_key(msg.key()),
        trace=tracing.received(msg),
    )


def dead_letter_record(
    *,
    key: bytes | None,
    value: bytes | None,
    error: SyncError,
    stage: str,
    dlq_topic: str,
    source: tuple[str, int, int] | None = None,
    attempts: int = 1,
    tenant: str | None = None,
    trace: tracing.Trace | None = None,
) -> OutRecord:
    """A DLQ record with design.md's headers; `source` is (topic, partition, offset).
    `trace`: the failed record's (default: a new trace, for a record that had none)."""
    topic, partition, offset = source or ("", -1, -1)
    trace = trace or tracing.start()
    headers = [
        ("error.stage", stage),
        ("error.class", error.error_class),
        ("error.message", error.message[:4000]),
        ("error.attempts", str(attempts)),
        ("source.topic", topic),
        ("source.partition", str(partition)),
        ("source.offset", str(offset)),
        ("tenant", tenant or error.tenant or ""),
        (tracing.TRACE_ID, trace.trace_id),
        (tracing.TRACEPARENT, trace.traceparent),
        ("failed_at", datetime.now(UTC).isoformat(timespec="milliseconds")),
    ]
    return OutRecord(topic=dlq_topic, key=key, value=value, headers=[(k, v) for k, v in headers])
