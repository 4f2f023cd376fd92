"""`siesa-sync tenants apply|list`: make `sync.tenants.v1` hold a tenants file's tenants,
and show what it holds (services/common/tenant_feed.py, tenant_book.py).

`apply` checks the whole file first (every problem at once; nothing is published on an
error), reads what the topic holds (committed, to its end), and publishes only what
differs: each new or changed entry and a removal record for each applied tenant gone
from the file, each on its tenant's partition (`tenant_feed.partition_of`), waiting
until the broker has them all. Entries are published as the file writes them: secrets
stay references (`{env: VAR}`, `{file: path}`), resolved by each service where it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common import tenant_feed, topics
from services.common.errors import ConfigError, SyncError
from services.common.kafka import make_producer
from services.common.scan import partitions, reader
from services.common.settings import KafkaSettings
from services.common.tenant_book import read_entries

ADDED, CHANGED, UNCHANGED, REMOVED = "added", "changed", "unchanged", "removed"


@dataclass(frozen=True)
class Change:
    tenant: str
    change: str  # added | changed | unchanged | removed
    partition: int
    entry: dict[str, Any] | None  # what is published (None: a removal, or nothing)


@dataclass(frozen=True)
class Plan:
    changes: list[Change]

    def to_publish(self) -> list[Change]:
        return [c for c in self.changes if c.change != UNCHANGED]

    def summary(self) -> dict[str, int]:
        kinds = (ADDED, CHANGED, UNCHANGED, REMOVED)
        return {kind: sum(c.change == kind for c in self.changes) for kind in kinds}


def topic_partitions(kafka: KafkaSettings) -> int:
    consumer = reader(kafka)
    try:
        return len(partitions(consumer, kafka.topic(topics.TENANTS)))
    finally:
        consumer.close()


def plan(kafka: KafkaSettings, path: Path) -> Plan:
    """What applying `path` changes. ConfigError (every problem of the file) first."""
    entries = tenant_feed.file_entries(path)
    applied, unreadable = read_entries(kafka)
    count = topic_partitions(kafka)
    # A tenant whose latest record is not ours is re-published (or removed) for sure.
    held: dict[str, dict[str, Any] | None] = {**applied, **{t: {} for t in unreadable}}
    publish = tenant_feed.changes(entries, held)
    out: list[Change] = []
    for entry in entries:
        tenant = str(entry["id"])
        if tenant not in publish:
            kind = UNCHANGED
        else:
            kind = ADDED if held.get(tenant) is None else CHANGED
        out.append(Change(tenant, kind, tenant_feed.partition_of(tenant, count), entry))
    for tenant, gone in publish.items():
        if gone is None:
            out.append(Change(tenant, REMOVED, tenant_feed.partition_of(tenant, count), None))
    return Plan(sorted(out, key=lambda c: c.tenant))


def publish(kafka: KafkaSettings, changes: list[Change], timeout: float = 30.0) -> None:
    """Each change on its tenant's partition, acknowledged by the broker before this
    returns (SyncError otherwise)."""
    if not changes:
        return
    producer = make_producer(kafka)
    failures: list[str] = []
    for change in changes:
        producer.produce(
            kafka.topic(topics.TENANTS),
            key=change.tenant.encode(),
            value=tenant_feed.encode(change.entry),
            partition=change.partition,
            on_delivery=lambda err, _msg: failures.append(err.str()) if err else None,
        )
    if producer.flush(timeout) > 0:
        raise SyncError(f"the broker did not take the tenants in {timeout:.0f} s")
    if failures:
        raise SyncError(f"the tenants were not all delivered: {failures[0]}")


def listed(kafka: KafkaSettings) -> tuple[list[dict[str, Any]], list[str]]:
    """What is applied, one row per tenant (removals left out): id, source type and mode,
    target type, enabled; no secret (they are references, and are not shown either).
    Also the tenants whose record does not parse (shown as such, never hidden)."""
    applied, unreadable = read_entries(kafka)
    rows = []
    for tenant, entry in sorted(applied.items()):
        if entry is None:
            continue
        try:
            parsed = tenant_feed.tenants_of({tenant: entry}, base_dir=Path.cwd())[tenant]
        except ConfigError:
            unreadable.append(tenant)
            continue
        rows.append(
            {
                "tenant": tenant,
                "source": parsed.source.type,
                "mode": str(parsed.source.effective_mode),
                "target": parsed.target.type,
                "enabled": parsed.enabled,
            }
        )
    return rows, sorted(unreadable)
