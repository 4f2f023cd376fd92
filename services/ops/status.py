"""Per-tenant status: what each writer stored in sync.state.v1, merged, plus what the
topics say now (dead letters, and the records each stage has yet to process).

A tenant whose extractor stored ``paused`` shows ``paused``, whatever its writers
report otherwise (an operator stopped it: that is what to see first), with since when
and by whom: the newest ``pause`` command on sync.commands.v1 (kept 7 days) when there
is one, else the time the extractor stored its paused state and no name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from services.common.errors import SyncError
from services.common.kafka import make_consumer
from services.common.records import header_value
from services.common.scan import end_offsets, reader, scan
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.state import read_compacted, read_states
from services.common.tenant_book import applied_tenants
from services.common.tenants import load_tenants, tenant_of_key
from services.common.topics import CANONICAL, COMMANDS, DLQ, DLQ_REDRIVEN, RAW

SEVERITY = {"idle": 0, "syncing": 1, "degraded": 2, "failed": 3}
SUMMED = ("extracted", "changed", "transformed", "loaded", "failed")


@dataclass(frozen=True)
class Stage:
    name: str
    topic: str  # the stage's input topic (unprefixed)
    group_id: str  # its consumer group (unprefixed)


def configured_tenants(kafka: KafkaSettings, path: Path) -> dict[str, dict[str, Any]]:
    """Tenant id -> {target, enabled} by the services' rule (services/common/tenant_book.py):
    the tenants applied to `sync.tenants.v1` once it holds any record, else the tenants
    file; read as the services read them but without resolving secrets (status needs no
    credentials)."""
    tenants = applied_tenants(kafka, path.parent)
    if tenants is None:
        tenants = load_tenants(path)
    return {t.id: {"target": t.target.type, "enabled": t.enabled} for t in tenants.values()}


def dead_letter_counts(kafka: KafkaSettings) -> tuple[Counter[str], Counter[str]]:
    """Per tenant: dead letters not redriven yet, and all of them."""
    redriven = read_compacted(kafka, kafka.topic(DLQ_REDRIVEN))
    consumer = reader(kafka)
    try:
        open_, total = Counter[str](), Counter[str]()
        for msg in scan(consumer, kafka.topic(DLQ)):
            name = header_value(msg, "tenant") or ""
            total[name] += 1
            if f"{msg.partition()}/{msg.offset()}".encode() not in redriven:
                open_[name] += 1
        return open_, total
    finally:
        consumer.close()


def lag_by_tenant(kafka: KafkaSettings, stage: Stage) -> Counter[str]:
    """Records of each tenant between the stage's committed offsets and the end."""
    topic = kafka.topic(stage.topic)
    group = make_consumer(kafka, group_id=f"{kafka.topic_prefix}{stage.group_id}")
    try:
        ends = end_offsets(group, topic)
        committed = group.committed([TopicPartition(topic, p) for p in ends], timeout=30)
    finally:
        group.close()
    # A group that never committed has everything still to do.
    start = {tp.partition: max(tp.offset, 0) for tp in committed}
    consumer = reader(kafka)
    try:
        counts: Counter[str] = Counter()
        for msg in scan(consumer, topic, start=start, end=ends):
            counts[tenant_of_key(msg.key()) or ""] += 1
        return counts
    finally:
        consumer.close()


def last_pauses(kafka: KafkaSettings, serde: Serde) -> dict[str, dict[str, Any]]:
    """Per tenant, the newest readable ``pause`` command: requested_at, requested_by."""
    consumer = reader(kafka)
    found: dict[str, dict[str, Any]] = {}
    try:
        for msg in scan(consumer, kafka.topic(COMMANDS)):
            try:
                command = serde.decode_as("SyncCommand", msg.value())
            except SyncError:
                continue  # the extractor skips it too
            if command["command"] == "pause":
                newest = found.get(command["tenant"])
                if newest is None or command["requested_at"] >= newest["requested_at"]:
                    found[command["tenant"]] = command
    finally:
        consumer.close()
    return found


def mark_paused(
    row: dict[str, Any], extractor: dict[str, Any], pause: dict[str, Any] | None
) -> None:
    """Show an extractor-paused tenant as paused, since when and by whom where known."""
    row["paused"] = True
    row["status"] = "paused"
    stored_at = extractor["updated_at"]
    if pause is not None and pause["requested_at"] <= stored_at:
        row["paused_since"] = pause["requested_at"]
        row["paused_by"] = pause.get("requested_by")
    else:
        row["paused_since"] = stored_at
        row["paused_by"] = None


def merge(tenant: str, states: list[dict[str, Any]]) -> dict[str, Any]:
    """One tenant's writers' states as one row: worst status, sums, latest times."""
    row: dict[str, Any] = {
        "tenant": tenant,
        "status": "idle",
        "writers": [],
        "paused": False,
        "paused_since": None,
        "paused_by": None,
    }
    for field in SUMMED:
        row[field] = sum(int(s.get(field) or 0) for s in states)
    for field in ("last_extract_at", "last_load_at"):
        times = [s[field] for s in states if s.get(field) is not None]
        row[field] = max(times) if times else None
    row["last_error"] = None
    newest_error = None
    for state in states:
        row["writers"].append(state["writer"])
        if SEVERITY.get(state["status"], 0) > SEVERITY[row["status"]]:
            row["status"] = state["status"]
        if state.get("last_error") and (newest_error is None or state["updated_at"] > newest_error):
            newest_error = state["updated_at"]
            row["last_error"] = state["last_error"]
        if state["writer"] == "extractor" and state.get("cursor"):
            row["cursor"] = state["cursor"]
    return row


def tenant_status(
    kafka: KafkaSettings,
    serde: Serde,
    tenants_file: Path,
    stages: list[Stage],
    only: str | None = None,
) -> list[dict[str, Any]]:
    """One row per tenant (configured or seen in the state topic), sorted by tenant."""
    configured = configured_tenants(kafka, tenants_file)
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for state in read_states(kafka, serde):
        by_tenant.setdefault(state["tenant"], []).append(state)
    dead, dead_total = dead_letter_counts(kafka)
    pauses = last_pauses(kafka, serde)
    lags = {stage.name: lag_by_tenant(kafka, stage) for stage in stages}
    rows = []
    for tenant in sorted(set(configured) | set(by_tenant)):
        if only is not None and tenant != only:
            continue
        row = merge(tenant, by_tenant.get(tenant, []))
        extractor = next((s for s in by_tenant.get(tenant, []) if s["writer"] == "extractor"), None)
        if extractor is not None and extractor.get("paused"):
            mark_paused(row, extractor, pauses.get(tenant))
        config = configured.get(tenant, {})
        row["target"] = config.get("target")
        row["enabled"] = config.get("enabled", False)
        if not config:
            row["status"] = f"{row['status']} (not configured)"
        row["dead_lettered"] = dead.get(tenant, 0)  # still to fix and redrive
        row["dead_lettered_total"] = dead_total.get(tenant, 0)
        row["lag_by_stage"] = {name: lag.get(tenant, 0) for name, lag in lags.items()}
        row["lag"] = sum(row["lag_by_stage"].values())
        rows.append(row)
    return rows


def default_stages(transformer_group: str, loader_group: str) -> list[Stage]:
    return [Stage("transform", RAW, transformer_group), Stage("load", CANONICAL, loader_group)]
