"""Operator commands for the extractor: `SyncCommand` records on `sync.commands.v1`.

The listener hands each command to its tenant's poller (which applies it between scans)
and commits the command's offset; a command for a tenant this process does not poll, or
older than ``command_max_age_s`` when first read, is logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from confluent_kafka import KafkaError

from services.common import topics
from services.common.errors import FatalError
from services.common.kafka import make_consumer
from services.common.offsets import commit_end
from services.common.serde import DecodeError, Serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.extractor.poller import TenantPoller

log = logging.getLogger(__name__)


def commands_group(kafka: KafkaSettings) -> str:
    return f"{kafka.topic_prefix}siesa-sync-extractor-commands"


def listen(
    kafka: KafkaSettings,
    serde: Serde,
    pollers: Mapping[str, TenantPoller],
    stopper: Stopper,
    max_age_s: float,
) -> None:
    consumer = make_consumer(kafka, group_id=commands_group(kafka))
    consumer.subscribe([kafka.topic(topics.COMMANDS)])
    try:
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
            _dispatch(serde, msg.value(), pollers, max_age_s)
            consumer.commit(message=msg, asynchronous=False)
    finally:
        consumer.close()


def _dispatch(
    serde: Serde, value: bytes | None, pollers: Mapping[str, TenantPoller], max_age_s: float
) -> None:
    try:
        command = serde.decode_as("SyncCommand", value)
    except DecodeError as exc:
        log.warning("skipping an unreadable command: %s", exc.message)
        return
    tenant, name = command["tenant"], command["command"]
    requested: datetime = command["requested_at"]
    age = time.time() - requested.replace(tzinfo=requested.tzinfo or UTC).timestamp()
    poller = pollers.get(tenant)
    if poller is None:
        log.warning("skipping command %s for tenant %s: not polled here", name, tenant)
    elif age > max_age_s:
        log.warning("skipping command %s for tenant %s: %.0fs old", name, tenant, age)
    else:
        poller.command(name)
