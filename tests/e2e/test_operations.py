"""Operating the pipeline, end to end on real processes: dead-letter redrive after a
mapping fix, replay of a tenant's window, and status agreeing with the targets."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from devtools import procs
from devtools.stack import Stack
from simulators.catalogue import generate_items
from tests import ROOT
from tests.webhook import Receiver

COMPANY = 8585
OTHER_COMPANY = 9090

STRICT = """
name: acme-barcodes
version: "{version}"
extends: siesa-items
fields:
  barcode:
    source: f120_codigo_barras
    pattern: "{pattern}"
    on_mismatch: reject
"""


def write_mapping(directory: Path, version: str, pattern: str) -> None:
    (directory / "acme-barcodes.yaml").write_text(
        STRICT.format(version=version, pattern=pattern.replace("\\", "\\\\"))
    )


def mappings_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", directory)
    return directory


def rows(count: int, seed: int, barcode: Any) -> list[dict[str, Any]]:
    items = generate_items(COMPANY, count, seed)
    for n, row in enumerate(items):
        row["f120_codigo_barras"] = barcode(n)
    return items


def dlq(stack: Stack, *args: str) -> Any:
    return json.loads(stack.run_cli(["dlq", "list", "--tenant", "acme", "--json", *args]))


def wait(stack: Stack, what: str, condition: Any, timeout: float = 120) -> None:
    def check() -> bool:
        stack.check_alive()
        return bool(condition())

    procs.wait_until(check, timeout=timeout, interval=0.5, what=what)


def kong_ids(stack: Stack) -> set[str]:
    return {s["external_id"] for s in stack.kong_skus()}


def traced_calls(stack: Stack, trace_id: str) -> list[dict[str, Any]]:
    """Kong's logged requests whose `traceparent` names trace `trace_id`."""
    response = httpx.get(
        f"{stack.kong_url}/_admin/requests", params={"trace_id": trace_id}, timeout=30
    )
    response.raise_for_status()
    calls: list[dict[str, Any]] = response.json()
    return calls


def test_dead_letters_redriven_after_a_mapping_fix_land_once(stack: Stack, tmp_path: Path) -> None:
    directory = mappings_dir(tmp_path)
    write_mapping(directory, "1", r"\d{13}")  # 12-digit UPC barcodes are refused
    stack.service_env["TRANSFORMER_MAPPINGS_DIR"] = str(directory)
    stack.tenants = [{**stack.kong_tenant("acme", COMPANY), "mapping": "acme-barcodes"}]
    stack.start_simulators()
    good = rows(30, 1, lambda n: f"770{n:010d}")
    upc = rows(10, 2, lambda n: f"07{n:010d}")
    stack.upsert_items(COMPANY, good + upc)
    stack.create_topics()
    stack.start_services()

    wait(
        stack,
        "30 in Kong, 10 dead letters",
        lambda: len(kong_ids(stack)) == 30 and len(dlq(stack)) == 10,
    )
    letters = dlq(stack, "--error-class", "mapping")
    assert sorted(d["key"] for d in letters) == sorted(
        f"acme/{r['f120_referencia'].strip()}" for r in upc
    )
    assert all("field barcode" in d["headers"]["error.message"] for d in letters)

    # The fix: UPC-A is fine after all. The transformer restarts with it.
    write_mapping(directory, "2", r"\d{12,13}")
    stack.stop("transformer")
    stack.start_services(("transformer",))
    out = stack.run_cli(["dlq", "replay", "--tenant", "acme", "--error-class", "mapping"])
    assert out.startswith("sent 10;"), out

    wait(stack, "all 40 in Kong", lambda: len(kong_ids(stack)) == 40)
    assert {r["f120_referencia"].strip() for r in upc} <= kong_ids(stack)
    # A redriven product keeps its trace: Kong was called in the dead letter's trace.
    for letter in letters:
        assert traced_calls(stack, letter["headers"]["trace_id"]), letter["key"]
    again = stack.run_cli(["dlq", "replay", "--tenant", "acme", "--error-class", "mapping"])
    assert again.startswith("sent 0;"), again
    assert "10 already redriven" in again

    # A record that fails again comes back one attempt higher, until the maximum.
    bad = rows(1, 3, lambda n: "NOT-A-BARCODE")
    stack.upsert_items(COMPANY, bad)
    key = f"acme/{bad[0]['f120_referencia'].strip()}"

    def attempts() -> list[int]:
        return sorted(int(d["headers"]["error.attempts"]) for d in dlq(stack) if d["key"] == key)

    wait(stack, "the bad record dead-lettered", lambda: attempts() == [1])
    for expected in ([1, 2], [1, 2, 3]):
        sent = stack.run_cli(["dlq", "replay", "--tenant", "acme"])
        assert sent.startswith("sent 1;"), sent
        wait(stack, f"attempts {expected}", lambda want=expected: attempts() == want)
    final = stack.run_cli(["dlq", "replay", "--tenant", "acme"])
    assert final.startswith("sent 0;"), final
    traces = {d["headers"]["trace_id"] for d in dlq(stack) if d["key"] == key}
    assert len(traces) == 1, f"each redrive of {key} goes on in its trace: {traces}"
    assert "1 at max attempts (3)" in final
    assert len(kong_ids(stack)) == 40


NAMES = """
name: acme-names
version: "{version}"
extends: siesa-items
fields:
  name:
    source: f120_descripcion
    text: [{step}]
"""


def wms_writes(stack: Stack) -> int:
    stats = stack.sim_stats(stack.wms_url)
    return sum(
        r["count"]
        for r in stats["requests"]
        if (r["method"], r["route"]) in {("POST", "/products"), ("PATCH", "/products/{id}")}
    )


def status(stack: Stack) -> dict[str, dict[str, Any]]:
    rows = json.loads(
        stack.run_cli(["status", "--json", "--tenants-file", str(stack.tenants_file)])
    )
    return {row["tenant"]: row for row in rows}


def test_replay_remaps_one_tenant_while_another_keeps_syncing_and_status_agrees(
    stack: Stack, tmp_path: Path
) -> None:
    directory = mappings_dir(tmp_path)
    names = directory / "acme-names.yaml"
    names.write_text(NAMES.format(version="1", step="trim"))
    stack.service_env["TRANSFORMER_MAPPINGS_DIR"] = str(directory)
    stack.tenants = [
        {**stack.kong_tenant("acme", COMPANY), "mapping": "acme-names"},
        stack.wms_tenant("beta", OTHER_COMPANY),
    ]
    stack.start_simulators()
    start = (datetime.now(UTC) - timedelta(seconds=5)).isoformat(timespec="seconds")
    stack.seed(COMPANY, 100, seed=5)
    stack.seed(OTHER_COMPANY, 100, seed=6)
    stack.create_topics()
    stack.start_services()
    wait(
        stack,
        "100 in Kong and 100 in WMS",
        lambda: len(stack.kong_skus()) == 100 and len(stack.wms_products()) == 100,
    )

    # status agrees with what the targets hold once the pipeline is idle.
    def settled() -> bool:
        rows = status(stack)
        return all(rows[t]["lag"] == 0 and rows[t]["loaded"] == 100 for t in ("acme", "beta"))

    wait(stack, "status settled", settled, timeout=60)
    rows = status(stack)
    assert rows["acme"]["loaded"] == len(stack.kong_skus())
    assert rows["beta"]["loaded"] == len(stack.wms_products())
    assert (rows["acme"]["target"], rows["beta"]["target"]) == ("kong", "wms")
    assert rows["acme"]["dead_lettered"] == rows["beta"]["dead_lettered"] == 0
    assert rows["acme"]["transformed"] == 100
    assert rows["acme"]["status"] != "failed"

    # A mapping change for acme: names in lower case from now on.
    names.write_text(NAMES.format(version="2", step="lower"))
    stack.stop("transformer")
    stack.start_services(("transformer",))
    writes_before = wms_writes(stack)
    live = generate_items(OTHER_COMPANY, 5, seed=6)
    for row in live:
        row["f120_descripcion"] = f"LIVE {row['f120_referencia'].strip()}"
    stack.upsert_items(OTHER_COMPANY, live)

    out = stack.run_cli(["replay", "--tenant", "acme", "--from", start, "--stage", "transform"])
    assert "100 products of acme sent to transform" in out, out

    def acme_lowered() -> bool:
        skus = stack.kong_skus()
        return len(skus) == 100 and all(s["name"] == s["name"].lower() for s in skus)

    def beta_live() -> bool:
        held = {p["external_id"]: p["name"] for p in stack.wms_products()}
        return all(held.get(r["f120_referencia"].strip()) == r["f120_descripcion"] for r in live)

    wait(stack, "acme re-mapped in Kong", acme_lowered)
    wait(stack, "beta's live changes in WMS", beta_live)
    wait(stack, "beta settled", lambda: status(stack)["beta"]["lag"] == 0, timeout=60)
    assert wms_writes(stack) - writes_before == len(live)  # no replayed write reached WMS


def test_a_tenant_with_bad_credentials_raises_exactly_one_alert_without_secrets(
    stack: Stack,
) -> None:
    poll_s = 2.0
    stack.tenants = [stack.kong_tenant("bad", COMPANY, poll_interval_s=poll_s)]
    wrong_key, wrong_token = "wrong-key-4711", "wrong-token-0815"
    stack.start_simulators()
    stack.seed(COMPANY, 3)
    stack.create_topics()
    with Receiver() as receiver:
        stack.service_env.update(
            {
                "BAD_SIESA_CONNI_KEY": wrong_key,
                "BAD_SIESA_CONNI_TOKEN": wrong_token,
                "EXTRACTOR_ALERT_WEBHOOK_URL": receiver.url,
            }
        )
        stack.start_services(("extractor",))
        url = f"{stack.health_url('extractor')}/readyz"

        def ready() -> bool:
            stack.check_alive()
            try:
                return bool(receiver.bodies) or httpx.get(url, timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        procs.wait_until(ready, timeout=60, interval=0.1, what="the extractor ready")
        ready_at = time.time()
        procs.wait_until(lambda: bool(receiver.bodies), timeout=30, interval=0.1, what="alert")
        first_alert_after = receiver.received_at[0] - ready_at

        # The extractor keeps failing: two more refused polls bring no second alert.
        def refused_polls() -> int:
            stats = stack.sim_stats(stack.siesa_url)
            return sum(r["count"] for r in stats["requests"] if r["status"] == 401)

        procs.wait_until(lambda: refused_polls() >= 3, timeout=60, what="2 more refused polls")
        bodies = list(receiver.bodies)

    assert len(bodies) == 1, bodies
    assert first_alert_after <= 2 * poll_s
    alert = bodies[0]
    assert (alert["tenant"], alert["condition"]) == ("bad", "sync_failed")
    assert "401" in alert["reason"]
    sent = json.dumps(bodies)
    for secret in (
        wrong_key,
        wrong_token,
        stack.credentials.conni_key,
        stack.credentials.conni_token,
    ):
        assert secret not in sent
