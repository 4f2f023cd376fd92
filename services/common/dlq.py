"""Dead letters: the failed record's key and bytes, unchanged, with why and where from,
and its place in its trace (`trace_id`, `traceparent`: a redrive carries them on).

A dead letter always fits its topic: a failed record too big for it (a 2 MB row, or a
record that failed because it was too big) is cut to fit, and the header
``error.truncated`` says what was cut (``value: 2000017 bytes, the first 993976 kept``).
Otherwise a dead letter over the broker's limit would fail the very write meant to get
the record out of the way, and wedge its stage on it for good. Header values are always
writable text (services/common/text.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import Message

from services.common import tracing
from services.common.errors import SyncError
from services.common.records import OutRecord, coordinates, header_value
from services.common.sizes import DEFAULT_MAX_BYTES, record_size
from services.common.tenants import tenant_of_key
from services.common.text import escaped

TRUNCATED = "error.truncated"
# Room kept for the `error.truncated` header itself.
_NOTE_BYTES = 128

Headers = list[tuple[str, str | bytes | None]]


def dead_letter(
    msg: Message,
    error: SyncError,
    stage: str,
    dlq_topic: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OutRecord:
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
        max_bytes=max_bytes,
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
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> OutRecord:
    """A DLQ record with design.md's headers; `source` is (topic, partition, offset).
    `trace`: the failed record's (default: a new trace, for a record that had none).
    Cut to at most `max_bytes` (`sizes.record_size`) if it is bigger."""
    topic, partition, offset = source or ("", -1, -1)
    trace = trace or tracing.start()
    headers: Headers = [
        ("error.stage", stage),
        ("error.class", error.error_class),
        ("error.message", escaped(error.message[:4000])),
        ("error.attempts", str(attempts)),
        ("source.topic", topic),
        ("source.partition", str(partition)),
        ("source.offset", str(offset)),
        ("tenant", escaped(tenant or error.tenant or "")),
        (tracing.TRACE_ID, trace.trace_id),
        (tracing.TRACEPARENT, trace.traceparent),
        ("failed_at", datetime.now(UTC).isoformat(timespec="milliseconds")),
    ]
    key, value = _fit(key, value, headers, max_bytes)
    return OutRecord(topic=dlq_topic, key=key, value=value, headers=headers)


def _fit(
    key: bytes | None, value: bytes | None, headers: Headers, max_bytes: int
) -> tuple[bytes | None, bytes | None]:
    """`key` and `value`, the value cut first, then the key, so that the record holds
    at most `max_bytes`; what was cut noted in `headers`."""
    over = record_size(key, value, headers) - max_bytes
    if over <= 0:
        return key, value
    over += _NOTE_BYTES
    notes = []
    if value:
        kept = max(0, len(value) - over)
        notes.append(f"value: {len(value)} bytes, the first {kept} kept")
        over -= len(value) - kept
        value = value[:kept]
    if over > 0 and key:
        kept = max(0, len(key) - over)
        notes.append(f"key: {len(key)} bytes, the first {kept} kept")
        key = key[:kept]
    headers.append((TRUNCATED, "; ".join(notes)))
    return key, value
