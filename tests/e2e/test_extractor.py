"""The extractor as a real process, on the real broker, reading the Siesa simulator
(a real HTTP server): what reaches the raw topic, what its state says, what Siesa saw."""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from datetime import datetime

from devtools.stack import Stack
from services.common import topics
from services.common.settings import KafkaSettings
from tests.e2e.extractor_support import (
    SERDE,
    Tail,
    consultas,
    raw_items,
    read_topic,
    siesa_tenant,
    state_of,
    wait_scan_after,
    wait_state,
)

COMPANY = 8585
log_figures = logging.getLogger("figures").info  # shown with --log-cli-level=INFO
OTHER_COMPANY = 8020


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
    log_figures(
        "diff: the scan after the changes emitted %s", dict(Counter(i["op"] for i in later))
    )
    assert Counter(i["op"] for i in later) == {"UPSERT": 70, "DELETE": 5}
    assert {i["key"] for i in later if i["op"] == "DELETE"} == set(deleted)
    assert {i["key"] for i in later if i["op"] == "UPSERT"} == {
        r["f120_referencia"].strip() for r in changed + new
    }
    state = state_of(kafka, "acme")
    assert state is not None
    assert (state["status"], state["changed"], state["deleted"]) == ("idle", 10_070, 5)

    # `resync` re-emits the whole catalogue once.
    stack.run_cli(["resync", "--tenant", "acme"])
    wait_state(stack, kafka, "acme", "resynced", lambda s: s["changed"] >= 20_085, timeout=120)
    before = first_scan | {i["sync_id"] for i in later}
    again = [i for i in raw_items(kafka, "acme") if i["sync_id"] not in before]
    assert len(again) == 10_015
    assert {i["op"] for i in again} == {"UPSERT"}


def test_kill_9_mid_scan_loses_nothing_and_state_claims_only_what_was_committed(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [siesa_tenant(stack, "acme", COMPANY, mode="diff", poll_interval_s=1)]
    stack.service_env = {"EXTRACTOR_COMMIT_ROWS": "500"}
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
    log_figures("kill -9: %d rows committed, state claims %d", len(committed), state["changed"])
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
    log_figures("kill -9: after the restart %d rows, state claims %d", len(items), final["changed"])
    assert final["changed"] == len(items)


def test_429s_and_503s_slow_a_scan_down_but_lose_nothing(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [siesa_tenant(stack, "acme", COMPANY, mode="diff", poll_interval_s=30)]
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 2000, seed=9)
    stack.siesa_faults(
        {
            "errors": [
                {"rate": 0.2, "status": 429, "retry_after_s": 1},
                {"rate": 0.05, "status": 503},
            ],
            "seed": 11,
        }
    )
    stack.start_services(("extractor",))

    wait_state(stack, kafka, "acme", "a complete scan", lambda s: s["last_scan_ended_at"], 180)

    items = raw_items(kafka, "acme")
    assert sorted(i["key"] for i in items) == sorted(
        r["f120_referencia"].strip() for r in stack.siesa_items(COMPANY)
    )
    log = consultas(stack, COMPANY)
    statuses = Counter(status for _, status, _ in log)
    assert statuses[429] > 0, statuses
    assert statuses[503] > 0, statuses
    # After each 429 (Retry-After: 1) the next request came at least 1 s later.
    gaps = [log[n + 1][0] - t for n, (t, status, _) in enumerate(log[:-1]) if status == 429]
    log_figures(
        "429/503: %d requests, statuses %s, shortest wait after a 429 %.2fs",
        len(log),
        dict(statuses),
        min(gaps),
    )
    assert min(gaps) >= 0.95, sorted(gaps)[:5]


def test_codigo_error_in_http_200_degrades_the_tenant_until_a_good_poll(
    stack: Stack, kafka: KafkaSettings
) -> None:
    mensaje = "Error en la consulta: la base de datos no responde"
    stack.tenants = [siesa_tenant(stack, "acme", COMPANY, mode="diff", poll_interval_s=1)]
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 300, seed=1)
    stack.siesa_faults({"codigo_error_rate": 1.0, "codigo": 7, "mensaje": mensaje})
    stack.start_services(("extractor",))

    state = wait_state(
        stack, kafka, "acme", "degraded", lambda s: s["status"] == "degraded", timeout=60
    )
    log_figures("codigo: state %s, last_error %r", state["status"], state["last_error"])
    assert mensaje in state["last_error"]
    assert "codigo 7" in state["last_error"]
    assert raw_items(kafka, "acme") == []

    stack.siesa_faults({})
    state = wait_state(stack, kafka, "acme", "recovered", lambda s: s["status"] == "idle", 60)
    assert state["last_error"] is None
    assert len(raw_items(kafka, "acme")) == 300


def test_a_tenant_with_wrong_credentials_fails_alone_and_no_secret_leaks(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [
        siesa_tenant(stack, "good", COMPANY, mode="diff", poll_interval_s=2),
        siesa_tenant(stack, "bad", OTHER_COMPANY, mode="diff", poll_interval_s=2),
    ]
    wrong_key, wrong_token = secrets.token_hex(16), f"eyJ.{secrets.token_urlsafe(24)}"
    stack.service_env = {
        "BAD_SIESA_CONNI_KEY": wrong_key,
        "BAD_SIESA_CONNI_TOKEN": wrong_token,
        "EXTRACTOR_MAX_FIELD_LENGTH": "300",
    }
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 200, seed=2)
    stack.seed(OTHER_COMPANY, 200, seed=3)
    stack.start_services(("extractor",))
    first = wait_state(stack, kafka, "good", "first scan", lambda s: s["changed"] >= 200, 60)
    bad = wait_state(stack, kafka, "bad", "failed", lambda s: s["status"] == "failed", 60)
    assert "HTTP 401" in bad["last_error"]
    assert "ConniKey/ConniToken refused" in bad["last_error"]

    # The good tenant's change arrives within its poll interval + 2 s.
    row = stack.siesa_items(COMPANY)[7]
    tail = Tail(kafka, topics.RAW)
    try:
        changed_at = time.monotonic()
        stack.upsert_items(COMPANY, [{**row, "f120_descripcion": 'CAMBIO & "URGENTE"'}])
        tail.wait_for(lambda r: r.key == f"good/{row['f120_referencia'].strip()}".encode(), 4)
        took = time.monotonic() - changed_at
    finally:
        tail.close()
    log_figures("two tenants: the good tenant's change arrived in %.2fs", took)
    assert took <= 2 + 2, f"took {took:.1f}s"
    # An over-long row goes to the DLQ with the reason; the others go on.
    too_long = {
        **row,
        "f120_referencia": "LARGO-1",
        "f120_rowid": 9999,
        "f120_descripcion": "X" * 301,
    }
    stack.upsert_items(COMPANY, [too_long])
    wait_state(stack, kafka, "good", "dead letter", lambda s: s["dead_lettered"] >= 1, 30)
    (dead,) = read_topic(kafka, topics.DLQ)
    assert dead.key == b"good/LARGO-1"
    assert dead.headers["error.class"] == b"invalid_row"
    assert b"field f120_descripcion is 301 characters long" in dead.headers["error.message"]
    assert first["status"] == "idle"
    assert state_of(kafka, "bad")["status"] == "failed"  # type: ignore[index]

    # No credential anywhere: logs, topics (keys, values, headers), DLQ headers.
    stack.stop_all()
    creds = stack.credentials
    leaks = [creds.conni_key, creds.conni_token, wrong_key, wrong_token]
    texts = [p.read_text(errors="replace") for p in (stack.run_dir / "logs").glob("*.log")]
    assert any("tenant bad" in t for t in texts)  # the logs were captured
    for name in (topics.RAW, topics.DLQ, topics.STATE, topics.FINGERPRINTS):
        for record in read_topic(kafka, name):
            parts = [record.key or b"", record.value or b"", *record.headers.values()]
            texts.append(b" ".join(parts).decode(errors="replace"))
    found = [(secret[:4], text[:80]) for secret in leaks for text in texts if secret in text]
    assert found == []


def test_filter_mode_emits_rows_sharing_a_timestamp_once_each(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [
        siesa_tenant(
            stack,
            "acme",
            COMPANY,
            mode="filter",
            change_date_column="f120_fecha_actualizacion",
            page_size=7,
            poll_interval_s=1,
        )
    ]
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 10, seed=4)  # dated 2024-2025: the first scan sets the watermark
    stack.start_services(("extractor",))
    wait_state(stack, kafka, "acme", "first scan", lambda s: s["changed"] >= 10, 60)
    stamp = datetime.now().strftime("%Y%m%d%H%M%S")
    template = stack.siesa_items(COMPANY)[0]
    same_time = [
        {
            **template,
            "f120_referencia": f"MISMA-HORA-{n:03d}",
            "f120_rowid": 1000 + n,
            "f120_fecha_actualizacion": stamp,
        }
        for n in range(300)
    ]
    stack.upsert_items(COMPANY, same_time, keep_dates=True)

    wait_state(stack, kafka, "acme", "300 more", lambda s: s["changed"] >= 310, 60)
    # Later polls get the same 300 rows back (the filter is by day): none is re-emitted.
    settled = wait_scan_after(stack, kafka, "acme", None, 10)["last_scan_ended_at"]
    again = wait_scan_after(stack, kafka, "acme", settled, 30)
    wait_scan_after(stack, kafka, "acme", again["last_scan_ended_at"], 30)
    items = raw_items(kafka, "acme")
    assert sorted(i["key"] for i in items if i["key"].startswith("MISMA-HORA-")) == sorted(
        r["f120_referencia"] for r in same_time
    )
    assert len(items) == 310
    log_figures("filter: %d rows emitted after several polls of the same day", len(items))
    # A change of one of them is emitted once.
    stack.upsert_items(COMPANY, [{**same_time[150], "f120_descripcion": "CAMBIADO"}])
    wait_state(stack, kafka, "acme", "one more", lambda s: s["changed"] >= 311, 30)
    later = wait_scan_after(stack, kafka, "acme", None, 10)
    wait_scan_after(stack, kafka, "acme", later["last_scan_ended_at"], 30)
    items = raw_items(kafka, "acme")
    assert len(items) == 311
    assert Counter(i["key"] for i in items)["MISMA-HORA-150"] == 2
    # Only the first scan read the whole consulta; the others asked for changed rows.
    log = consultas(stack, COMPANY)
    unfiltered = [n for n, (_, _, filtered) in enumerate(log) if not filtered]
    assert unfiltered == [0, 1], "the first scan: 10 rows in pages of 7"


def test_hybrid_mode_filters_each_poll_and_reconciles_deletions(
    stack: Stack, kafka: KafkaSettings
) -> None:
    reconcile_s = 15.0
    stack.tenants = [
        siesa_tenant(
            stack,
            "acme",
            COMPANY,
            change_date_column="f120_fecha_actualizacion",  # hybrid by default then
            poll_interval_s=1,
            reconcile_interval_s=reconcile_s,
        )
    ]
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 500, seed=6)
    stack.start_services(("extractor",))
    wait_state(stack, kafka, "acme", "reconciled", lambda s: s["changed"] >= 500, 60)
    rows = stack.siesa_items(COMPANY)

    tail = Tail(kafka, topics.RAW)
    try:
        edited_at = time.monotonic()
        stack.upsert_items(COMPANY, [{**rows[42], "f120_descripcion": "EDITADO"}])
        key = f"acme/{rows[42]['f120_referencia'].strip()}".encode()
        tail.wait_for(lambda r: r.key == key, 10)
        took = time.monotonic() - edited_at
        gone = rows[99]["f120_referencia"].strip()
        stack.delete_item(COMPANY, gone)
        deleted = tail.wait_for(lambda r: r.key == f"acme/{gone}".encode(), reconcile_s + 15)
    finally:
        tail.close()
    log_figures("hybrid: the edit arrived in %.2fs", took)
    assert took <= 1 + 2, f"the edit took {took:.1f}s"
    assert SERDE.decode_as("RawItem", deleted[-1].value)["op"] == "DELETE"

    # Full reads of the catalogue (6 pages of 100 each) only every reconcile interval.
    log = consultas(stack, COMPANY)
    scans: list[list[float]] = []
    previous_filtered = True
    for at, _, filtered in log:
        if not filtered:
            if previous_filtered:
                scans.append([])
            scans[-1].append(at)
        previous_filtered = filtered
    log_figures("hybrid: full reads started at %s s", [round(s[0], 1) for s in scans])
    assert len(scans) == 2, [len(s) for s in scans]
    # 500 rows; then 499, read twice: a deletion is confirmed by a second read.
    assert [len(s) for s in scans] == [6, 10]
    assert scans[1][0] - scans[0][0] >= reconcile_s
    assert sum(1 for _, _, filtered in log if filtered) >= 5


def test_a_budget_of_60_requests_a_minute_holds_during_a_full_scan(
    stack: Stack, kafka: KafkaSettings
) -> None:
    stack.tenants = [
        siesa_tenant(
            stack,
            "acme",
            COMPANY,
            mode="diff",
            page_size=1,
            poll_interval_s=300,
            request_budget_per_min=60,
        )
    ]
    stack.start_siesa_simulator()
    stack.seed(COMPANY, 70, seed=8)  # 71 requests: more than one minute's budget
    stack.start_services(("extractor",))

    state = wait_state(stack, kafka, "acme", "a full scan", lambda s: s["changed"] >= 70, 150)

    assert state["pages"] == 71
    assert len(raw_items(kafka, "acme")) == 70
    times = [at for at, _, _ in consultas(stack, COMPANY)]
    assert len(times) == 71
    busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    log_figures("budget: %d requests, at most %d in any 60 s", len(times), busiest)
    assert busiest <= 60
    assert busiest >= 55, "the budget was used, not wasted"
