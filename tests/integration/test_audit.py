"""Every operator action from the CLI lands in the audit trail (`ops.audit.v1`) with
who, what, which tenant and when; a dry run changes nothing and is not recorded."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta

from click.testing import CliRunner

from services.cli import main
from services.common.dlq import dead_letter_record
from services.common.errors import SkippableError
from services.common.kafka import make_producer
from services.common.scan import reader, scan
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.topics import CANONICAL, COMMANDS, DLQ
from services.ops import audit


def test_cli_actions_are_audited_with_user_and_tenant(kafka: KafkaSettings) -> None:
    producer = make_producer(kafka)
    producer.produce(kafka.topic(CANONICAL), key=b"acme/A", value=b"A1")
    letter = dead_letter_record(
        key=b"beta/B",
        value=b"B1",
        error=SkippableError("refused", tenant="beta", error_class="target_rejected"),
        stage="load",
        dlq_topic=kafka.topic(DLQ),
        source=(kafka.topic(CANONICAL), 0, 0),
        tenant="beta",
    )
    producer.produce(letter.topic, key=letter.key, value=letter.value, headers=letter.headers)
    producer.flush(30)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    started = datetime.now(UTC) - timedelta(seconds=1)
    runs = [
        ["pause", "--tenant", "acme"],
        ["resync", "--tenant", "acme"],
        ["resume", "--tenant", "acme"],
        ["replay", "--tenant", "acme", "--from", "1h", "--stage", "load"],
        ["dlq", "replay", "--tenant", "beta", "--dry-run"],
        ["dlq", "replay", "--tenant", "beta"],
    ]
    for args in runs:
        result = CliRunner().invoke(main, args, env=env)
        assert result.exit_code == 0, (args, result.output)

    entries = sorted(audit.read(kafka), key=lambda e: e.at)
    assert [(e.action, e.tenant) for e in entries] == [
        ("pause", "acme"),
        ("resync", "acme"),
        ("resume", "acme"),
        ("replay", "acme"),
        ("dlq-replay", "beta"),  # the dry run left nothing
    ]
    assert {(e.user, e.via, e.outcome) for e in entries} == {(getpass.getuser(), "cli", "ok")}
    assert all(started <= e.at <= datetime.now(UTC) for e in entries)
    assert entries[3].detail["stage"] == "load"
    assert entries[3].detail["replayed"] == 1
    assert entries[4].detail["sent"] == 1

    # The commands carry who asked, for `status` to say who paused a tenant.
    serde = default_serde()
    consumer = reader(kafka)
    try:
        commands = [
            serde.decode_as("SyncCommand", m.value()) for m in scan(consumer, kafka.topic(COMMANDS))
        ]
    finally:
        consumer.close()
    assert [(c["command"], c["requested_by"]) for c in commands] == [
        (name, getpass.getuser()) for name in ("pause", "resync", "resume")
    ]
