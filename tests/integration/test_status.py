"""`siesa-sync status` on the real broker: writers' states merged per tenant, dead
letters and pending records counted from the topics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import yaml
from click.testing import CliRunner

from services.cli import main
from services.common.dlq import dead_letter_record
from services.common.errors import SkippableError
from services.common.kafka import make_producer, produce_in_transaction
from services.common.records import OutRecord
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import new_state, state_record
from services.common.topics import COMMANDS, DLQ, RAW


def test_status_json_merges_writers_and_counts_dead_letters_and_lag(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    serde = default_serde()
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {"id": "acme", "target": {"type": "kong"}},
                    {"id": "beta", "target": {"type": "wms"}},
                ]
            }
        )
    )
    at = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    producer = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}status-test")
    dead = SkippableError("name: required", tenant="acme", error_class="validation")
    produce_in_transaction(
        producer,
        [
            state_record(
                kafka,
                serde,
                new_state(
                    "acme",
                    "extractor",
                    status="syncing",
                    extracted=100,
                    changed=7,
                    last_extract_at=at,
                ),
            ),
            state_record(kafka, serde, new_state("acme", "loader-a", loaded=60, last_load_at=at)),
            state_record(
                kafka,
                serde,
                new_state(
                    "acme",
                    "loader-b",
                    loaded=38,
                    failed=2,
                    status="degraded",
                    last_error="Kong answered 503",
                ),
            ),
            state_record(
                kafka,
                serde,
                new_state("beta", "extractor", status="failed", last_error="Siesa answered 401"),
            ),
            *[
                dead_letter_record(
                    key=f"acme/{n}".encode(),
                    value=b"x",
                    error=dead,
                    stage="transform",
                    dlq_topic=kafka.topic(DLQ),
                    tenant="acme",
                )
                for n in range(2)
            ],
            *[OutRecord(kafka.topic(RAW), f"beta/{n}".encode(), b"raw") for n in range(5)],
        ],
    )
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }

    result = CliRunner().invoke(main, ["status", "--json", "--tenants-file", str(tenants)], env=env)

    assert result.exit_code == 0, result.output
    rows = {row["tenant"]: row for row in json.loads(result.output)}
    acme, beta = rows["acme"], rows["beta"]
    assert (acme["target"], acme["status"]) == ("kong", "degraded")
    assert (acme["extracted"], acme["changed"], acme["loaded"], acme["failed"]) == (100, 7, 98, 2)
    assert (acme["dead_lettered"], acme["dead_lettered_total"]) == (2, 2)
    assert acme["last_error"] == "Kong answered 503"
    assert acme["lag"] == 0
    assert (beta["target"], beta["status"], beta["last_error"]) == (
        "wms",
        "failed",
        "Siesa answered 401",
    )
    assert beta["lag_by_stage"] == {"transform": 5, "load": 0}

    table = CliRunner().invoke(main, ["status", "--tenants-file", str(tenants)], env=env)
    assert table.exit_code == 0, table.output
    assert "acme" in table.output
    assert "degraded" in table.output


def test_a_paused_tenant_shows_paused_since_when_and_by_whom(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    serde = default_serde()
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump({"tenants": [{"id": "acme", "target": {"type": "kong"}}, {"id": "beta"}]})
    )
    paused_at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    producer = make_producer(kafka, transactional_id=f"{kafka.topic_prefix}paused-test")
    command = serde.encode(
        "SyncCommand",
        {"tenant": "acme", "command": "pause", "requested_at": paused_at, "requested_by": "alice"},
    )
    produce_in_transaction(
        producer,
        [
            OutRecord(kafka.topic(COMMANDS), b"acme", command),
            # The extractor applied it: its state says paused (stored after the command).
            state_record(kafka, serde, new_state("acme", "extractor", paused=True)),
            state_record(kafka, serde, new_state("beta", "extractor", status="syncing")),
        ],
    )
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }

    result = CliRunner().invoke(main, ["status", "--json", "--tenants-file", str(tenants)], env=env)

    assert result.exit_code == 0, result.output
    rows = {row["tenant"]: row for row in json.loads(result.output)}
    assert rows["acme"]["status"] == "paused"
    assert (rows["acme"]["paused"], rows["acme"]["paused_by"]) == (True, "alice")
    assert datetime.fromisoformat(rows["acme"]["paused_since"]) == paused_at
    assert (rows["beta"]["status"], rows["beta"]["paused"]) == ("syncing", False)
    table = CliRunner().invoke(main, ["status", "--tenants-file", str(tenants)], env=env)
    assert "paused since 2026-11-28T09:30:00+00:00 by alice" in table.output
