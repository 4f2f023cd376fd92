"""What the topics say a tenant did in the last hour, minute by minute: rows the
extractor emitted (raw topic), products the transformer mapped (canonical topic),
records dead-lettered (DLQ), and the scans ("syncs") that emitted them, by sync id.

Read from the topics' own record timestamps, from `offsets_for_times(now - 1 h)` to
the end: no state of its own, the same for every console replica.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from services.common.records import header_value
from services.common.scan import offsets_at, reader, scan
from services.common.settings import KafkaSettings
from services.common.tenants import tenant_of_key
from services.common.topics import CANONICAL, DLQ, RAW
from services.ops.times import to_ms

STREAMS = {"extracted": RAW, "transformed": CANONICAL, "dead_lettered": DLQ}


@dataclass
class SyncRun:
    sync_id: str
    first: datetime
    last: datetime
    records: int = 0


@dataclass
class Activity:
    since: datetime
    minutes: int
    # stream -> tenant -> minute index (0 = the oldest) -> records
    counts: dict[str, dict[str, Counter[int]]] = field(default_factory=dict)
    syncs: dict[str, dict[str, SyncRun]] = field(default_factory=dict)  # tenant -> id -> run

    def per_minute(self, stream: str, tenant: str) -> list[int]:
        counts = self.counts.get(stream, {}).get(tenant, Counter())
        return [counts.get(i, 0) for i in range(self.minutes)]

    def recent_syncs(self, tenant: str, limit: int = 10) -> list[SyncRun]:
        runs = sorted(self.syncs.get(tenant, {}).values(), key=lambda r: r.last, reverse=True)
        return runs[:limit]


def read_activity(kafka: KafkaSettings, minutes: int = 60, now: datetime | None = None) -> Activity:
    now = now or datetime.now(UTC)
    since = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    activity = Activity(since=since, minutes=minutes + 1)
    for stream, name in STREAMS.items():
        topic = kafka.topic(name)
        by_tenant = activity.counts.setdefault(stream, {})
        consumer = reader(kafka)
        try:
            start = offsets_at(consumer, topic, to_ms(since))
            for msg in scan(consumer, topic, start=start):
                _kind, stamp_ms = msg.timestamp()
                at = datetime.fromtimestamp(stamp_ms / 1000, UTC)
                minute = int((at - since).total_seconds() // 60)
                if not 0 <= minute < activity.minutes:
                    continue
                if stream == "dead_lettered":
                    tenant = header_value(msg, "tenant") or tenant_of_key(msg.key()) or ""
                else:
                    tenant = tenant_of_key(msg.key()) or ""
                by_tenant.setdefault(tenant, Counter())[minute] += 1
                if stream == "extracted":
                    _count_sync(activity, tenant, header_value(msg, "sync_id"), at)
        finally:
            consumer.close()
    return activity


def _count_sync(activity: Activity, tenant: str, sync_id: str | None, at: datetime) -> None:
    if not sync_id:
        return
    runs = activity.syncs.setdefault(tenant, {})
    run = runs.get(sync_id)
    if run is None:
        run = runs[sync_id] = SyncRun(sync_id, at, at)
    run.first, run.last = min(run.first, at), max(run.last, at)
    run.records += 1
