"""The secured session broker refuses what it must, through the project's own clients:
no credentials, a wrong password, a principal writing outside its ACLs, the operator
granting itself ACLs. Each refusal the clients see is reported by `kafka_auth`. A
service whose credentials are refused at start-up waits, not ready and saying so once,
instead of exiting, and goes on once the cluster takes them."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from confluent_kafka import KafkaError
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at run time, missing from the stubs' __all__
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from devtools import procs
from devtools.broker import LocalBroker
from devtools.stack import Stack
from services.common import health, kafka_auth, topics
from services.common.dlq import dead_letter_record
from services.common.errors import RetriableError, SkippableError
from services.common.kafka import make_admin, make_producer
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.ops import acls
from services.ops.actions import apply_tenants, send_command
from services.ops.audit import Actor
from services.ops.dlq import dead_letters, redrive
from services.ops.replay import replay
from services.ops.status import default_stages, tenant_status
from tests.kafka_support import harness_settings, principal_settings

GROUPS = ("siesa-sync-transformer", "siesa-sync-loader")


def deliver(
    kafka: KafkaSettings, topic: str, timeout: float = 15.0, until: Callable[[], bool] | None = None
) -> list[KafkaError | None]:
    """Produce one record; what its delivery report said (nothing if none came before
    `timeout`, or before `until` holds)."""
    outcome: list[KafkaError | None] = []
    producer = make_producer(kafka, **{"message.timeout.ms": int(timeout * 1000)})
    producer.produce(topic, b"x", on_delivery=lambda err, _msg: outcome.append(err))
    deadline = time.monotonic() + timeout + 5
    while not outcome and time.monotonic() < deadline and not (until and until()):
        producer.poll(0.2)
    return outcome


@pytest.fixture(autouse=True)
def _refusals_cleared() -> None:
    kafka_auth.current().succeeded()


def test_the_secured_listener_refuses_what_no_credential_or_acl_allows(
    secured_broker: LocalBroker, topic_prefix: str
) -> None:
    admin = harness_settings(secured_broker, topic_prefix)
    acls.apply(admin, acls.plan(admin))
    topics.create_topics(admin)
    raw = admin.topic(topics.RAW)
    loader = principal_settings(secured_broker, "loader", topic_prefix)

    # No credentials at all: TLS, but no SASL.
    anonymous = loader.model_copy(
        update={"security_protocol": "SSL", "sasl_mechanism": None, "sasl_username": None}
    )
    outcome = deliver(anonymous, raw, timeout=4)
    assert len(outcome) == 1
    assert outcome[0] is not None  # never delivered

    # A wrong password: the client's error callback reports the refusal.
    wrong = KafkaSettings.model_validate(
        {**loader.model_dump(exclude={"sasl_password_file"}), "sasl_password": "wrong"}
    )
    deliver(wrong, raw, until=lambda: kafka_auth.PROBLEM in health.current().problems)
    problem = health.current().problems[kafka_auth.PROBLEM]
    assert problem.startswith("Kafka refused AUTHENTICATE on the cluster to User:siesa-sync-loader")
    assert "invalid credentials" in problem
    kafka_auth.current().succeeded()

    # The loader's principal writing the raw topic: authenticated, not authorized.
    outcome = deliver(loader, raw)
    assert [e.code() if e else None for e in outcome] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # ...while the extractor's, whose topic it is, may.
    assert deliver(principal_settings(secured_broker, "extractor", topic_prefix), raw) == [None]

    # The operator cannot grant itself more.
    operator = principal_settings(secured_broker, "operator", topic_prefix)
    with pytest.raises(RetriableError, match="CLUSTER_AUTHORIZATION_FAILED"):
        acls.apply(operator, acls.plan(operator)[:1])


def test_the_operator_runs_every_command_under_its_acls_alone(
    secured_broker: LocalBroker, topic_prefix: str, tmp_path: Path
) -> None:
    admin = harness_settings(secured_broker, topic_prefix)
    acls.apply(admin, acls.plan(admin))
    operator = principal_settings(secured_broker, "operator", topic_prefix).for_client("cli")
    assert set(topics.create_topics(operator).values()) == {"created"}
    assert set(topics.create_topics(operator).values()) == {"exists"}
    # A product went through, another failed at the load stage (written as the harness).
    producer = make_producer(admin)
    canonical = admin.topic(topics.CANONICAL)
    producer.produce(canonical, key=b"acme/A", value=b"A1")
    producer.flush(30)
    letter = dead_letter_record(
        key=b"acme/B",
        value=b"B1",
        error=SkippableError("refused", tenant="acme", error_class="target_rejected"),
        stage="load",
        dlq_topic=admin.topic(topics.DLQ),
        source=(canonical, 0, 0),
        tenant="acme",
    )
    producer.produce(letter.topic, key=letter.key, value=letter.value, headers=letter.headers)
    producer.flush(30)
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        "tenants:\n"
        "  - id: acme\n"
        "    source: {type: siesa, base_url: 'http://127.0.0.1:1/api/siesa/v3', company: 1,\n"
        "             conni_key: {env: ACME_KEY}, conni_token: {env: ACME_TOKEN}}\n"
        "    target: {type: kong, base_url: 'http://127.0.0.1:1',\n"
        "             settings: {type_id: 1, customer_id: 1},\n"
        "             auth: {type: login, username: {env: ACME_USER},\n"
        "                    password: {env: ACME_PASSWORD}}}\n"
    )

    rows = tenant_status(operator, default_serde(), tenants, default_stages(*GROUPS), only="acme")
    assert [(r["tenant"], r["dead_lettered"]) for r in rows] == [("acme", 1)]
    assert [d.key for d in dead_letters(operator)] == [b"acme/B"]
    assert redrive(operator).summary()["sent"] == 1
    assert replay(operator, "acme", "load", datetime.now(UTC) - timedelta(hours=1)).replayed >= 1
    send_command(operator, "acme", "resync", requested_by="test")
    applied = apply_tenants(operator, tenants, Actor("test", "cli"))
    assert [(c.tenant, c.change) for c in applied.changes] == [("acme", "added")]
    rows = tenant_status(operator, default_serde(), tenants, default_stages(*GROUPS))
    assert [(r["tenant"], r["target"]) for r in rows] == [("acme", "kong")]  # the topic's
    assert kafka_auth.PROBLEM not in health.current().problems


def test_a_service_whose_credentials_are_refused_waits_unready_and_goes_on_once_taken(
    secured_broker: LocalBroker, stack: Stack, topic_prefix: str, tmp_path: Path
) -> None:
    """No exit after librdkafka's timeouts (a crash loop under an orchestrator): the
    transformer's user does not exist yet when it starts; it is made later."""
    assert secured_broker.security is not None
    admin = harness_settings(secured_broker, topic_prefix)
    topics.create_topics(admin)
    user = f"late-{topic_prefix.strip('.')}"
    plan = acls.plan(admin, principals={"transformer": user})
    acls.apply(admin, [acl for acl in plan if acl.principal == f"User:{user}"])
    password = secrets.token_hex(16)
    password_file = tmp_path / "late.password"
    password_file.write_text(password + "\n")
    env = secured_broker.security.client_env(user, secured_broker.bootstrap)
    stack.kafka_env["transformer"] = {**env, "KAFKA_SASL_PASSWORD_FILE": str(password_file)}
    stack.tenants = [stack.kong_tenant("acme", 8585)]
    stack.start_services(("transformer",))
    ready_url = f"{stack.health_url('transformer')}/readyz"
    refused = f"Kafka refused AUTHENTICATE on the cluster to User:{user}"

    def problems() -> dict[str, str]:
        stack.check_alive()
        try:
            answer = httpx.get(ready_url, timeout=3)
        except httpx.TransportError:
            return {}
        found: dict[str, str] = answer.json().get("problems", {})
        return found

    procs.wait_until(
        lambda: refused in problems().get(kafka_auth.PROBLEM, ""),
        timeout=60,
        what="the transformer unready, its credentials refused",
    )
    assert "broker" not in problems()  # the broker answers: it is no reachability problem

    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), password.encode()
    )
    admin_client = make_admin(admin)  # held: a dropped handle fails its futures (_DESTROY)
    for future in admin_client.alter_user_scram_credentials([upsert]).values():
        future.result(30)

    def ready() -> bool:
        stack.check_alive()
        return httpx.get(ready_url, timeout=3).status_code == 200

    procs.wait_until(ready, timeout=90, what="the transformer ready once its user exists")
    lines = stack.processes["transformer"].log_path.read_text().splitlines()
    messages = [json.loads(line).get("message", "") for line in lines if line.startswith("{")]
    assert len([m for m in messages if m.startswith(refused)]) == 1  # said once
    assert not [m for m in messages if "cannot reach the Kafka broker" in m]
    assert f"Kafka accepts User:{user}'s operations again" in messages
