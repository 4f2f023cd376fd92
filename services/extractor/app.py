"""Wiring of the extractor: one polling thread per enabled tenant."""

from __future__ import annotations

import logging
import threading

from services.common import topics
from services.common.errors import ConfigError, FatalError
from services.common.kafka import make_producer
from services.common.runloop import Stopper
from services.common.serde import default_serde
from services.common.service import run_service
from services.common.tenants import enabled, load_tenants
from services.extractor.poller import TenantPoller
from services.extractor.settings import ExtractorSettings
from services.extractor.siesa import SiesaClient

log = logging.getLogger(__name__)


def start(settings: ExtractorSettings, stopper: Stopper) -> None:
    tenants = enabled(load_tenants(settings.tenants_file))
    if not tenants:
        raise ConfigError(f"{settings.tenants_file}: no enabled tenant")
    serde = default_serde()
    kafka = settings.kafka
    failures: list[str] = []

    def guarded(poller: TenantPoller) -> None:
        # A poller rides out its tenant's failures; it ends by itself only on a fatal
        # error (e.g. its producer fenced): then stop the whole process (exit 1) rather
        # than leave that tenant silently unpolled.
        try:
            poller.run(stopper)
        except FatalError as exc:
            failures.append(f"tenant {poller.tenant.id}: {exc.message}")
            stopper.stop()

    threads = []
    for tenant in tenants:
        poller = TenantPoller(
            tenant=tenant,
            client=SiesaClient(tenant.siesa, tenant=tenant.id),
            # One transactional producer per tenant: a second extractor for the same
            # tenant fences the first, so two never interleave a tenant's scans.
            producer=make_producer(
                kafka, transactional_id=f"{kafka.topic_prefix}siesa-sync-extractor-{tenant.id}"
            ),
            serde=serde,
            raw_topic=kafka.topic(topics.RAW),
            dlq_topic=kafka.topic(topics.DLQ),
            max_field_length=settings.max_field_length,
            max_backoff_s=settings.max_backoff_s,
        )
        thread = threading.Thread(target=guarded, args=(poller,), name=f"poll-{tenant.id}")
        thread.start()
        threads.append(thread)
    log.info("extractor polling %d tenants: %s", len(tenants), ", ".join(t.id for t in tenants))
    for thread in threads:
        thread.join()
    if failures:
        raise FatalError("; ".join(failures))


def main() -> None:
    run_service("extractor", ExtractorSettings, start)
