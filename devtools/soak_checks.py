"""The soak's verdicts: does each target hold its tenant's Siesa catalogue (bar the items
refused on purpose), does the DLQ hold exactly the refused ids; and the summary printed
at the end."""

from __future__ import annotations

from typing import Any

from devtools.expected import expected_sku, expected_wms_product, held_sku, mismatches
from devtools.soak_load import Tenant
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from services.ops.dlq import dead_letters


def say(text: str) -> None:
    print(text, flush=True)


def target_problems(stack: Stack, tenant: Tenant) -> list[str]:
    source = stack.siesa_items(tenant.company)
    rejected = set(tenant.rejected)
    rows = [r for r in source if r["f120_referencia"].strip() not in rejected]
    held = tenant.held(stack)
    problems = mismatches(
        tenant.target,
        rows,
        [h for h in held if h["external_id"] not in rejected],
        tenant.deleted,
    )
    expect, flatten = (
        (expected_sku, held_sku) if tenant.target == "kong" else (expected_wms_product, dict)
    )
    by_id = {h["external_id"]: flatten(h) for h in held}
    for row in source:
        ref = row["f120_referencia"].strip()
        got = by_id.get(ref)
        if ref in rejected and got is not None:
            wanted = expect(row)
            if all(got.get(k) == v for k, v in wanted.items()):
                problems.append(f"{ref}: refused on purpose, yet held in its latest version")
    return problems


def dlq_problems(kafka: KafkaSettings, tenants: list[Tenant]) -> tuple[list[str], list[Any]]:
    letters = dead_letters(kafka)
    wanted = {f"{t.id}/{ref}" for t in tenants for ref in t.rejected}
    keys = [(d.key or b"").decode() for d in letters]
    problems = [
        f"{k}: dead-lettered but not refused on purpose" for k in sorted(set(keys) - wanted)
    ]
    problems += [f"{k}: refused on purpose but not in the DLQ" for k in sorted(wanted - set(keys))]
    problems += [
        f"{(d.key or b'').decode()}: dead-lettered as {d.error_class!r}, not target_rejected"
        for d in letters
        if d.error_class != "target_rejected"
    ]
    return problems, letters


def check(name: str, problems: list[str]) -> dict[str, Any]:
    return {"name": name, "ok": not problems, "problems": problems[:20], "count": len(problems)}


def print_summary(result: dict[str, Any], results_name: str) -> None:
    say("")
    say(f"soak summary ({result['minutes']:g} min; settled {result['settle_s']} s after the load)")
    for tenant_id, t in result["tenants"].items():
        say(
            f"  {tenant_id} ({t['target']}): Siesa {t['siesa_items']} items, target holds "
            f"{t['held']}; {t['edits']} edits, {t['new_items']} new, {t['deleted']} deleted, "
            f"{len(t['rejected_ids'])} refused on purpose ({t['rejected_edits']} edits of them)"
        )
    say(f"  faults: {result['faults_by_kind']}")
    for f in result["faults"]:
        extra = {k: v for k, v in f.items() if k not in ("kind", "target", "at_s")}
        say(f"    {f['at_s']:7.1f}s {f['kind']:<15} {f['target']:<12} {extra or ''}")
    say(f"  DLQ: {result['dlq']['records']} records, by reason {result['dlq']['by_reason']}")
    for name, m in result["memory"].items():
        say(
            f"  {name:<12} RSS start {m['start_mb']:.1f} MB, end {m['end_mb']:.1f} MB, "
            f"peak {m['peak_mb']:.1f} MB ({m['samples']} samples): {m['reason']}"
        )
    for item in result["checks"]:
        say(f"  {'PASS' if item['ok'] else 'FAIL'}  {item['name']}")
        for problem in item["problems"]:
            say(f"        {problem}")
        if item["count"] > len(item["problems"]):
            say(f"        ... and {item['count'] - len(item['problems'])} more")
    say(f"soak {'passed' if result['ok'] else 'FAILED'}; results in {results_name}")
