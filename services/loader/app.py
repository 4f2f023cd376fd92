"""Wiring of the loader: canonical products → each tenant's target, at least once."""

from __future__ import annotations

import logging
import os
import socket
from functools import partial

from services.common import metrics, topics
from services.common.alerts import Alerter
from services.common.kafka import make_consumer, make_producer
from services.common.runloop import RunLoop
from services.common.serde import default_serde
from services.common.service import connect, run_service
from services.common.state import read_states
from services.common.stopper import Stopper
from services.common.tenants import enabled, load_tenants
from services.loader.breaker import Breaker
from services.loader.service import Loader
from services.loader.settings import LoaderSettings

log = logging.getLogger(__name__)


def start(settings: LoaderSettings, stopper: Stopper) -> None:
    # Every target's settings are checked by their plugin's model as the file loads.
    tenants = {
        t.id: t for t in enabled(load_tenants(settings.tenants_file, resolve=settings.tenant_parts))
    }
    serde = default_serde()
    writer = f"loader-{settings.instance_id or f'{socket.gethostname()}-{os.getpid()}'}"
    kafka = settings.kafka.for_client(writer)
    loader = Loader(
        serde=serde,
        tenants=tenants,
        max_in_flight=settings.max_in_flight,
        kafka=kafka,
        writer=writer,
        max_parked=settings.max_parked,
    )
    alerter = Alerter(settings.alert_webhook_url, "loader")
    if not connect(kafka, stopper, alerter):
        loader.close()
        return
    # This writer's counts so far (a restarted replica with a stable id carries on).
    loader.restore([s for s in read_states(kafka, serde) if s["writer"] == writer])
    log.info("loader %s: tenants %s", writer, ", ".join(tenants), extra={"writer": writer})

    for tenant_id, breaker in loader.breakers.items():
        metrics.BREAKER_STATE.labels(
            tenant=tenant_id, target=tenants[tenant_id].target.type
        ).set_function(partial(breaker_value, breaker))

    group_id = f"{kafka.topic_prefix}{settings.group_id}"
    try:
        RunLoop(
            stage="load",
            consumer=make_consumer(kafka, group_id=group_id, stage=True),
            group=group_id,
            lost_offsets=kafka.lost_offsets,
            producer=make_producer(kafka),
            topics=[kafka.topic(topics.CANONICAL)],
            handler=loader.handle_batch,
            dlq_topic=kafka.topic(topics.DLQ),
            stopper=stopper,
            batch_size=settings.batch_size,
            holds=loader.holds,
            on_revoked=loader.revoked,
            on_assigned=loader.assigned,
            alerter=alerter,
            alert_dlq_threshold=settings.alert_dlq_threshold,
        ).run()
    finally:
        loader.close()


def breaker_value(breaker: Breaker) -> float:
    return metrics.BREAKER_VALUES[str(breaker.state)]


def main() -> None:
    run_service("loader", LoaderSettings, start)
