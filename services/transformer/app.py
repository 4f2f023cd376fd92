"""Wiring of the transformer: raw → canonical in Kafka transactions (exactly once), for
the tenants the tenant book says, live (services/transformer/tenants.py)."""

from __future__ import annotations

import os
import socket

from services.common import topics
from services.common.alerts import Alerter
from services.common.kafka import make_consumer, make_producer
from services.common.runloop import RunLoop
from services.common.serde import default_serde
from services.common.service import connect, run_service
from services.common.sizes import max_record_bytes
from services.common.state import read_states
from services.common.stopper import Stopper
from services.common.tenant_book import CatchUp, TenantBook
from services.common.tenants import load_tenants
from services.transformer.compiler import Shapes, load_mappings, mapping_names
from services.transformer.progress import TenantProgress
from services.transformer.service import Transformer
from services.transformer.settings import TransformerSettings
from services.transformer.tenants import LiveTenants


def start(settings: TransformerSettings, stopper: Stopper) -> None:
    file_tenants = load_tenants(settings.tenants_file, resolve=settings.tenant_parts)
    serde = default_serde()
    shapes = Shapes.from_serde(serde)
    # Every mapping file (and the file tenants' ones, wherever they are missing) is
    # checked before anything is consumed; one bad file stops the service.
    names = mapping_names(settings.mappings_dir) | {t.mapping for t in file_tenants.values()}
    mappings = load_mappings(settings.mappings_dir, names, shapes)
    instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    kafka = settings.kafka.for_client(f"transformer-{instance}")
    alerter = Alerter(settings.alert_webhook_url, "transformer")
    if not connect(kafka, stopper, alerter):
        return
    max_bytes = max_record_bytes(kafka, [kafka.topic(topics.CANONICAL), kafka.topic(topics.DLQ)])
    # The tenants file's until a first `tenants apply`, then sync.tenants.v1's, live.
    live = LiveTenants(
        Transformer(serde=serde, mappings={}, out_topic=kafka.topic(topics.CANONICAL)),
        tenants={},
        compiled=mappings,
        mappings_dir=settings.mappings_dir,
        shapes=shapes,
        max_bytes=max_bytes,
    )
    book = TenantBook.of_service(kafka, file_tenants, settings, on_change=live.changed)
    book.start()
    live.catch_up = CatchUp(book.catch_up)
    live.changed(book.current())
    group_id = f"{kafka.topic_prefix}{settings.group_id}"
    progress = TenantProgress(kafka, serde, f"transformer-{instance}")
    progress.restore(read_states(kafka, serde))
    transactional_id = f"{group_id}-{instance}"
    try:
        RunLoop(
            stage="transform",
            consumer=make_consumer(kafka, group_id=group_id, stage=True),
            group=group_id,
            lost_offsets=kafka.lost_offsets,
            producer=make_producer(kafka, transactional_id=transactional_id),
            new_producer=lambda: make_producer(kafka, transactional_id=transactional_id),
            topics=[kafka.topic(topics.RAW)],
            handler=progress.wrap(live.handle_batch),
            dlq_topic=kafka.topic(topics.DLQ),
            dlq_max_bytes=max_bytes,
            stopper=stopper,
            transactional=True,
            batch_size=settings.batch_size,
            alerter=alerter,
            alert_dlq_threshold=settings.alert_dlq_threshold,
        ).run()
    finally:
        book.stop()


def main() -> None:
    run_service("transformer", TransformerSettings, start)
