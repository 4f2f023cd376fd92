"""What the run loop produces, and small helpers on consumed messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import Message


@dataclass(frozen=True)
class OutRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, str | bytes | None]] = field(default_factory=list)


def header_value(msg: Message, name: str) -> str | None:
    """The last value of header `name` on `msg`, decoded, or None."""
    found: str | None = None
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    for key, value in pairs:
        if key == name and value is not None:
            found = value.decode(errors="replace") if isinstance(value, bytes) else value
    return found


def coordinates(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message."""
    return msg.topic() or "", msg.partition() or 0, msg.offset() or 0


def trace_headers(tenant: str, trace_id: str, sync_id: str) -> list[tuple[str, str | bytes | None]]:
    return [
        ("tenant", tenant.encode()),
        ("trace_id", trace_id.encode()),
        ("sync_id", sync_id.encode()),
    ]
