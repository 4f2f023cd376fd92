"""Wiring of the transformer: raw → canonical in Kafka transactions (exactly once)."""

from __future__ import annotations

import os
import socket

from services.common import topics
from services.common.alerts import Alerter
from services.common.kafka import make_consumer, make_producer
from services.common.runloop import RunLoop, per_record
from services.common.serde import default_serde
from services.common.service import connect, run_service
from services.common.sizes import max_record_bytes, within
from services.common.state import read_states
from services.common.stopper import Stopper
from services.common.tenants import enabled, load_tenants
from services.transformer.compiler import Shapes, load_mappings, mapping_names
from services.transformer.progress import TenantProgress
from services.transformer.service import Transformer
from services.transformer.settings import TransformerSettings


def start(settings: TransformerSettings, stopper: Stopper) -> None:
    tenants = enabled(load_tenants(settings.tenants_file, resolve=settings.tenant_parts))
    serde = default_serde()
    # Every mapping file (and the tenants' ones, wherever they are missing) is checked
    # before anything is consumed; one bad file stops the service.
    names = mapping_names(settings.mappings_dir) | {t.mapping for t in tenants}
    mappings = load_mappings(settings.mappings_dir, names, Shapes.from_serde(serde))
    instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    kafka = settings.kafka.for_client(f"transformer-{instance}")
    alerter = Alerter(settings.alert_webhook_url, "transformer")
    if not connect(kafka, stopper, alerter):
        return
    transformer = Transformer(
        serde=serde,
        mappings={t.id: mappings[t.mapping] for t in tenants},
        out_topic=kafka.topic(topics.CANONICAL),
    )
    group_id = f"{kafka.topic_prefix}{settings.group_id}"
    progress = TenantProgress(kafka, serde, f"transformer-{instance}")
    progress.restore(read_states(kafka, serde))
    transactional_id = f"{group_id}-{instance}"
    max_bytes = max_record_bytes(kafka, [kafka.topic(topics.CANONICAL), kafka.topic(topics.DLQ)])
    RunLoop(
        stage="transform",
        consumer=make_consumer(kafka, group_id=group_id, stage=True),
        group=group_id,
        lost_offsets=kafka.lost_offsets,
        producer=make_producer(kafka, transactional_id=transactional_id),
        new_producer=lambda: make_producer(kafka, transactional_id=transactional_id),
        topics=[kafka.topic(topics.RAW)],
        handler=progress.wrap(per_record(within(transformer.handle, max_bytes))),
        dlq_topic=kafka.topic(topics.DLQ),
        dlq_max_bytes=max_bytes,
        stopper=stopper,
        transactional=True,
        batch_size=settings.batch_size,
        alerter=alerter,
        alert_dlq_threshold=settings.alert_dlq_threshold,
    ).run()


def main() -> None:
    run_service("transformer", TransformerSettings, start)
