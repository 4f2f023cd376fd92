"""Dead letters: the failed record's key and bytes, unchanged, with why and where from."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import Message

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
        trace_id=header_value(msg, "trace_id"),
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
    trace_id: str | None = None,
) -> OutRecord:
    """A DLQ record with design.md's headers; `source` is (topic, partition, offset)."""
    topic, partition, offset = source or ("", -1, -1)
    headers = [
        ("error.stage", stage),
        ("error.class", error.error_class),
        ("error.message", error.message[:4000]),
        ("error.attempts", str(attempts)),
        ("source.topic", topic),
        ("source.partition", str(partition)),
        ("source.offset", str(offset)),
        ("tenant", tenant or error.tenant or ""),
        ("trace_id", trace_id or ""),
        ("failed_at", datetime.now(UTC).isoformat(timespec="milliseconds")),
    ]
    return OutRecord(topic=dlq_topic, key=key, value=value, headers=[(k, v) for k, v in headers])
