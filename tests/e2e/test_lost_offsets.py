"""A stage stopped longer than its input topic's retention: the records it never read are
gone. It must not skip them silently: the range lost is logged, counted and alerted,
and the stage stops (KAFKA_LOST_OFFSETS=stop, the default) with /readyz 503. The
recovery of docs/operations.md (resync the tenant, restart the stage with
KAFKA_LOST_OFFSETS=earliest) brings the target back to the source."""

from __future__ import annotations

import httpx

from devtools import procs
from devtools.expected import mismatches
from devtools.stack import Stack
from services.common import topics
from services.common.scan import reader, watermarks
from services.common.settings import KafkaSettings
from services.common.topics import create_topics
from tests.integration.test_health import scrape, value
from tests.webhook import Receiver

COMPANY = 8585
ITEMS = 30
RENAMED = 10


def canonical_ends(kafka: KafkaSettings) -> list[tuple[int, int]]:
    """(low, high) watermarks of every canonical partition."""
    consumer = reader(kafka)
    try:
        topic = kafka.topic(topics.CANONICAL)
        return [watermarks(consumer, topic, p) for p in range(kafka.partitions)]
    finally:
        consumer.close()


def test_a_stage_stopped_past_retention_alerts_and_stops_and_a_resync_recovers(
    stack: Stack,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    with Receiver() as hook:
        stack.service_env["LOADER_ALERT_WEBHOOK_URL"] = hook.url
        stack.tenants = [stack.kong_tenant("acme", COMPANY)]
        stack.start_simulators()
        stack.seed(COMPANY, ITEMS, seed=31)
        stack.create_topics()
        stack.start_services()

        def synced() -> bool:
            stack.check_alive()
            return not mismatches("kong", stack.siesa_items(COMPANY), stack.kong_skus())

        procs.wait_until(synced, timeout=120, interval=1.0, what="Kong == Siesa")

        # The loader stops; ten items change meanwhile, and retention deletes them from
        # the canonical topic before the loader is back.
        assert stack.stop("loader") == 0
        before = sum(high for _low, high in canonical_ends(kafka))
        rows = stack.siesa_items(COMPANY)[:RENAMED]
        stack.upsert_items(
            COMPANY, [{**r, "f120_descripcion": f"RENAMED {n}"} for n, r in enumerate(rows)]
        )

        def transformed() -> bool:
            stack.check_alive()
            return sum(high for _low, high in canonical_ends(kafka)) >= before + RENAMED

        procs.wait_until(transformed, timeout=120, interval=1.0, what="the changes transformed")
        create_topics(kafka.model_copy(update={"canonical_retention_ms": 1000}), alter=True)
        procs.wait_until(
            lambda: all(low == high for low, high in canonical_ends(kafka)),
            timeout=120,
            interval=1.0,
            what="retention deleting the canonical records",
        )
        create_topics(kafka, alter=True)  # back to 7 days

        stack.restart("loader")
        loader_log = stack.processes["loader"].log_path

        def stopped() -> bool:
            stack.check_alive()
            return "Stopped (KAFKA_LOST_OFFSETS=stop)" in loader_log.read_text()

        procs.wait_until(stopped, timeout=120, interval=0.5, what="the loader noticing the loss")
        procs.wait_until(lambda: len(hook.bodies) >= 1, timeout=30, what="the alert")
        assert [b["condition"] for b in hook.bodies] == ["offsets_lost"]
        lost = scrape(stack.health_url("loader"))
        lost_total = sum(
            value(lost, "siesa_sync_records_lost_total", stage="load", topic=t, partition=str(p))
            for t in [kafka.topic(topics.CANONICAL)]
            for p in range(kafka.partitions)
        )
        assert lost_total >= RENAMED  # the ten changes, plus their transaction markers
        answer = httpx.get(f"{stack.health_url('loader')}/readyz", timeout=5)
        assert answer.status_code == 503
        assert "kafka-offsets-lost" in answer.json()["problems"]
        assert "deleted by retention before this stage read them" in loader_log.read_text()
        stack.check_alive()  # stopped consuming, not exited: no crash loop
        behind = mismatches("kong", stack.siesa_items(COMPANY), stack.kong_skus())
        assert {p.split(":")[0] for p in behind} == {r["f120_referencia"].strip() for r in rows}

        # Recovery: resync the tenant, restart the loader going on from the earliest.
        stack.run_cli(["resync", "--tenant", "acme"])
        assert stack.stop("loader") == 1  # it had stopped on the loss
        cli_args, env = stack.launches["loader"]
        stack.launches["loader"] = (cli_args, {**env, "KAFKA_LOST_OFFSETS": "earliest"})
        stack.restart("loader")
        procs.wait_until(synced, timeout=180, interval=1.0, what="Kong == Siesa after the resync")
