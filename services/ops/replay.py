"""Replay: reprocess what a stage received for one tenant in a time window, while live
traffic flows.

The tenant's records of the window are read from the stage's input topic (found with
offsets_for_times) and appended to it again, carrying a ``replay`` header; the stage
processes them like any record, so nothing needs stopping and other tenants' records
are never touched. Per product only the last version of the window is replayed, and
none whose product has a newer version after the window: appending an old version
after a new one would move the target backwards. A live change that arrives while the
replay is written is appended once more after it, for the same reason.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import KafkaError, Message

from services.common.errors import RetriableError
from services.common.kafka import make_producer, produce_all, produce_in_transaction
from services.common.records import OutRecord, header_value
from services.common.scan import Offsets, end_offsets, offsets_at, reader, scan
from services.common.settings import KafkaSettings
from services.common.tenants import tenant_of_key
from services.common.topics import INPUTS
from services.ops.times import to_ms

log = logging.getLogger(__name__)

STAGE_INPUTS = INPUTS
REPLAY_HEADER = "replay"

Progress = Callable[[int, int], None]


@dataclass
class ReplayReport:
    replay_id: str
    scanned: int = 0
    in_window: int = 0
    replayed: int = 0
    newer_after_window: int = 0
    requeued_live: int = 0
    keys: list[bytes] = field(default_factory=list)

    def summary(self) -> dict[str, int | str]:
        return {
            "replay_id": self.replay_id,
            "scanned": self.scanned,
            "in_window": self.in_window,
            "replayed": self.replayed,
            "newer_after_window": self.newer_after_window,
            "requeued_live": self.requeued_live,
        }


def _headers(msg: Message) -> list[tuple[str, str | bytes | None]]:
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), v) for k, v in pairs if k != REPLAY_HEADER]


def replay(
    kafka: KafkaSettings,
    tenant: str,
    stage: str,
    since: datetime,
    until: datetime | None = None,
    progress: Progress | None = None,
) -> ReplayReport:
    """Append tenant's last version per product of [since, until) to the stage's input."""
    topic = kafka.topic(STAGE_INPUTS[stage])
    report = ReplayReport(replay_id=uuid.uuid4().hex[:12])
    consumer = reader(kafka)
    try:
        start = offsets_at(consumer, topic, to_ms(since))
        now = end_offsets(consumer, topic)
        end = offsets_at(consumer, topic, to_ms(until)) if until is not None else now
        total = sum(max(0, end[p] - start.get(p, 0)) for p in end)
        latest: dict[bytes, Message] = {}
        for msg in scan(consumer, topic, start=start, end=end):
            report.scanned += 1
            if progress is not None and report.scanned % 500 == 0:
                progress(report.scanned, total)
            key = msg.key()
            if key is not None and tenant_of_key(key) == tenant:
                report.in_window += 1
                latest[key] = msg
    finally:
        consumer.close()
    if until is not None and latest:
        newer = _keys_after(kafka, topic, end, now, set(latest))
        report.newer_after_window = len(newer)
        for key in newer:
            del latest[key]
    chosen = sorted(latest.values(), key=lambda m: (m.partition() or 0, m.offset() or 0))
    records = [
        OutRecord(
            topic,
            m.key(),
            m.value(),
            [*_headers(m), (REPLAY_HEADER, report.replay_id)],
        )
        for m in chosen
    ]
    written_end = _write(kafka, records, report)
    report.keys = [m.key() or b"" for m in chosen]
    report.requeued_live = _requeue_live(kafka, topic, now, written_end, report)
    if progress is not None:
        progress(total, total)
    log.info("replay %s of tenant %s (%s): %s", report.replay_id, tenant, stage, report.summary())
    return report


def _keys_after(
    kafka: KafkaSettings, topic: str, start: Offsets, end: Offsets, keys: set[bytes]
) -> set[bytes]:
    consumer = reader(kafka)
    try:
        return {m.key() or b"" for m in scan(consumer, topic, start=start, end=end)} & keys
    finally:
        consumer.close()


def _write(kafka: KafkaSettings, records: list[OutRecord], report: ReplayReport) -> Offsets:
    """Produce ``records`` in transactions; the end offsets once they are in."""
    producer = make_producer(
        kafka, transactional_id=f"{kafka.topic_prefix}siesa-sync-replay-{report.replay_id}"
    )
    step = 2000
    for first in range(0, len(records), step):
        produce_in_transaction(producer, records[first : first + step])
        report.replayed += len(records[first : first + step])
    consumer = reader(kafka)
    try:
        return end_offsets(consumer, records[0].topic) if records else {}
    finally:
        consumer.close()


def _requeue_live(
    kafka: KafkaSettings, topic: str, scanned_to: Offsets, written_to: Offsets, report: ReplayReport
) -> int:
    """Live records of replayed products that landed between the scan and the replay's
    own records are appended again, so the newest version is the last one."""
    if not report.keys:
        return 0
    keys = set(report.keys)
    last_live: dict[bytes, Message] = {}
    ours: dict[bytes, int] = {}
    consumer = reader(kafka)
    try:
        for msg in scan(consumer, topic, start=scanned_to, end=written_to):
            key = msg.key() or b""
            if key not in keys:
                continue
            if header_value(msg, REPLAY_HEADER) == report.replay_id:
                ours[key] = msg.offset() or 0
            else:
                last_live[key] = msg
    finally:
        consumer.close()
    late = [m for k, m in last_live.items() if (m.offset() or 0) < ours.get(k, -1)]
    if late:
        records = [OutRecord(topic, m.key(), m.value(), _headers(m)) for m in late]
        producer = make_producer(kafka)
        failed: list[KafkaError] = []
        produce_all(producer, records, lambda err, _msg: failed.append(err) if err else None)
        producer.flush(30)
        if failed:
            raise RetriableError(f"could not requeue {len(failed)} live records: {failed[0]}")
    return len(late)
