"""Wiring of the loader: canonical products → each tenant's target, at least once."""

from __future__ import annotations

import logging
import os
import socket

from confluent_kafka import Consumer, Message

from services.common import topics
from services.common.alerts import Alerter
from services.common.kafka import make_consumer, make_producer
from services.common.runloop import BatchHandler, BatchResult, RunLoop
from services.common.serde import default_serde
from services.common.service import connect, run_service
from services.common.settings import KafkaSettings
from services.common.sizes import max_record_bytes
from services.common.state import read_states
from services.common.stopper import Stopper
from services.common.tenant_book import CatchUp, TenantBook
from services.common.tenants import enabled, load_tenants
from services.loader.service import Loader
from services.loader.settings import LoaderSettings

log = logging.getLogger(__name__)

# How long a poll waits for records when there are none. Short: while tenants' calls
# drain (and no record comes), every poll is a pause in which no new call is started.
POLL_TIMEOUT_S = 0.1


def start(settings: LoaderSettings, stopper: Stopper) -> None:
    # Every target's settings are checked by their plugin's model as the file loads.
    file_tenants = load_tenants(settings.tenants_file, resolve=settings.tenant_parts)
    tenants = {t.id: t for t in enabled(file_tenants)}
    serde = default_serde()
    writer = f"loader-{settings.instance_id or f'{socket.gethostname()}-{os.getpid()}'}"
    kafka = settings.kafka.for_client(writer)
    group_id = f"{kafka.topic_prefix}{settings.group_id}"
    poll_interval_ms = int(settings.max_poll_interval_s * 1000)
    consumer = make_consumer(
        kafka, group_id=group_id, stage=True, **{"max.poll.interval.ms": poll_interval_ms}
    )
    alerter = Alerter(settings.alert_webhook_url, "loader")
    loader = Loader(
        serde=serde,
        tenants=tenants,
        max_in_flight=settings.max_in_flight,
        workers=settings.workers,
        kafka=kafka,
        writer=writer,
        max_parked=settings.max_parked,
        max_parked_per_tenant=settings.max_parked_per_tenant,
        step_wait_s=settings.step_wait_s,
        breaker_max_cooldown_s=settings.breaker_max_cooldown_s,
        alerter=alerter,
        seek=consumer.seek,
    )
    if not connect(kafka, stopper, alerter):
        loader.close()
        consumer.close()
        return
    # The tenants file's until a first `tenants apply`, then sync.tenants.v1's, live.
    book = TenantBook.of_service(kafka, file_tenants, settings, on_change=loader.set_tenants)
    try:
        book.start()
    except BaseException:
        loader.close()
        consumer.close()
        raise
    if book.current() != tenants:
        tenants = book.current()
        loader.set_tenants(tenants)
    # This writer's counts so far (a restarted replica with a stable id carries on).
    loader.restore([s for s in read_states(kafka, serde) if s["writer"] == writer])
    # Its share of the tenants' limits is its share of these partitions (shares.py).
    loader.partitions = topic_partitions(consumer, kafka.topic(topics.CANONICAL), kafka)
    log.info("loader %s: tenants %s", writer, ", ".join(tenants), extra={"writer": writer})

    try:
        RunLoop(
            stage="load",
            consumer=consumer,
            group=group_id,
            lost_offsets=kafka.lost_offsets,
            producer=make_producer(kafka),
            topics=[kafka.topic(topics.CANONICAL)],
            handler=caught_up(loader, CatchUp(book.catch_up)),
            dlq_topic=kafka.topic(topics.DLQ),
            dlq_max_bytes=max_record_bytes(kafka, [kafka.topic(topics.DLQ)]),
            stopper=stopper,
            batch_size=settings.batch_size,
            poll_timeout=POLL_TIMEOUT_S,
            holds=loader.holds,
            on_revoked=loader.revoked,
            on_assigned=loader.assigned,
            on_rewound=loader.rewound,
            alerter=alerter,
            alert_dlq_threshold=settings.alert_dlq_threshold,
        ).run()
    finally:
        book.stop()
        loader.close()


def caught_up(loader: Loader, catch_up: CatchUp) -> BatchHandler:
    """The loader's step, after its book caught up when a record's tenant is not known
    (a tenant applied a moment ago: its `set_tenants` is taken at the step's start)."""

    def handle_batch(batch: list[Message]) -> BatchResult:
        catch_up.before(batch, loader.tenants)
        return loader.handle_batch(batch)

    return handle_batch


def topic_partitions(consumer: Consumer, topic: str, kafka: KafkaSettings) -> int:
    """How many partitions `topic` has (the configured count if the broker says none)."""
    found = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return kafka.partitions
    return len(found.partitions)


def main() -> None:
    run_service("loader", LoaderSettings, start)
