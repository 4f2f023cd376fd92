"""The audit trail: who did what to which tenant, and when, on `ops.audit.v1`.

Every operator action (resync, pause, resume, replay of a window, dead-letter redrive),
from the console or the CLI, leaves one JSON record per tenant it touched, keyed by the
tenant: ``{"at", "user", "via", "action", "tenant", "detail", "outcome"}``. JSON rather
than Avro: an auditor reads it with any Kafka tool, and nothing in the pipeline
consumes it. No secret is ever part of an action, so none reaches the trail.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.common.errors import RetriableError
from services.common.kafka import make_producer
from services.common.scan import reader, scan
from services.common.settings import KafkaSettings
from services.common.topics import AUDIT

log = logging.getLogger(__name__)

ANY_TENANT = "*"  # the tenant of an action that named none (a redrive of every tenant)


@dataclass(frozen=True)
class Actor:
    """Who acts, and through what: ``via`` is ``cli`` or ``console``."""

    user: str
    via: str


@dataclass(frozen=True)
class Entry:
    at: datetime
    user: str
    via: str
    action: str
    tenant: str
    detail: dict[str, Any]
    outcome: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(timespec="milliseconds"),
            "user": self.user,
            "via": self.via,
            "action": self.action,
            "tenant": self.tenant,
            "detail": self.detail,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        return cls(
            at=datetime.fromisoformat(data["at"]),
            user=str(data.get("user", "")),
            via=str(data.get("via", "")),
            action=str(data.get("action", "")),
            tenant=str(data.get("tenant", "")),
            detail=dict(data.get("detail") or {}),
            outcome=str(data.get("outcome", "")),
        )


def write(
    kafka: KafkaSettings,
    actor: Actor,
    action: str,
    tenants: list[str],
    detail: dict[str, Any],
    outcome: str = "ok",
) -> list[Entry]:
    """One entry per tenant, acknowledged by the broker before this returns."""
    now = datetime.now(UTC)
    entries = [
        Entry(now, actor.user, actor.via, action, tenant, detail, outcome)
        for tenant in (tenants or [ANY_TENANT])
    ]
    producer = make_producer(kafka)
    failures: list[str] = []
    for entry in entries:
        producer.produce(
            kafka.topic(AUDIT),
            key=entry.tenant.encode(),
            value=json.dumps(entry.to_json(), default=str).encode(),
            on_delivery=lambda err, _msg: failures.append(err.str()) if err else None,
        )
    if producer.flush(30) > 0 or failures:
        reason = failures[0] if failures else "not acknowledged in 30 s"
        raise RetriableError(f"{action} done, but its audit record was not written: {reason}")
    for entry in entries:
        log.info(
            "audit: %s %s by %s via %s: %s",
            entry.action,
            entry.tenant,
            entry.user,
            entry.via,
            entry.outcome,
            extra={"tenant": entry.tenant, "user": entry.user, "action": entry.action},
        )
    return entries


def read(kafka: KafkaSettings, tenant: str | None = None, limit: int = 200) -> list[Entry]:
    """The newest ``limit`` entries (of ``tenant`` only, if given), newest first."""
    consumer = reader(kafka)
    entries: list[Entry] = []
    try:
        for msg in scan(consumer, kafka.topic(AUDIT)):
            try:
                entry = Entry.from_json(json.loads(msg.value() or b"{}"))
            except (ValueError, KeyError, TypeError):
                log.warning("audit: unreadable record at %d/%d", msg.partition(), msg.offset())
                continue
            if tenant is None or entry.tenant == tenant:
                entries.append(entry)
    finally:
        consumer.close()
    entries.sort(key=lambda e: e.at, reverse=True)
    return entries[:limit]
