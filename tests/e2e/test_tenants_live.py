"""Tenants live (issue 17): the pipeline runs one tenant from its tenants file; `siesa-sync
tenants apply` adds a second (a new Siesa company into the WMS) and it is fully synced
with no service restarted; applied again without it, it stops being polled: the Siesa
simulator's request log for its company shows no new requests, while the first
tenant's polling goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from devtools import procs
from devtools.expected import mismatches
from devtools.stack import SERVICES, Stack
from services.common.kafka import make_producer
from services.common.records import header_value
from services.common.scan import reader, scan
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.topics import DLQ, RAW
from tests.unit.test_transformer_service import raw_item

COMPANY = 8585
NEW_COMPANY = 8021
ITEMS = 60


def apply(stack: Stack, tenants: list[dict[str, Any]], name: str) -> str:
    path = stack.run_dir / name
    path.write_text(yaml.safe_dump({"tenants": tenants}, sort_keys=False))
    return stack.run_cli(["tenants", "apply", str(path)])


def consultas(stack: Stack, company: int) -> int:
    """How many consulta requests the Siesa simulator answered for `company`."""
    return len(stack.siesa_stats()["consultas"].get(str(company), []))


def wait_for_target_to_equal_siesa(stack: Stack, target: str, company: int) -> None:
    problems: list[str] = ["nothing read yet"]

    def equal() -> bool:
        nonlocal problems
        stack.check_alive()
        problems = mismatches(target, stack.siesa_items(company), stack.held(target), set())
        return not problems

    try:
        procs.wait_until(equal, timeout=120, interval=0.5, what=f"{target} holding Siesa's items")
    except TimeoutError:
        raise AssertionError(f"{len(problems)} differences, first: {problems[:5]}") from None


def test_a_tenant_applied_live_is_synced_and_a_removed_one_stops_being_polled(
    stack: Stack, tmp_path: Path
) -> None:
    acme = stack.kong_tenant("acme", COMPANY)
    bodega = stack.wms_tenant("bodega", NEW_COMPANY)
    stack.tenants = [acme]
    # The services get bodega's credentials (references in its entry) from the start,
    # as a deployment would have them in its environment or secret files.
    stack.service_env.update(stack.credentials.tenant_env("bodega"))
    stack.start_simulators()
    stack.start_simulator("wms")
    stack.seed(COMPANY, ITEMS, seed=3)
    stack.seed(NEW_COMPANY, ITEMS, seed=4)
    stack.create_topics()
    stack.start_services()
    pids = {name: stack.processes[name].pid for name in SERVICES}
    wait_for_target_to_equal_siesa(stack, "kong", COMPANY)
    assert stack.wms_products() == []
    assert consultas(stack, NEW_COMPANY) == 0

    # Added live: fully synced, no service restarted.
    out = apply(stack, [acme, bodega], "two.yaml")
    assert "added" in out
    wait_for_target_to_equal_siesa(stack, "wms", NEW_COMPANY)
    assert len(stack.wms_products()) == ITEMS
    # A change in its Siesa company reaches the WMS too: it is polled, not just read once.
    row = dict(stack.siesa_items(NEW_COMPANY)[0])
    row["f120_descripcion"] = "RENOMBRADO EN VIVO"
    stack.upsert_items(NEW_COMPANY, [row])
    wait_for_target_to_equal_siesa(stack, "wms", NEW_COMPANY)
    assert {name: stack.processes[name].pid for name in SERVICES} == pids

    # Removed live: no longer polled, while acme's polling goes on.
    out = apply(stack, [acme], "one.yaml")
    assert "removed" in out
    settled: list[int] = []

    def quiet() -> bool:
        """bodega's request count unchanged over the last 3 s (its poll interval is 1 s)."""
        stack.check_alive()
        settled.append(consultas(stack, NEW_COMPANY))
        return len(settled) > 6 and settled[-1] == settled[-7]

    procs.wait_until(quiet, timeout=30, interval=0.5, what="bodega no longer polled")
    stopped_at = settled[-1]
    acme_at = consultas(stack, COMPANY)
    procs.wait_until(
        lambda: consultas(stack, COMPANY) >= acme_at + 3,
        timeout=30,
        interval=0.5,
        what="acme polled three more times",
    )
    assert consultas(stack, NEW_COMPANY) == stopped_at
    assert {name: stack.processes[name].pid for name in SERVICES} == pids
    stack.check_alive()


def produce_raw(kafka: KafkaSettings, tenant: str, reference: str) -> None:
    """One RawItem of `tenant` on the raw topic, as an extractor writes it."""
    item = raw_item(tenant)
    item["key"] = reference
    item["row"] = {**item["row"], "f120_referencia": reference}
    producer = make_producer(kafka)
    producer.produce(
        kafka.topic(RAW),
        key=f"{tenant}/{reference}".encode(),
        value=default_serde().encode("RawItem", item),
    )
    assert producer.flush(30) == 0


def dead_letters(kafka: KafkaSettings) -> list[tuple[str | None, str | None, str | None]]:
    consumer = reader(kafka)
    try:
        return [
            (
                header_value(m, "tenant"),
                header_value(m, "error.class"),
                header_value(m, "error.stage"),
            )
            for m in scan(consumer, kafka.topic(DLQ))
        ]
    finally:
        consumer.close()


def test_the_transformer_and_loader_follow_applied_tenants_without_a_restart(
    stack: Stack,
) -> None:
    """Their half alone (records put on the raw topic as an extractor would): a tenant
    applied is transformed and loaded; once removed, its records are dead-lettered as of
    an unknown tenant and its target is not written again."""
    acme = stack.kong_tenant("acme", COMPANY)
    beta = stack.kong_tenant("beta", COMPANY + 1)
    stack.tenants = [acme]
    stack.service_env.update(stack.credentials.tenant_env("beta"))
    stack.start_simulator("kong")
    stack.create_topics()
    stack.start_services(("transformer", "loader"))
    pids = {name: stack.processes[name].pid for name in ("transformer", "loader")}
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)

    def held() -> set[str]:
        stack.check_alive()
        return {s["external_id"] for s in stack.kong_skus()}

    produce_raw(kafka, "acme", "ACME-1")
    procs.wait_until(lambda: held() == {"ACME-1"}, timeout=60, what="acme's item in Kong")

    assert "added" in apply(stack, [acme, beta], "two.yaml")
    produce_raw(kafka, "beta", "BETA-1")
    procs.wait_until(lambda: "BETA-1" in held(), timeout=60, what="beta's item in Kong")
    assert dead_letters(kafka) == []  # nothing of beta's was taken for unknown

    assert "removed" in apply(stack, [acme], "one.yaml")
    produce_raw(kafka, "beta", "BETA-2")
    produce_raw(kafka, "acme", "ACME-2")
    procs.wait_until(lambda: "ACME-2" in held(), timeout=60, what="acme's second item")
    procs.wait_until(
        lambda: ("beta", "unknown_tenant", "transform") in dead_letters(kafka),
        timeout=30,
        what="beta's record dead-lettered as of an unknown tenant",
    )
    assert held() == {"ACME-1", "BETA-1", "ACME-2"}
    assert {name: stack.processes[name].pid for name in ("transformer", "loader")} == pids
