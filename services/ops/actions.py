"""Operator actions, the one way both the CLI and the console act: each does the work
through the tools of this package and writes it to the audit trail (audit.py), with
its outcome, also when it fails. A dry run changes nothing and is not audited.

- `command`: resync, pause or resume, a `SyncCommand` on `sync.commands.v1` for the
  extractor that polls the tenant;
- `redrive`: dead letters back to their stage, each once (dlq.py);
- `replay`: a tenant's window through a stage again (replay.py);
- `apply_tenants`: a tenants file onto `sync.tenants.v1` (tenants.py), audited once
  per tenant added, changed or removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.common import topics
from services.common.errors import SyncError
from services.common.kafka import make_producer
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.ops import audit, dlq
from services.ops import replay as replays
from services.ops import tenants as tenant_ops
from services.ops.audit import Actor

COMMANDS = ("resync", "pause", "resume")

Progress = Callable[[int, int], None]


def send_command(kafka: KafkaSettings, tenant: str, command: str, requested_by: str) -> None:
    """Put one SyncCommand on the commands topic and wait until the broker has it."""
    value = default_serde().encode(
        "SyncCommand",
        {
            "tenant": tenant,
            "command": command,
            "requested_at": datetime.now(UTC),
            "requested_by": requested_by,
        },
    )
    producer = make_producer(kafka)
    failures: list[str] = []
    producer.produce(
        kafka.topic(topics.COMMANDS),
        key=tenant.encode(),
        value=value,
        on_delivery=lambda err, _msg: failures.append(err.str()) if err else None,
    )
    if producer.flush(30) > 0:
        raise SyncError(f"the broker did not take the {command} command in 30 s")
    if failures:
        raise SyncError(f"the {command} command was not delivered: {failures[0]}")


def _audited(
    kafka: KafkaSettings,
    actor: Actor,
    action: str,
    tenants: list[str],
    detail: dict[str, Any],
    work: Callable[[], Any],
) -> Any:
    """Run ``work``; audit it as done, or as failed (then re-raise)."""
    try:
        result = work()
    except SyncError as exc:
        audit.write(kafka, actor, action, tenants, detail, outcome=f"failed: {exc.message}")
        raise
    return result


def command(kafka: KafkaSettings, tenant: str, name: str, actor: Actor) -> None:
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}")
    _audited(
        kafka, actor, name, [tenant], {}, lambda: send_command(kafka, tenant, name, actor.user)
    )
    audit.write(kafka, actor, name, [tenant], {})


def redrive(
    kafka: KafkaSettings,
    filters: dlq.Filters,
    actor: Actor,
    *,
    max_attempts: int = dlq.DEFAULT_MAX_ATTEMPTS,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> dlq.RedriveReport:
    """`dlq.redrive`, audited once per tenant whose dead letters were sent."""

    def work() -> dlq.RedriveReport:
        return dlq.redrive(
            kafka, filters, max_attempts=max_attempts, dry_run=dry_run, progress=progress
        )

    if dry_run:
        return work()
    asked = [filters.tenant] if filters.tenant else []
    detail = filters.describe()
    report: dlq.RedriveReport = _audited(kafka, actor, "dlq-replay", asked, detail, work)
    by_tenant = Counter(letter.tenant for letter in report.sent)
    for tenant in sorted(by_tenant) or asked or [audit.ANY_TENANT]:
        audit.write(
            kafka,
            actor,
            "dlq-replay",
            [tenant],
            {**detail, **report.summary(), "sent": by_tenant.get(tenant, 0)},
        )
    return report


def replay(
    kafka: KafkaSettings,
    tenant: str,
    stage: str,
    since: datetime,
    until: datetime | None,
    actor: Actor,
    progress: Progress | None = None,
) -> replays.ReplayReport:
    detail = {
        "stage": stage,
        "from": since.isoformat(timespec="seconds"),
        "to": until.isoformat(timespec="seconds") if until else None,
    }
    report: replays.ReplayReport = _audited(
        kafka,
        actor,
        "replay",
        [tenant],
        detail,
        lambda: replays.replay(kafka, tenant, stage, since, until, progress=progress),
    )
    audit.write(kafka, actor, "replay", [tenant], {**detail, **report.summary()})
    return report


def apply_tenants(
    kafka: KafkaSettings, path: Path, actor: Actor, *, dry_run: bool = False
) -> tenant_ops.Plan:
    """Make `sync.tenants.v1` hold `path`'s tenants (services/ops/tenants.py); the file is
    checked whole first and nothing is published on an error."""
    plan = tenant_ops.plan(kafka, path)
    if dry_run:
        return plan
    changed = plan.to_publish()
    detail = {"file": str(path)}
    touched = [c.tenant for c in changed]
    _audited(
        kafka, actor, "tenants-apply", touched, detail, lambda: tenant_ops.publish(kafka, changed)
    )
    for kind in (tenant_ops.ADDED, tenant_ops.CHANGED, tenant_ops.REMOVED):
        of_kind = [c.tenant for c in changed if c.change == kind]
        if of_kind:
            audit.write(kafka, actor, "tenants-apply", of_kind, {**detail, "change": kind})
    if not changed:
        audit.write(kafka, actor, "tenants-apply", [], {**detail, **plan.summary()})
    return plan
