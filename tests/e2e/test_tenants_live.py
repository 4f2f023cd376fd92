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
        procs.wait_until(equal, timeout=60, interval=0.5, what=f"{target} holding Siesa's items")
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
