"""How big a record may be, read once at start-up, and how big one is.

A record over the limit never gets through, and not quietly: librdkafka refuses one
over the producer's `message.max.bytes` when it is produced, and the broker one over the
topic's `max.message.bytes` when its batch arrives, which inside a transaction fails
the whole commit, again at every retry. So every stage checks the size of what it is
about to write against `max_record_bytes` and sends what is over to the DLQ (cut to
fit, services/common/dlq.py) instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence

from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at run time, missing from the stubs' __all__
    ConfigResource,
    ResourceType,
)

from services.common.errors import SkippableError
from services.common.kafka import make_admin, producer_config
from services.common.records import OutRecord
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)

# librdkafka's default `message.max.bytes`; a broker's default `max.message.bytes` is a
# little more (1048588).
KAFKA_DEFAULT_BYTES = 1_000_000
TOPIC_SETTING = "max.message.bytes"
PRODUCER_SETTING = "message.max.bytes"

Headers = Sequence[tuple[str, str | bytes | None]]


def usable(limit: int) -> int:
    """What a record may hold under a `limit` of the broker or the producer: room left
    for the record batch's framing (61 bytes, plus a record's own varints) and for an
    incompressible value growing a little when compressed (lz4: under 0.4 %)."""
    return limit - 1024 - limit // 200


# The limit of a cluster left at Kafka's defaults: what a stage assumes until it has read
# its topics' settings.
DEFAULT_MAX_BYTES = usable(KAFKA_DEFAULT_BYTES)


def record_size(key: bytes | None, value: bytes | None, headers: Headers = ()) -> int:
    """The bytes a record carries: key, value, header names and values."""
    size = len(key or b"") + len(value or b"")
    for name, data in headers:
        size += len(name.encode()) + (len(data) if data is not None else 0)
    return size


class RecordTooLarge(SkippableError):
    """A record is over the size the broker takes: what it came from goes to the DLQ
    instead of failing its batch's write again and again."""

    error_class = "too_large"


def check_sizes(outputs: Iterable[OutRecord], max_bytes: int) -> None:
    """RecordTooLarge if one of `outputs` holds more than `max_bytes`."""
    for out in outputs:
        size = record_size(out.key, out.value, out.headers)
        if size > max_bytes:
            raise RecordTooLarge(
                f"its output to {out.topic} would be {size} bytes, over the {max_bytes} "
                "a record may hold there"
            )


def within(
    handle: Callable[[Message], Sequence[OutRecord]], max_bytes: int
) -> Callable[[Message], Sequence[OutRecord]]:
    """`handle`, raising RecordTooLarge (the record is dead-lettered by
    `runloop.per_record`) when one of its outputs holds more than `max_bytes`."""

    def checked(msg: Message) -> Sequence[OutRecord]:
        outputs = handle(msg)
        check_sizes(outputs, max_bytes)
        return outputs

    return checked


def max_record_bytes(kafka: KafkaSettings, topics: Iterable[str]) -> int:
    """The most a record may carry to be written to every one of `topics` (full names) by
    a producer built from `kafka`: the smallest of their `max.message.bytes` and the
    producer's `message.max.bytes`, less `usable`'s margin. A topic whose settings can't
    be read (not allowed, broker slow) counts at Kafka's default, said in the log."""
    configured = producer_config(kafka).get(PRODUCER_SETTING, KAFKA_DEFAULT_BYTES)
    limits = [int(configured)]
    wanted = [ConfigResource(ResourceType.TOPIC, name) for name in topics]
    if wanted:
        admin = make_admin(kafka)
        for resource, future in admin.describe_configs(wanted, request_timeout=15).items():
            try:
                entry = future.result(timeout=20)[TOPIC_SETTING]
                limits.append(int(str(entry.value)))
            except (KafkaException, KeyError, ValueError, TypeError, TimeoutError) as exc:
                log.warning(
                    "cannot read %s of topic %s (%s): taking Kafka's default, %d",
                    TOPIC_SETTING,
                    resource.name,
                    exc,
                    KAFKA_DEFAULT_BYTES,
                )
                limits.append(KAFKA_DEFAULT_BYTES)
    limit = usable(min(limits))
    log.info("records up to %d bytes for %s", limit, ", ".join(r.name for r in wanted))
    return limit
