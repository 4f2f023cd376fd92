"""Dead letters: list them, and redrive them to the stage that failed them.

A redrive sends each chosen dead letter's bytes back to its ``source.topic`` with its
``error.attempts``, so a record that fails again comes back to the DLQ one attempt
higher; dead letters at the maximum are not sent. Each one is redriven once: a marker
keyed by its DLQ coordinates goes to the compacted redrive topic in the same
transaction as the resent record, so a second run (or one after a crash) sends nothing
twice. A dead letter whose product has a newer version in its source topic (or among
the chosen) is superseded: resending it would put an old version after a new one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message

from services.common import tracing
from services.common.kafka import make_producer, produce_in_transaction
from services.common.records import OutRecord
from services.common.scan import reader, scan
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.state import read_compacted
from services.common.topics import DLQ, DLQ_REDRIVEN, INPUTS

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 3
REDRIVABLE_STAGES = tuple(INPUTS)


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

    @classmethod
    def of(cls, msg: Message) -> DeadLetter:
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = {
            str(k): (v.decode(errors="replace") if isinstance(v, bytes) else str(v or ""))
            for k, v in pairs
        }
        return cls(msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value(), headers)

    @property
    def marker(self) -> bytes:
        return f"{self.partition}/{self.offset}".encode()

    @property
    def tenant(self) -> str:
        return self.headers.get("tenant", "")

    @property
    def error_class(self) -> str:
        return self.headers.get("error.class", "")

    @property
    def stage(self) -> str:
        return self.headers.get("error.stage", "")

    @property
    def attempts(self) -> int:
        try:
            return int(self.headers.get("error.attempts", "1"))
        except ValueError:
            return 1

    @property
    def source(self) -> tuple[str, int, int]:
        h = self.headers
        try:
            return h.get("source.topic", ""), int(h["source.partition"]), int(h["source.offset"])
        except (KeyError, ValueError):
            return h.get("source.topic", ""), -1, -1

    @property
    def failed_at(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.headers["failed_at"])
        except (KeyError, ValueError):
            return None

    def view(self, serde: Serde) -> dict[str, Any]:
        """JSON-ready: coordinates, key, headers, and the value decoded when it can be."""
        out: dict[str, Any] = {
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "headers": self.headers,
        }
        try:
            schema, record = serde.decode(self.value)
            out["schema"] = schema
            out["value"] = json.loads(json.dumps(record, default=str))
        except Exception as exc:  # noqa: BLE001 - undecodable bytes are shown as such
            out["value"] = None
            out["value_error"] = str(exc)
        return out


@dataclass(frozen=True)
class Filters:
    """Which dead letters: each given field must match; ``only`` names chosen ones by
    their DLQ coordinates (``DeadLetter.marker``: ``partition/offset``)."""

    tenant: str | None = None
    error_class: str | None = None
    since: datetime | None = None
    stage: str | None = None
    until: datetime | None = None
    only: frozenset[str] | None = None

    def match(self, letter: DeadLetter) -> bool:
        if self.tenant is not None and letter.tenant != self.tenant:
            return False
        if self.error_class is not None and letter.error_class != self.error_class:
            return False
        if self.stage is not None and letter.stage != self.stage:
            return False
        if self.only is not None and letter.marker.decode() not in self.only:
            return False
        failed_at = letter.failed_at
        if self.since is not None and (failed_at is None or failed_at < self.since):
            return False
        return self.until is None or (failed_at is not None and failed_at < self.until)

    def describe(self) -> dict[str, Any]:
        """The filter as JSON-ready fields, the unset ones left out."""
        out: dict[str, Any] = {
            "tenant": self.tenant,
            "error_class": self.error_class,
            "stage": self.stage,
            "since": self.since.isoformat(timespec="seconds") if self.since else None,
            "until": self.until.isoformat(timespec="seconds") if self.until else None,
            "only": sorted(self.only) if self.only is not None else None,
        }
        return {k: v for k, v in out.items() if v is not None}


def dead_letters(kafka: KafkaSettings, filters: Filters = Filters()) -> list[DeadLetter]:
    """The dead letters matching ``filters``, in DLQ order per partition."""
    consumer = reader(kafka)
    try:
        letters = [DeadLetter.of(m) for m in scan(consumer, kafka.topic(DLQ))]
    finally:
        consumer.close()
    return sorted((d for d in letters if filters.match(d)), key=lambda d: d.failed_at or UTC_MIN)


UTC_MIN = datetime.min.replace(tzinfo=UTC)


@dataclass
class RedriveReport:
    sent: list[DeadLetter] = field(default_factory=list)
    already: int = 0
    at_max: int = 0
    superseded: int = 0
    not_redrivable: int = 0
    # Dead letters naming a source topic that is not their stage's input: never sent.
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "sent": len(self.sent),
            "already_redriven": self.already,
            "at_max_attempts": self.at_max,
            "superseded": self.superseded,
            "not_redrivable": self.not_redrivable,
            "refused": len(self.refused),
        }


def foreign_source(kafka: KafkaSettings, letter: DeadLetter) -> str | None:
    """Why `letter` must not be sent where its headers say (None if it may): a redrive
    writes only to the pipeline's input of the stage that failed it, whatever a
    header names (anyone who can write the DLQ can write its headers)."""
    topic = letter.source[0]
    expected = kafka.topic(INPUTS[letter.stage])
    if topic == expected:
        return None
    return (
        f"dead letter {kafka.topic(DLQ)}/{letter.partition}/{letter.offset} names "
        f"{topic!r} as its source; a {letter.stage}-stage dead letter goes back only to "
        f"{expected}: refused"
    )


def _newest_source_offsets(
    kafka: KafkaSettings, candidates: list[DeadLetter]
) -> dict[tuple[str, int, bytes | None], int]:
    """For each (source topic, partition, key) of ``candidates``, the newest offset of that
    key from the oldest candidate's offset to the end of that source partition."""
    newest: dict[tuple[str, int, bytes | None], int] = {}
    by_topic: dict[str, dict[int, int]] = {}
    for letter in candidates:
        topic, partition, offset = letter.source
        starts = by_topic.setdefault(topic, {})
        starts[partition] = min(starts.get(partition, offset), offset)
    wanted = {(d.source[0], d.source[1], d.key) for d in candidates}
    for topic, starts in by_topic.items():
        consumer = reader(kafka)
        try:
            for msg in scan(consumer, topic, start=starts, end=None):
                coords = (topic, msg.partition() or 0, msg.key())
                if coords in wanted:
                    newest[coords] = max(newest.get(coords, -1), msg.offset() or 0)
        finally:
            consumer.close()
    return newest


def redrive(
    kafka: KafkaSettings,
    filters: Filters = Filters(),
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    dry_run: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RedriveReport:
    """Send the matching dead letters back to their stages, each once (see module doc)."""
    report = RedriveReport()
    done = read_compacted(kafka, kafka.topic(DLQ_REDRIVEN))
    candidates: list[DeadLetter] = []
    for letter in dead_letters(kafka, filters):
        if letter.marker in done:
            report.already += 1
        elif letter.stage not in REDRIVABLE_STAGES or letter.source[1] < 0:
            report.not_redrivable += 1
        elif (why := foreign_source(kafka, letter)) is not None:
            log.warning(why)
            report.refused.append((letter, why))
        elif letter.attempts >= max_attempts:
            report.at_max += 1
        else:
            candidates.append(letter)
    newest = _newest_source_offsets(kafka, candidates) if candidates else {}
    chosen: dict[tuple[str, bytes | None], DeadLetter] = {}
    superseded: list[DeadLetter] = []
    for letter in candidates:
        topic, partition, offset = letter.source
        if newest.get((topic, partition, letter.key), offset) > offset:
            superseded.append(letter)  # a newer version went through (or failed) since
            continue
        previous = chosen.get((topic, letter.key))
        if previous is not None and previous.source[2] > offset:
            superseded.append(letter)
            continue
        if previous is not None:
            superseded.append(previous)
        chosen[topic, letter.key] = letter
    report.superseded = len(superseded)
    report.sent = list(chosen.values())
    if dry_run or not (report.sent or superseded):
        return report
    _send(kafka, report.sent, superseded, progress)
    return report


def _send(
    kafka: KafkaSettings,
    letters: list[DeadLetter],
    superseded: Iterable[DeadLetter],
    progress: Callable[[int, int], None] | None,
) -> None:
    """The records and their markers, in transactions of up to 1,000 records."""
    producer = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}siesa-sync-dlq-redrive")
    marker_topic = kafka.topic(DLQ_REDRIVEN)
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    dlq_topic = kafka.topic(DLQ)

    def marker(letter: DeadLetter, outcome: str) -> OutRecord:
        value = json.dumps({"outcome": outcome, "at": now}).encode()
        return OutRecord(marker_topic, letter.marker, value)

    def resend(letter: DeadLetter) -> OutRecord:
        # The trace goes on: the stage continues the dead letter's trace id and span.
        headers: list[tuple[str, str | bytes | None]] = [
            ("tenant", letter.tenant),
            (tracing.TRACE_ID, letter.headers.get(tracing.TRACE_ID, "")),
            ("error.attempts", str(letter.attempts)),
            ("redriven.from", f"{dlq_topic}/{letter.partition}/{letter.offset}"),
        ]
        if tracing.TRACEPARENT in letter.headers:  # dead letters of before it had none
            headers.append((tracing.TRACEPARENT, letter.headers[tracing.TRACEPARENT]))
        return OutRecord(letter.source[0], letter.key, letter.value, headers)

    records = [r for d in letters for r in (resend(d), marker(d, "redriven"))]
    records += [marker(d, "superseded") for d in superseded]
    step = 2000
    for start in range(0, len(records), step):
        produce_in_transaction(producer, records[start : start + step])
        if progress is not None:
            progress(min(start + step, len(records)), len(records))
    log.info("redriven %d dead letters", len(letters))
