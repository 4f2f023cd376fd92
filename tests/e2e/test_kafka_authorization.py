"""Kafka refusing a service, on the secured broker: the transformer's principal lacks
WRITE on the canonical topic. It says so (log line naming topic and principal, /readyz
503, one alert) and keeps trying; once the ACL is added it goes on, and the target ends
equal to the source with every canonical record written exactly once."""

from __future__ import annotations

from collections import Counter

import httpx

from devtools import procs
from devtools.broker import LocalBroker
from devtools.expected import mismatches
from devtools.stack import Stack
from services.common.scan import reader, scan
from services.common.topics import CANONICAL
from services.ops import acls
from tests.integration.test_health import scrape, value
from tests.kafka_support import harness_settings, secure
from tests.webhook import Receiver

COMPANY = 8585
ITEMS = 200


def readiness(stack: Stack, service: str) -> tuple[int, dict[str, object]]:
    answer = httpx.get(f"{stack.health_url(service)}/readyz", timeout=5)
    body: dict[str, object] = answer.json()
    return answer.status_code, body


def test_a_missing_write_acl_is_named_alerted_and_unready_until_the_acl_is_added(
    stack: Stack, secured_broker: LocalBroker
) -> None:
    canonical = stack.topic_prefix + CANONICAL
    principal = f"User:{acls.PRINCIPALS['transformer']}"
    missing = secure(
        stack,
        secured_broker,
        leave_out=lambda acl: (
            (acl.principal, acl.operation, acl.name) == (principal, "WRITE", canonical)
        ),
    )
    assert len(missing) == 1
    with Receiver() as hook:
        stack.service_env["TRANSFORMER_ALERT_WEBHOOK_URL"] = hook.url
        stack.tenants = [stack.kong_tenant("acme", COMPANY)]
        stack.start_simulators()
        stack.seed(COMPANY, ITEMS, seed=11)
        stack.create_topics()
        stack.start_services()
        transformer_log = stack.processes["transformer"].log_path
        said = f"Kafka refused WRITE on topic {canonical} to {principal}"

        def refused() -> bool:
            stack.check_alive()
            return said in transformer_log.read_text()

        procs.wait_until(refused, timeout=120, interval=0.5, what="the refusal in the log")
        status, body = readiness(stack, "transformer")
        assert status == 503
        assert said in str(body["problems"])
        procs.wait_until(lambda: len(hook.bodies) >= 1, timeout=30, what="the alert")
        assert [b["condition"] for b in hook.bodies] == ["kafka_refused"]
        assert said in hook.bodies[0]["reason"]
        metrics = scrape(stack.health_url("transformer"))
        refusals = value(
            metrics,
            "siesa_sync_kafka_refusals_total",
            operation="WRITE",
            resource=f"topic {canonical}",
        )
        assert refusals >= 1
        assert stack.kong_skus() == []  # nothing went past the transformer

        acls.apply(harness_settings(secured_broker, stack.topic_prefix), missing)

        rows = stack.siesa_items(COMPANY)

        def synced() -> bool:
            stack.check_alive()
            return not mismatches("kong", rows, stack.kong_skus())

        procs.wait_until(synced, timeout=180, interval=1.0, what="Kong == Siesa")
        procs.wait_until(
            lambda: readiness(stack, "transformer")[0] == 200, timeout=30, what="ready again"
        )
        consumer = reader(harness_settings(secured_broker, stack.topic_prefix))
        try:
            written = Counter(m.key() for m in scan(consumer, canonical))
        finally:
            consumer.close()
        assert len(written) == ITEMS  # nothing lost...
        assert set(written.values()) == {1}  # ...nor written twice (aborted ones are not read)
        assert [b["condition"] for b in hook.bodies] == ["kafka_refused"]  # one alert in all
