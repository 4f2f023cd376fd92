"""The benchmark report: ratios from figures of one run, design.md's JSON format."""

from __future__ import annotations

import json
from pathlib import Path

from devtools.bench import Figure, table, write_results


def test_ratio_is_value_over_baseline_and_written_in_the_design_format(tmp_path: Path) -> None:
    figure = Figure("loader", 420.0, "products/s", "raw httpx loop", 500.0)
    assert figure.ratio == 0.84
    out = tmp_path / "bench-results.json"
    write_results([figure], out)
    assert json.loads(out.read_text()) == [
        {
            "name": "loader",
            "value": 420.0,
            "unit": "products/s",
            "baseline": "raw httpx loop",
            "baseline_value": 500.0,
            "ratio": 0.84,
        }
    ]
    assert "0.84" in table([figure])


def test_a_zero_baseline_gives_ratio_zero_not_a_crash() -> None:
    assert Figure("x", 1.0, "u", "b", 0.0).ratio == 0.0
