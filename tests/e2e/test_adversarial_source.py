"""Adversarial input from the source, end to end (issue 13 items 2 and 3), on real
processes, a real broker and the simulators (their admin APIs inject the bad data).

Row-level classes (malformed Unicode in several fields, a 2 MB field, keys with markup,
control characters and path segments): only the offending rows end in the DLQ (cut to
fit, said in a header); every other row of the tenant and of the other tenant reaches
its target (target == source). Source-level classes (a page repeated, an answer over
the cap, HTML with 200): the tenant is `degraded` with a clear error naming it and the
cap, one alert each, while the other tenant's new rows keep arriving; once Siesa is
sane again the tenant is back to `idle`. No service exits; `status` and `dlq list`
print throughout."""

from __future__ import annotations

import json
from typing import Any

import httpx

from devtools import procs
from devtools.expected import mismatches
from devtools.stack import Stack
from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.state import read_states
from simulators.catalogue import generate_items
from tests.webhook import Receiver

ACME, BETA = 8585, 9090
# Rows whose key is hostile text but valid: they go through like any other.
ODD_KEYS = ["[/]", "[link=http://x]EVIL[/link]", "../../etc/passwd", "a/b?c=d#e", "TAB\tNL\n-1"]
MAX_RESPONSE_BYTES = 4_000_000


def wait(stack: Stack, what: str, condition: Any, timeout: float = 60) -> None:
    def check() -> bool:
        stack.check_alive()
        return bool(condition())

    procs.wait_until(check, timeout=timeout, interval=0.5, what=what)


def upsert(stack: Stack, company: int, rows: list[dict[str, Any]]) -> None:
    """Rows to the Siesa simulator as JSON with every non-ASCII character escaped: broken
    text (lone surrogates) travels as ``\\udce9`` escapes."""
    response = httpx.post(
        f"{stack.siesa_url}/_admin/companies/{company}/items",
        content=json.dumps(rows),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    response.raise_for_status()


def statuses(stack: Stack) -> dict[str, dict[str, Any]]:
    """`siesa-sync status --json` by tenant."""
    return {r["tenant"]: r for r in json.loads(stack.run_cli(["status", "--json"]))}


def extractor_state(stack: Stack, tenant: str) -> dict[str, Any]:
    """The tenant's state as the extractor stored it (what `status` shows, read in
    process: quicker than the CLI for a check in each case)."""
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    (state,) = [
        s
        for s in read_states(kafka, default_serde())
        if (s["tenant"], s["writer"]) == (tenant, "extractor")
    ]
    return state


def dead_letters(stack: Stack) -> dict[str, dict[str, str]]:
    letters = json.loads(stack.run_cli(["dlq", "list", "--json"]))
    return {d["key"]: d["headers"] for d in letters}


def keys(rows: list[dict[str, Any]]) -> set[str]:
    return {r["f120_referencia"].strip() for r in rows}


def a_hostile_siesa_degrades_acme_alone(
    stack: Stack,
    hook: Receiver,
    kind: str,
    expected: str,
    rows: dict[int, list[dict[str, Any]]],
    number: int,
) -> None:
    """Siesa answers acme's consultas with `kind`: acme degraded with `expected` in its
    last error and one alert, while beta's new rows land; then Siesa is sane again and
    acme's new rows land too. `rows`: the catalogue of each company, grown here."""
    alerts = len(hook.bodies)
    stack.siesa_faults({"hostile": {str(ACME): kind}, "oversized_bytes": 6_000_000})
    new_beta = generate_items(BETA, 2, seed=40 + number, start_rowid=100 + 10 * number)
    rows[BETA] += [{**r, "f120_referencia": f"NEW-{number}-{i}"} for i, r in enumerate(new_beta)]
    upsert(stack, BETA, rows[BETA][-2:])

    wait(stack, f"an alert for acme's Siesa answering {kind}", lambda: len(hook.bodies) > alerts)
    alert = hook.bodies[alerts]
    assert (alert["tenant"], alert["condition"]) == ("acme", "sync_failed")
    assert expected in alert["reason"]
    acme = extractor_state(stack, "acme")
    assert acme["status"] == "degraded"
    assert acme["last_error"].startswith("siesa_limit: tenant acme: Siesa page ")
    assert expected in acme["last_error"]
    wait(
        stack,
        f"beta's new rows in WMS while acme's Siesa answers {kind}",
        lambda: mismatches("wms", rows[BETA], stack.wms_products()) == [],
    )

    stack.siesa_faults({})
    new_acme = generate_items(ACME, 1, seed=50 + number, start_rowid=200 + number)
    rows[ACME] += [{**new_acme[0], "f120_referencia": f"NEW-{number}"}]
    upsert(stack, ACME, rows[ACME][-1:])
    wait(
        stack,
        "acme's new row in Kong once Siesa is sane again",
        lambda: mismatches("kong", rows[ACME], stack.kong_skus()) == [],
    )


def test_hostile_rows_and_a_hostile_siesa_cost_only_what_they_hold(stack: Stack) -> None:
    acme_rows = generate_items(ACME, 24, seed=31)
    odd = [
        {**row, "f120_referencia": key}
        for key, row in zip(ODD_KEYS, generate_items(ACME, 5, 32, start_rowid=25), strict=True)
    ]
    broken = generate_items(ACME, 4, seed=33, start_rowid=30)
    broken[0]["f120_descripcion"] = "caf\udce9 con leche"  # a byte that is not UTF-8
    broken[1]["f120_unidad_medida"] = "UN\ud800"  # a lone surrogate escape
    broken[2]["f120_descripcion_comercial\udcff"] = "columna rota"  # in a column's name
    broken[3]["f120_descripcion"] = "D" * 2_000_000  # a 2 MB field
    beta_rows = generate_items(BETA, 20, seed=34)
    stack.tenants = [
        {
            **stack.kong_tenant("acme", ACME),
            "source": {
                **stack.kong_tenant("acme", ACME)["source"],
                "page_size": 10,
                "max_response_bytes": MAX_RESPONSE_BYTES,
            },
        },
        stack.wms_tenant("beta", BETA),
    ]
    stack.start_simulators()
    upsert(stack, ACME, acme_rows + odd + broken)
    upsert(stack, BETA, beta_rows)
    stack.create_topics()
    with Receiver() as hook:
        stack.service_env["EXTRACTOR_ALERT_WEBHOOK_URL"] = hook.url
        stack.service_env["EXTRACTOR_MAX_BACKOFF_S"] = "2"
        stack.start_services()

        # Row level: the good and odd-keyed rows land, the four broken ones are dead letters.
        letters: dict[str, dict[str, str]] = {}

        def rows_landed() -> bool:
            if len(stack.kong_skus()) < 29 or len(stack.wms_products()) < 20:
                return False
            letters.update(dead_letters(stack))
            return len(letters) >= 4

        wait(stack, "29 in Kong, 20 in WMS, 4 dead letters", rows_landed, timeout=90)
        assert mismatches("kong", acme_rows + odd, stack.kong_skus()) == []
        assert mismatches("wms", beta_rows, stack.wms_products()) == []
        assert sorted(letters) == sorted(f"acme/{k}" for k in keys(broken))
        assert {h["error.stage"] for h in letters.values()} == {"extract"}
        assert {h["error.class"] for h in letters.values()} == {"invalid_row"}
        by_key = {k.removeprefix("acme/"): h for k, h in letters.items()}
        refs = [r["f120_referencia"].strip() for r in broken]
        refused = "text that is not valid Unicode"
        assert (
            f"field f120_descripcion: {refused} (character 3)" in (by_key[refs[0]]["error.message"])
        )
        assert f"field f120_unidad_medida: {refused}" in by_key[refs[1]]["error.message"]
        assert (
            f"field f120_descripcion_comercial\\udcff: {refused}"
            in (by_key[refs[2]]["error.message"])
        )
        assert (
            "field f120_descripcion is 2000000 characters long"
            in (by_key[refs[3]]["error.message"])
        )
        assert by_key[refs[3]]["error.truncated"].startswith("value: ")
        assert "error.truncated" not in by_key[refs[0]]
        table = stack.run_cli(["dlq", "list", "--tenant", "acme"])
        assert table.startswith("4 dead letters"), table

        # Source level: each hostile answer degrades acme alone, with one alert naming
        # the tenant and the cap; beta's new rows keep landing; a sane Siesa restores acme.
        cases = [
            ("repeat_page", "Siesa page 2 is page 1 again (Siesa ignores numPag)"),
            (
                "oversized",
                f"over the cap of {MAX_RESPONSE_BYTES} bytes (source.max_response_bytes)",
            ),
            ("html", "the answer is not JSON (HTTP 200, content-type text/html"),
        ]
        rows = {ACME: acme_rows + odd, BETA: list(beta_rows)}
        for number, (kind, expected) in enumerate(cases):
            a_hostile_siesa_degrades_acme_alone(stack, hook, kind, expected, rows, number)

        assert len(hook.bodies) == len(cases)  # one alert per fault, none for beta
        assert {b["tenant"] for b in hook.bodies} == {"acme"}

    assert {t: s["status"] for t, s in statuses(stack).items()} == {"acme": "idle", "beta": "idle"}
    out = stack.run_cli(["status"])
    assert "acme" in out
    assert "beta" in out
    assert mismatches("kong", rows[ACME], stack.kong_skus()) == []
    assert mismatches("wms", rows[BETA], stack.wms_products()) == []
    # Nothing more was dead-lettered: not by the source faults, not by the scans since
    # (an unchanged bad row is dead-lettered once).
    assert len(json.loads(stack.run_cli(["dlq", "list", "--json"]))) == len(letters)
    stack.check_alive()
    assert {name: stack.stop(name) for name in ("extractor", "transformer", "loader")} == {
        "extractor": 0,
        "transformer": 0,
        "loader": 0,
    }
