"""The ACLs a secured cluster needs for the pipeline: one principal per service with the
least it needs, and an operator for the CLI. `siesa-sync acls` prints them (and with
`--apply` creates them, as a principal allowed to alter ACLs).

Topics are named exactly (LITERAL, with the topic prefix); consumer groups likewise;
transactional ids and the throwaway groups of the tools' scans by PREFIXED patterns,
since they carry an instance, a tenant or a random suffix. READ and WRITE imply
DESCRIBE; WRITE on a topic also allows the idempotent producer (Kafka 3.0+).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at run time, missing from the stubs' __all__
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from services.common import topics
from services.common.errors import RetriableError
from services.common.kafka import make_admin
from services.common.scan import reader_group_prefix
from services.common.settings import KafkaSettings
from services.product import NAME

SERVICES = ("extractor", "transformer", "loader", "operator")
PRINCIPALS = {service: f"{NAME}-{service}" for service in SERVICES}


@dataclass(frozen=True)
class Acl:
    principal: str  # e.g. User:siesa-sync-loader
    operation: str  # READ, WRITE, CREATE, ... (AclOperation names)
    resource_type: str  # TOPIC, GROUP, TRANSACTIONAL_ID
    pattern: str  # LITERAL or PREFIXED
    name: str

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource_type],
            self.name,
            ResourcePatternType[self.pattern],
            self.principal,
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )

    def row(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Groups:
    """The consumer groups and transactional ids the services use (unprefixed)."""

    transformer: str = f"{NAME}-transformer"
    loader: str = f"{NAME}-loader"
    extractor_commands: str = f"{NAME}-extractor-commands"
    extractor: str = f"{NAME}-extractor"  # the instances' group on the tenants topic
    extractor_transactions: str = f"{NAME}-extractor-"
    redrive_transaction: str = f"{NAME}-dlq-redrive"
    replay_transactions: str = f"{NAME}-replay-"


def plan(
    kafka: KafkaSettings, principals: dict[str, str] | None = None, groups: Groups = Groups()
) -> list[Acl]:
    """Every ACL the pipeline needs on the cluster, for `kafka`'s topic prefix.
    `principals` maps a service (and `operator`) to its principal's name (`User:`
    added when missing); default: `siesa-sync-<service>`."""
    names = {**PRINCIPALS, **(principals or {})}
    who = {s: n if ":" in n else f"User:{n}" for s, n in names.items()}
    t, p = kafka.topic, kafka.topic_prefix
    acls: list[Acl] = []

    def allow(service: str, kind: str, pattern: str, name: str, *operations: str) -> None:
        acls.extend(Acl(who[service], op, kind, pattern, name) for op in operations)

    def topic(service: str, name: str, *operations: str) -> None:
        allow(service, "TOPIC", "LITERAL", t(name), *operations)

    readers = reader_group_prefix(kafka)
    # Each stage reads the size limit of the topics it writes (services/common/sizes.py).
    for service, written in (
        ("extractor", (topics.RAW, topics.DLQ)),
        ("transformer", (topics.CANONICAL, topics.DLQ)),
        ("loader", (topics.DLQ,)),
    ):
        for name in written:
            topic(service, name, "DESCRIBE_CONFIGS")
    # extractor: rows, fingerprints and state in its transactions; reads back its
    # fingerprints and state at start-up; rejected rows to the DLQ; operator commands.
    topic("extractor", topics.RAW, "WRITE")
    topic("extractor", topics.FINGERPRINTS, "READ", "WRITE")
    topic("extractor", topics.STATE, "READ", "WRITE")
    topic("extractor", topics.DLQ, "WRITE")
    topic("extractor", topics.COMMANDS, "READ")
    allow("extractor", "GROUP", "LITERAL", p + groups.extractor_commands, "READ")
    # extractor instances share the tenants by their group on the tenants topic, whose
    # positions every transaction commits (fencing a zombie instance).
    topic("extractor", topics.TENANTS, "READ")
    allow("extractor", "GROUP", "LITERAL", p + groups.extractor, "READ")
    allow("extractor", "TRANSACTIONAL_ID", "PREFIXED", p + groups.extractor_transactions, "WRITE")
    # transformer: raw in, canonical out, in transactions named after its group.
    topic("transformer", topics.RAW, "READ")
    topic("transformer", topics.CANONICAL, "WRITE")
    topic("transformer", topics.STATE, "READ", "WRITE")
    topic("transformer", topics.DLQ, "WRITE")
    allow("transformer", "GROUP", "LITERAL", p + groups.transformer, "READ")
    allow("transformer", "TRANSACTIONAL_ID", "PREFIXED", f"{p}{groups.transformer}-", "WRITE")
    # loader: canonical in; state, dead letters and the targets' ids out (ids read back).
    topic("loader", topics.CANONICAL, "READ")
    topic("loader", topics.STATE, "READ", "WRITE")
    topic("loader", topics.DLQ, "WRITE")
    topic("loader", topics.TARGET_IDS, "READ", "WRITE")
    allow("loader", "GROUP", "LITERAL", p + groups.loader, "READ")
    # operator (the CLI and the console): topics create, status, dlq list/replay,
    # replay, resync/pause/resume, each written to the audit trail.
    for spec in topics.SPECS:
        topic("operator", spec.name, "CREATE", "ALTER_CONFIGS", "READ")
    for name in (
        topics.RAW,
        topics.CANONICAL,
        topics.COMMANDS,
        topics.DLQ_REDRIVEN,
        topics.AUDIT,
        topics.TENANTS,
    ):
        topic("operator", name, "WRITE")
    for group in (groups.transformer, groups.loader):
        allow("operator", "GROUP", "LITERAL", p + group, "DESCRIBE")  # lag in `status`
    allow("operator", "TRANSACTIONAL_ID", "LITERAL", p + groups.redrive_transaction, "WRITE")
    allow("operator", "TRANSACTIONAL_ID", "PREFIXED", p + groups.replay_transactions, "WRITE")
    # The transformer and loaders follow the tenants applied (`tenants apply`).
    for service in ("transformer", "loader"):
        topic(service, topics.TENANTS, "READ")
    # Every service and the CLI read topics to their end in throwaway groups.
    for service in SERVICES:
        allow(service, "GROUP", "PREFIXED", readers, "READ")
    return acls


def apply(kafka: KafkaSettings, acls: Iterable[Acl], timeout: float = 30.0) -> int:
    """Create `acls` on the cluster (existing ones are left as they are); how many."""
    bindings = [acl.binding() for acl in acls]
    admin = make_admin(kafka)
    for binding, future in admin.create_acls(bindings, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            error = exc.args[0]
            raise RetriableError(f"could not create ACL {binding}: {error.name()}") from exc
    return len(bindings)
