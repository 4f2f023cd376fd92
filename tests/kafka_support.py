"""Tests on the secured session broker (SASL_SSL, SCRAM users, ACLs enforced): a stack
whose services and CLI connect as their own principals, with the pipeline's ACLs
(`siesa-sync acls`) for the stack's topic prefix; and what the harness itself reads
through the broker's test-only open listener."""

from __future__ import annotations

from collections.abc import Callable

from devtools.broker import LocalBroker
from devtools.groups import PartitionLag, describe_all, parse
from devtools.stack import SERVICES, Stack
from services.common.settings import KafkaSettings
from services.ops import acls


def harness_settings(broker: LocalBroker, topic_prefix: str) -> KafkaSettings:
    """A super user's settings (the open listener) for the harness's own reads."""
    return KafkaSettings(bootstrap_servers=broker.open_bootstrap, topic_prefix=topic_prefix)


def principal_settings(broker: LocalBroker, role: str, topic_prefix: str = "") -> KafkaSettings:
    """How `role` (a service or `operator`) connects: SASL_SSL as its own user."""
    assert broker.security is not None
    env = broker.security.client_env(acls.PRINCIPALS[role], broker.bootstrap)
    fields = {name.removeprefix("KAFKA_").lower(): value for name, value in env.items()}
    return KafkaSettings.model_validate({**fields, "topic_prefix": topic_prefix})


def secure(
    stack: Stack, broker: LocalBroker, *, leave_out: Callable[[acls.Acl], bool] | None = None
) -> list[acls.Acl]:
    """Make `stack` connect over SASL_SSL, each service as its own principal and the CLI
    as the operator, with the pipeline's ACLs for its topic prefix (but those
    `leave_out` picks); returns the ACLs left out."""
    assert broker.security is not None
    stack.bootstrap = broker.bootstrap
    for role in SERVICES:
        stack.kafka_env[role] = broker.security.client_env(acls.PRINCIPALS[role], broker.bootstrap)
    stack.kafka_env["cli"] = broker.security.client_env(
        acls.PRINCIPALS["operator"], broker.bootstrap
    )
    plan = acls.plan(harness_settings(broker, stack.topic_prefix))
    left_out = [acl for acl in plan if leave_out is not None and leave_out(acl)]
    acls.apply(harness_settings(broker, stack.topic_prefix), [a for a in plan if a not in left_out])
    return left_out


def group_lags(broker: LocalBroker, group_prefix: str) -> tuple[str, list[PartitionLag]]:
    """`kafka-consumer-groups --describe --all-groups` from the jars: its output for the
    groups starting with `group_prefix`, and their rows."""
    output = describe_all(broker.open_bootstrap)
    blocks = [block for block in output.split("\n\n") if f"\n{group_prefix}" in f"\n{block}"]
    rows = [row for row in parse(output) if row.group.startswith(group_prefix)]
    return "\n\n".join(blocks).strip() + "\n", rows
