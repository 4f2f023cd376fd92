"""Adversarial input, end to end (issue 13): each case is hostile data or a hostile
mapping on real processes, and shows that only the offending rows end in the DLQ,
every other row of the tenant and every row of the other tenants reach their targets
(target == source), no service exits, and `status` and `dlq list` still print.

Here: one tenant's mapping holds an expression bomb and a catastrophic pattern, some
of its rows set them off, and their keys carry rich markup and control characters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from devtools import procs
from devtools.expected import mismatches
from devtools.stack import Stack
from services.common.settings import ROOT
from simulators.catalogue import generate_items

ACME, BETA = 8585, 9090

# The default mapping, plus a bomb in display_name and a catastrophic pattern on unit.
# For ordinary rows both give what siesa-items gives: display_name unchanged, units
# of letters only.
HOSTILE = r"""
name: acme-hostile
extends: siesa-items
fields:
  display_name:
    source: [f120_descripcion_comercial, f120_descripcion]
    expr: "str(((value,) * 9999,) * 9999) if startswith(value, '@@') else value"
  unit:
    source: f120_unidad_medida
    text: [upper]
    lookup: {UND: UNIT, UN: UNIT}
    pattern: "([A-Z]|[A-Z]{2})+"
"""
MARKUP_KEYS = ["[/]", "[link=http://x]EVIL[/link]", "CTRL\x1b[31m\x07-1"]
PATTERN_KEYS = ["PATTERN-1", "PATTERN-2"]
SIESA_MESSAGE = "[/] [link=http://x]click[/link] \x1b[2J\x07 consulta fallida"


def wait(stack: Stack, what: str, condition: Any, timeout: float = 120) -> None:
    def check() -> bool:
        stack.check_alive()
        return bool(condition())

    procs.wait_until(check, timeout=timeout, interval=0.5, what=what)


def dead_letters(stack: Stack) -> list[dict[str, Any]]:
    letters: list[dict[str, Any]] = json.loads(stack.run_cli(["dlq", "list", "--json"]))
    return letters


def table_rows(out: str) -> list[list[str]]:
    """The body rows of a printed table, each cell's folded lines joined, white space
    left out (a fold drops the space it breaks at). A row starts where its first cell
    is not blank."""
    rows: list[list[str]] = []
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = ["".join(cell.split()) for cell in line.split("│")[1:-1]]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return rows


def assert_printed_safely(out: str) -> None:
    for char in ("\x1b", "\x07"):
        assert char not in out, f"{char!r} in:\n{out}"


def test_a_bomb_and_a_catastrophic_pattern_dead_letter_only_their_rows(
    stack: Stack, tmp_path: Path
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    (mappings / "acme-hostile.yaml").write_text(HOSTILE)
    stack.service_env["TRANSFORMER_MAPPINGS_DIR"] = str(mappings)
    stack.tenants = [
        {**stack.kong_tenant("acme", ACME), "mapping": "acme-hostile"},
        stack.wms_tenant("beta", BETA),
    ]
    acme_rows = generate_items(ACME, 20, seed=13)
    bombs = [
        {**row, "f120_referencia": key, "f120_descripcion_comercial": "@@ BOOM"}
        for key, row in zip(MARKUP_KEYS, generate_items(ACME, 3, 14, start_rowid=21), strict=True)
    ]
    patterns = [
        {**row, "f120_referencia": key, "f120_unidad_medida": "A" * 60 + "!"}
        for key, row in zip(PATTERN_KEYS, generate_items(ACME, 2, 15, start_rowid=24), strict=True)
    ]
    beta_rows = generate_items(BETA, 20, seed=16)
    stack.start_simulators()
    stack.upsert_items(ACME, acme_rows + bombs + patterns)
    stack.upsert_items(BETA, beta_rows)
    stack.create_topics()
    stack.start_services()

    letters: dict[str, dict[str, str]] = {}

    def landed() -> bool:
        if len(stack.kong_skus()) < 20 or len(stack.wms_products()) < 20:
            return False
        letters.update({d["key"]: d["headers"] for d in dead_letters(stack)})
        return len(letters) >= 5

    wait(stack, "20 in Kong, 20 in WMS, 5 dead letters", landed)

    assert mismatches("kong", acme_rows, stack.kong_skus()) == []
    assert mismatches("wms", beta_rows, stack.wms_products()) == []
    assert sorted(letters) == sorted(f"acme/{key}" for key in MARKUP_KEYS + PATTERN_KEYS)
    assert {h["error.class"] for h in letters.values()} == {"mapping_limit"}, letters
    for key in MARKUP_KEYS:
        message = letters[f"acme/{key}"]["error.message"]
        assert "field display_name: expression " in message
        assert "longer than 10000 characters" in message
    for key in PATTERN_KEYS:
        message = letters[f"acme/{key}"]["error.message"]
        assert "field unit: " in message
        assert "/([A-Z]|[A-Z]{2})+/: pattern took longer than 50 ms" in message

    table = stack.run_cli(["dlq", "list", "--tenant", "acme"])
    assert_printed_safely(table)
    assert table.startswith("5 dead letters")
    shown = {row[2]: row[4] for row in table_rows(table)}  # key: class
    assert shown == {
        "acme/[/]": "mapping_limit",
        "acme/[link=http://x]EVIL[/link]": "mapping_limit",
        "acme/CTRL\\x1b[31m\\x07-1": "mapping_limit",
        "acme/PATTERN-1": "mapping_limit",
        "acme/PATTERN-2": "mapping_limit",
    }

    # Siesa's own text (markup, a terminal escape) as the tenants' last error in status.
    stack.siesa_faults({"codigo_error_rate": 1.0, "codigo": 7, "mensaje": SIESA_MESSAGE})
    last_errors: dict[str, str] = {}

    def siesa_text_shown() -> bool:
        out = stack.run_cli(["status"])
        assert_printed_safely(out)
        last_errors.update({row[0]: row[-1] for row in table_rows(out)})
        return "consultafallida" in last_errors.get("acme", "")

    wait(stack, "Siesa's message as acme's last error in status", siesa_text_shown, timeout=60)
    stack.siesa_faults({})
    assert sorted(last_errors) == ["acme", "beta"]
    assert last_errors["acme"].endswith(
        "[/][link=http://x]click[/link]\\x1b[2J\\x07consultafallida"
    )

    # Every service is still running, and each stops cleanly.
    stack.check_alive()
    assert {name: stack.stop(name) for name in ("extractor", "transformer", "loader")} == {
        "extractor": 0,
        "transformer": 0,
        "loader": 0,
    }
