"""Wiring of the extractor: state restored, every enabled tenant polled (each reading
its tenant's source) on the Scheduler's workers, one thread listening for operator
commands."""

from __future__ import annotations

import logging
import os
import socket
import threading
from functools import partial

from services.common import health, topics
from services.common.alerts import Alerter
from services.common.errors import ConfigError, FatalError, RetriableError
from services.common.kafka import make_producer
from services.common.secrets import secrets_in
from services.common.serde import default_serde
from services.common.service import connect, run_service
from services.common.sizes import max_record_bytes
from services.common.stopper import Stopper
from services.common.tenants import enabled, load_tenants
from services.extractor import commands
from services.extractor.memory import restore
from services.extractor.poller import TenantPoller
from services.extractor.scan import Scanner
from services.extractor.schedule import Scheduler
from services.extractor.settings import ExtractorSettings
from services.sources import open_source

log = logging.getLogger(__name__)


def start(settings: ExtractorSettings, stopper: Stopper) -> None:
    tenants = enabled(load_tenants(settings.tenants_file, resolve=settings.tenant_parts))
    if not tenants:
        raise ConfigError(f"{settings.tenants_file}: no enabled tenant")
    serde = default_serde()
    kafka = settings.kafka.for_client(f"extractor-{socket.gethostname()}-{os.getpid()}")
    alerter = Alerter(
        settings.alert_webhook_url,
        "extractor",
        secrets=[s.get() for t in tenants for _, s in secrets_in(t.source)],
    )
    if not connect(kafka, stopper, alerter):  # Kafka refusing the extractor alerts too
        return
    failures: list[str] = []
    # One transactional producer per tenant: a second extractor for the same tenant
    # fences the first (and aborts what a killed one left open) before state is read.
    producers = {
        tenant.id: make_producer(
            kafka,
            transactional_id=f"{kafka.topic_prefix}siesa-sync-extractor-{tenant.id}",
            # A scan produces in bursts of thousands: fewer, fuller requests to the broker.
            **{"linger.ms": 20, "batch.size": 1_000_000},
        )
        for tenant in tenants
    }
    try:
        memories = restore(kafka, serde, [t.id for t in tenants])
    except RetriableError as exc:  # e.g. the topics were never created
        raise FatalError(f"cannot restore the extractor's state: {exc.message}") from exc
    max_bytes = max_record_bytes(kafka, [kafka.topic(topics.RAW), kafka.topic(topics.DLQ)])
    scheduler = Scheduler(settings.workers, stopper)
    pollers = {
        tenant.id: TenantPoller(
            Scanner(
                tenant=tenant,
                source=open_source(tenant.id, tenant.source, stopper=stopper),
                producer=producers[tenant.id],
                serde=serde,
                kafka=kafka,
                memory=memories[tenant.id],
                max_field_length=settings.max_field_length,
                commit_rows=settings.commit_rows,
                commit_interval_s=settings.commit_interval_s,
                max_bytes=max_bytes,
            ),
            max_backoff_s=settings.max_backoff_s,
            alerter=alerter,
            on_command=partial(scheduler.commanded, tenant.id),
        )
        for tenant in tenants
    }

    def guarded(name: str, target: object, *args: object) -> threading.Thread:
        # A poller rides out its tenant's failures; it ends by itself only on a fatal
        # error (e.g. its producer fenced): then stop the whole process (exit 1) rather
        # than leave that tenant silently unpolled.
        def body() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except FatalError as exc:
                failures.append(f"{name}: {exc.message}")
                stopper.stop()

        thread = threading.Thread(target=body, name=name)
        thread.start()
        return thread

    for poller in pollers.values():
        scheduler.start(poller)
    health.current().set_ready()  # state restored, producers ready, tenants polling
    listener = guarded(
        "commands", commands.listen, kafka, serde, pollers, stopper, settings.command_max_age_s
    )
    log.info(
        "extractor polling %d tenants: %s",
        len(tenants),
        ", ".join(f"{t.id} ({t.source.type}, {t.source.effective_mode})" for t in tenants),
    )
    try:
        scheduler.run()  # until stopped; a tenant's fatal error stops everything
    except FatalError as exc:
        failures.append(exc.message)
    listener.join()
    for producer in producers.values():
        producer.flush(10)
    if failures:
        raise FatalError("; ".join(failures))


def main() -> None:
    run_service("extractor", ExtractorSettings, start)
