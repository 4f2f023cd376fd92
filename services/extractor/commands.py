"""Operator commands for the extractor: `SyncCommand` records on `sync.commands.v1`,
applied by whichever instance owns the tenant, also across a move.

Every instance reads the whole commands topic (assigned, not shared in a group: a group
would split the commands between instances), from ``command_max_age_s`` ago at start.
It remembers each tenant's latest resync and latest pause/resume (two entries a
tenant, at most ``command_max_age_s`` old), whether it owns the tenant or not:
- a command of a tenant it polls is handed to the tenant's poller, applied before its
  next scan;
- when a tenant starts here (assigned, or this instance restarted), what it remembers
  of it is applied: the latest pause/resume (applying a pause twice changes nothing),
  and the latest resync unless the tenant's stored state shows a complete scan that
  started more than `RESYNC_SLACK_S` after the resync was asked for (the owner then
  read the command before that scan, which re-emitted everything): a resync issued
  during a move is applied by the new owner, one applied already is not repeated.
Commands older than ``command_max_age_s`` are ignored. The instances commit their
positions to `<prefix>siesa-sync-extractor-commands` (no members: each commits its own
position, so lag tools show the commands read).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from confluent_kafka import KafkaError, TopicPartition

from services.common import topics
from services.common.errors import FatalError
from services.common.kafka import make_consumer
from services.common.offsets import commit_end
from services.common.scan import offsets_at
from services.common.serde import DecodeError, Serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper

log = logging.getLogger(__name__)

# A scan starting this long after a resync was asked for saw it (commands are read
# within a second): the resync was done if that scan completed.
RESYNC_SLACK_S = 10.0


def commands_group(kafka: KafkaSettings) -> str:
    return f"{kafka.topic_prefix}siesa-sync-extractor-commands"


class Tenants(Protocol):
    """The tenants polled here (services/extractor/fleet.py)."""

    def state_of(self, tenant: str) -> dict[str, Any] | None:
        """The tenant's state as committed, None when it is not polled here."""

    def command(self, tenant: str, name: str) -> None:
        """Hand `name` to the tenant's poller."""


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return value.replace(tzinfo=value.tzinfo or UTC).timestamp()


class Commands:
    """What this instance knows of the recent commands (see the module's doc). `lock`
    is held by whoever starts or stops a tenant, so a command is never handed both
    live and at the tenant's start."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self.lock = threading.Lock()
        self._resync: dict[str, float] = {}
        self._toggle: dict[str, tuple[float, str]] = {}
        self.tenants: Tenants | None = None

    def dispatch(self, tenant: str, name: str, at: float) -> None:
        """A command read: remembered, and handed over if its tenant is polled here."""
        age = time.time() - at
        if age > self.max_age_s:
            log.warning("skipping command %s for tenant %s: %.0fs old", name, tenant, age)
            return
        with self.lock:
            if name == "resync":
                self._resync[tenant] = max(at, self._resync.get(tenant, at))
            elif tenant not in self._toggle or self._toggle[tenant][0] <= at:
                self._toggle[tenant] = (at, name)
            else:
                return  # a newer pause/resume was read already
            tenants = self.tenants
            state = tenants.state_of(tenant) if tenants is not None else None
            if tenants is None or state is None:
                log.info(
                    "command %s for tenant %s: not polled here; kept for when it is",
                    name,
                    tenant,
                    extra={"tenant": tenant},
                )
            elif name != "resync" or self._resync_due(at, state):
                tenants.command(tenant, name)

    def started(self, tenant: str) -> None:
        """The tenant starts here (call with `lock` held): hand it what is due."""
        state = self.tenants.state_of(tenant) if self.tenants is not None else None
        if state is None or self.tenants is None:
            return
        oldest = time.time() - self.max_age_s
        toggle = self._toggle.get(tenant)
        if toggle is not None and toggle[0] >= oldest:
            self.tenants.command(tenant, toggle[1])
        resync = self._resync.get(tenant)
        if resync is not None and resync >= oldest and self._resync_due(resync, state):
            log.info("tenant %s: applying a resync asked for before it moved here", tenant)
            self.tenants.command(tenant, "resync")

    @staticmethod
    def _resync_due(at: float, state: dict[str, Any]) -> bool:
        began = _ts(state.get("last_scan_started_at"))
        ended = _ts(state.get("last_scan_ended_at"))
        done = began is not None and ended is not None and ended >= began
        return not (done and began is not None and began > at + RESYNC_SLACK_S)


def listen(kafka: KafkaSettings, serde: Serde, commands: Commands, stopper: Stopper) -> None:
    """Read the commands topic from ``max_age_s`` ago until the stop."""
    topic = kafka.topic(topics.COMMANDS)
    consumer = make_consumer(kafka, group_id=commands_group(kafka))
    try:
        since = offsets_at(consumer, topic, int((time.time() - commands.max_age_s) * 1000))
        consumer.assign([TopicPartition(topic, p, o) for p, o in sorted(since.items())])
        while not stopper.stopped:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise FatalError(f"commands consumer failed: {error.str()}")
                if error.code() == KafkaError._PARTITION_EOF:
                    commit_end(consumer, msg)  # past any transaction markers: lag 0
                else:
                    log.warning("commands consumer: %s", error.str())
                continue
            _dispatch(serde, msg.value(), commands)
    finally:
        consumer.close()


def _dispatch(serde: Serde, value: bytes | None, commands: Commands) -> None:
    try:
        command = serde.decode_as("SyncCommand", value)
    except DecodeError as exc:
        log.warning("skipping an unreadable command: %s", exc.message)
        return
    requested: datetime = command["requested_at"]
    at = requested.replace(tzinfo=requested.tzinfo or UTC).timestamp()
    commands.dispatch(command["tenant"], command["command"], at)
