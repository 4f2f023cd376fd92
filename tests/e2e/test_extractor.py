"""The extractor as a real process, on the real broker, reading the Siesa simulator
(a real HTTP server): what reaches the raw topic, what its state says, what Siesa saw."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from devtools.stack import Stack
from services.common.settings import KafkaSettings
from tests.e2e.extractor_support import (
    raw_items,
    siesa_tenant,
    state_of,
    wait_scan_after,
    wait_state,
)

COMPANY = 8585


def test_diff_mode_emits_each_change_once_also_across_a_restart(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [siesa_tenant(stack, "acme", COMPANY, mode="diff", poll_interval_s=1)]
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 10_000, seed=3)
    stack.start_services(("extractor",))

    first = wait_state(
        stack, kafka, "acme", "10,000 emitted", lambda s: s["changed"] >= 10_000, timeout=180
    )
    items = raw_items(kafka, "acme")
    assert len(items) == 10_000
    assert len({i["key"] for i in items}) == 10_000
    assert {i["op"] for i in items} == {"UPSERT"}
    # A second scan of the unchanged catalogue emits nothing...
    wait_scan_after(stack, kafka, "acme", first["last_scan_ended_at"], timeout=60)
    # ... nor does the first scan after a restart: the fingerprints were kept.
    assert stack.stop("extractor") == 0
    restarted_at = datetime.now().astimezone()
    stack.start_services(("extractor",))
    wait_scan_after(stack, kafka, "acme", restarted_at, timeout=120)
    assert len(raw_items(kafka, "acme")) == 10_000

    # Hold the polls while Siesa changes, so that one scan sees every change.
    stack.run_cli(["pause", "--tenant", "acme"])
    wait_state(stack, kafka, "acme", "paused", lambda s: s["paused"], timeout=60)
    rows = stack.siesa_items(COMPANY)
    changed = [{**row, "f120_descripcion": f"{row['f120_descripcion']} v2"} for row in rows[:50]]
    new = [
        {**rows[0], "f120_referencia": f"NEW-{n:03d}", "f120_rowid": 20_000 + n} for n in range(20)
    ]
    stack.upsert_items(COMPANY, changed + new)
    deleted = [row["f120_referencia"].strip() for row in rows[100:105]]
    for referencia in deleted:
        stack.delete_item(COMPANY, referencia)
    stack.run_cli(["resume", "--tenant", "acme"])

    wait_state(stack, kafka, "acme", "5 deleted", lambda s: s["deleted"] >= 5, timeout=120)
    first_scan = {i["sync_id"] for i in items}
    later = [i for i in raw_items(kafka, "acme") if i["sync_id"] not in first_scan]
    assert len({i["sync_id"] for i in later}) == 1, "all of it in one scan"
    assert Counter(i["op"] for i in later) == {"UPSERT": 70, "DELETE": 5}
    assert {i["key"] for i in later if i["op"] == "DELETE"} == set(deleted)
    assert {i["key"] for i in later if i["op"] == "UPSERT"} == {
        r["f120_referencia"].strip() for r in changed + new
    }
    state = state_of(kafka, "acme")
    assert state is not None
    assert (state["status"], state["changed"], state["deleted"]) == ("idle", 10_070, 5)


def test_kill_9_mid_scan_loses_nothing_and_state_claims_only_what_was_committed(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [siesa_tenant(stack, "acme", COMPANY, mode="diff", poll_interval_s=1)]
    stack.extra_env = {"EXTRACTOR_COMMIT_ROWS": "500"}
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 10_000, seed=5)
    stack.siesa_faults({"latency_ms": 50})  # a scan of 101 pages takes 5 s at least
    stack.start_services(("extractor",))
    wait_state(stack, kafka, "acme", "2,000 committed", lambda s: s["changed"] >= 2000, 120)

    stack.processes.pop("extractor").kill()

    state = state_of(kafka, "acme")
    committed = raw_items(kafka, "acme")
    assert state is not None
    assert 2000 <= len(committed) < 10_000, "killed in the middle of the scan"
    assert state["changed"] == len(committed)  # never more than what was committed
    stack.siesa_faults({})
    stack.start_services(("extractor",))
    wait_state(stack, kafka, "acme", "all 10,000", lambda s: s["changed"] >= 10_000, 180)
    items = raw_items(kafka, "acme")
    assert {i["key"] for i in items} == {
        r["f120_referencia"].strip() for r in stack.siesa_items(COMPANY)
    }
    assert len(items) == 10_000, "nothing emitted twice"
    final = state_of(kafka, "acme")
    assert final is not None
    assert final["changed"] == len(items)
