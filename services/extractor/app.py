"""Wiring of the extractor instance: it joins the extractors' consumer group on
`sync.tenants.v1` (services/extractor/ownership.py), polls the tenants of the partitions
the group gives it (services/extractor/fleet.py, on the scheduler), commits every
tenant's batches through one transactional producer fenced by its group membership
(services/extractor/commit.py), and reads every operator command
(services/extractor/commands.py).

Threads: the scheduler's (on this thread's `run`), one for the group and the tenants
topic, one for commands, one committing. Any FatalError stops the instance (exit 1)
rather than leave tenants silently unpolled.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from confluent_kafka import Producer

from services.common import health, topics
from services.common.alerts import Alerter
from services.common.errors import ConfigError, FatalError, RetriableError
from services.common.kafka import make_producer
from services.common.secrets import secrets_in
from services.common.serde import default_serde
from services.common.service import connect, run_service
from services.common.settings import KafkaSettings
from services.common.sizes import max_record_bytes
from services.common.stopper import Stopper
from services.common.tenants import enabled, load_tenants
from services.extractor import commands
from services.extractor.commands import Commands
from services.extractor.commit import Transactions
from services.extractor.fleet import Fleet
from services.extractor.ownership import Ownership
from services.extractor.schedule import Scheduler
from services.extractor.settings import ExtractorSettings

log = logging.getLogger(__name__)

# Well under 30 s: a killed instance's open transaction is aborted by the coordinator
# this long after it began (plus its check interval), and read_committed readers (the
# transformer, the next owner's restore) wait no longer than that.
TRANSACTION_TIMEOUT_MS = 10_000


def instance_id(settings: ExtractorSettings) -> str:
    return settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"


def transactional_id(kafka: KafkaSettings, instance: str) -> str:
    return f"{kafka.topic_prefix}siesa-sync-extractor-{instance}"


def producer_factory(kafka: KafkaSettings, instance: str) -> Callable[[], Producer]:
    def new_producer() -> Producer:
        return make_producer(
            kafka,
            transactional_id=transactional_id(kafka, instance),
            # A scan produces in bursts of thousands: fewer, fuller requests to the broker.
            **{
                "linger.ms": 20,
                "batch.size": 1_000_000,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            },
        )

    return new_producer


def start(settings: ExtractorSettings, stopper: Stopper) -> None:
    file_tenants = {
        t.id: t for t in enabled(load_tenants(settings.tenants_file, resolve=settings.tenant_parts))
    }
    serde = default_serde()
    instance = instance_id(settings)
    kafka = settings.kafka.for_client(f"extractor-{instance}")
    alerter = Alerter(
        settings.alert_webhook_url,
        "extractor",
        secrets=[s.get() for t in file_tenants.values() for _, s in secrets_in(t.source)],
    )
    if not connect(kafka, stopper, alerter):  # Kafka refusing the extractor alerts too
        return
    failures: list[str] = []

    def fatal(exc: FatalError) -> None:
        failures.append(exc.message)
        stopper.stop()

    # Made before anything is read back: it fences (aborts) what a previous instance of
    # the same id left open.
    new_producer = producer_factory(kafka, instance)
    transactions = Transactions(new_producer(), new_producer=new_producer, on_fatal=fatal)
    scheduler = Scheduler(settings.workers, stopper)
    recent = Commands(settings.command_max_age_s)
    try:
        max_bytes = max_record_bytes(kafka, [kafka.topic(topics.RAW), kafka.topic(topics.DLQ)])
        fleet = Fleet(
            settings=settings,
            kafka=kafka,
            serde=serde,
            scheduler=scheduler,
            transactions=transactions,
            commands=recent,
            stopper=stopper,
            alerter=alerter,
            max_bytes=max_bytes,
        )
        ownership = Ownership(
            kafka,
            fleet,
            stopper,
            file_tenants=file_tenants,
            base_dir=settings.tenants_file.parent,
            resolve=settings.tenant_parts,
        )
    except RetriableError as exc:  # e.g. the topics were never created
        transactions.close()
        raise FatalError(f"cannot start the extractor: {exc.message}") from exc
    if not file_tenants and not ownership.from_topic:
        transactions.close()
        raise ConfigError(f"{settings.tenants_file}: no enabled tenant")
    transactions.fence = ownership  # every transaction from now on: KIP-447

    def guarded(name: str, target: Callable[..., None], *args: object) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)
            except FatalError as exc:
                fatal(exc)

        thread = threading.Thread(target=body, name=name)
        thread.start()
        return thread

    threads = [
        guarded("commands", commands.listen, kafka, serde, recent, stopper),
        guarded("tenants", ownership.run),
    ]
    health.current().set_ready()  # in the group; tenants start as partitions come
    log.info(
        "extractor %s: in group, transactional id %s", instance, transactional_id(kafka, instance)
    )
    try:
        scheduler.run()
    except FatalError as exc:
        failures.append(exc.message)
        stopper.stop()
    for thread in threads:
        thread.join()
    transactions.close()
    if failures:
        raise FatalError("; ".join(failures))


def main() -> None:
    run_service("extractor", ExtractorSettings, start)
