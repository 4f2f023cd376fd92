"""`siesa-sync tenants apply` on the real broker: the topic ends up holding exactly the
file's tenants (what changed published, each on its tenant's partition, a removal
record for a tenant gone), a dry run publishes nothing, a bad file publishes nothing and
exits 2 naming the tenant and the field; the tenant book follows it live."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from devtools import procs
from services.cli import main
from services.common import tenant_feed
from services.common.scan import reader, scan
from services.common.settings import KafkaSettings
from services.common.tenant_book import TenantBook
from services.common.tenants import Tenant
from services.common.topics import TENANTS
from services.ops import audit
from services.ops.status import configured_tenants
from tests.unit.fakes import tenant_config

SECRET_ENV = {
    "T_CONNI_KEY": "0123456789abcdef0123456789abcdef",
    "T_CONNI_TOKEN": "eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0LXRva2Vu",
    "T_KONG_USER": "integrator",
    "T_KONG_PASSWORD": "pa55-w0rd-never-shown",
}


def write(path: Path, *entries: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"tenants": list(entries)}))
    return path


def cli(kafka: KafkaSettings, *args: str) -> Result:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
    }
    return CliRunner().invoke(main, ["tenants", *args], env=env)


def applied_json(kafka: KafkaSettings, path: Path, *flags: str) -> dict[str, str]:
    result = cli(kafka, "apply", str(path), "--json", *flags)
    assert result.exit_code == 0, result.output
    return {row["tenant"]: row["change"] for row in json.loads(result.output)}


def records(kafka: KafkaSettings) -> list[tuple[int, str, dict[str, Any] | None]]:
    consumer = reader(kafka)
    try:
        return [
            (m.partition() or 0, *tenant_feed.decode(m.key(), m.value()))
            for m in scan(consumer, kafka.topic(TENANTS))
        ]
    finally:
        consumer.close()


def test_apply_publishes_the_diff_each_tenant_on_its_partition(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    acme, beta = tenant_config("acme"), tenant_config("beta")
    first = write(tmp_path / "first.yaml", acme, beta)

    assert applied_json(kafka, first) == {"acme": "added", "beta": "added"}
    assert applied_json(kafka, first) == {"acme": "unchanged", "beta": "unchanged"}
    assert len(records(kafka)) == 2  # the second apply published nothing

    beta2 = tenant_config("beta", source__page_size=50)
    gamma = tenant_config("gamma")
    second = write(tmp_path / "second.yaml", beta2, gamma)
    assert applied_json(kafka, second) == {
        "acme": "removed",
        "beta": "changed",
        "gamma": "added",
    }

    held = records(kafka)
    assert len(held) == 5
    partitions = kafka.partitions
    assert all(p == tenant_feed.partition_of(t, partitions) for p, t, _ in held)
    latest = {t: e for _, t, e in sorted(held, key=lambda r: r[0])}
    assert latest == {"acme": None, "beta": beta2, "gamma": gamma}  # a removal record
    # Secrets stay references on the topic.
    raw = json.dumps([e for _, _, e in held])
    assert all(secret not in raw for secret in SECRET_ENV.values())
    assert {"env": "T_KONG_PASSWORD"} == latest["gamma"]["target"]["password"]  # type: ignore[index]

    listed = cli(kafka, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [
        {"tenant": "beta", "source": "siesa", "mode": "diff", "target": "kong", "enabled": True},
        {"tenant": "gamma", "source": "siesa", "mode": "diff", "target": "kong", "enabled": True},
    ]
    # Each change is in the audit trail, with who did it.
    trail = {
        (e.tenant, e.detail.get("change")) for e in audit.read(kafka) if e.action == "tenants-apply"
    }
    assert {
        ("acme", "added"),
        ("beta", "added"),
        ("acme", "removed"),
        ("beta", "changed"),
        ("gamma", "added"),
    } <= trail


def test_a_dry_run_publishes_nothing(kafka: KafkaSettings, tmp_path: Path) -> None:
    path = write(tmp_path / "tenants.yaml", tenant_config("acme"))

    assert applied_json(kafka, path, "--dry-run") == {"acme": "added"}
    table = cli(kafka, "apply", str(path), "--dry-run")

    assert table.exit_code == 0, table.output
    assert "acme" in table.output
    assert "would change: 1 added" in table.output
    assert records(kafka) == []
    assert [e for e in audit.read(kafka) if e.action == "tenants-apply"] == []


def test_a_bad_file_exits_2_naming_tenant_and_field_and_publishes_nothing(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.yaml", tenant_config("acme"))
    assert applied_json(kafka, good) == {"acme": "added"}
    bad = write(
        tmp_path / "bad.yaml",
        tenant_config("acme", source__page_size=1000),
        tenant_config("beta", target__base_url=None),
        tenant_config("gamma"),
    )

    result = cli(kafka, "apply", str(bad))

    assert result.exit_code == 2, result.output
    assert "tenant acme" in result.output
    assert "source.page_size" in result.output
    assert "tenant beta" in result.output  # every problem at once
    assert "target.base_url" in result.output
    assert [t for _, t, _ in records(kafka)] == ["acme"]  # only the first apply's


def test_the_book_follows_applies_live(kafka: KafkaSettings, tmp_path: Path) -> None:
    """A service's view: its file's tenants before a first apply, then each apply's."""
    seen: list[list[str]] = []
    changed = threading.Event()

    def on_change(tenants: dict[str, Tenant]) -> None:
        seen.append(sorted(tenants))
        changed.set()

    tenants_file = write(tmp_path / "tenants.yaml", tenant_config("file"))
    file_tenants = tenant_feed.tenants_of({"file": tenant_config("file")}, base_dir=tmp_path)
    book = TenantBook(kafka, file_tenants, tmp_path, (), on_change)
    book.start()
    try:
        assert sorted(book.current()) == ["file"]
        assert sorted(configured_tenants(kafka, tenants_file)) == ["file"]  # status: the same
        applied_json(
            kafka, write(tmp_path / "a.yaml", tenant_config("acme"), tenant_config("beta"))
        )
        procs.wait_until(
            lambda: sorted(book.current()) == ["acme", "beta"], timeout=30, what="acme and beta"
        )
        applied_json(kafka, write(tmp_path / "b.yaml", tenant_config("beta")))
        assert book.catch_up(30)  # read to the end: the removal is in
        assert sorted(book.current()) == ["beta"]
        assert seen[-1] == ["beta"]
        assert configured_tenants(kafka, tenants_file) == {
            "beta": {"target": "kong", "enabled": True}
        }
    finally:
        book.stop()
