"""Benchmarks (`make bench`): each figure is measured against a baseline in the same run.

A benchmark is a module in this package with ``run(bootstrap, workdir) -> list[Figure]``,
registered in `BENCHES`. The runner starts one broker for all of them, prints a table
and writes ``bench-results.json`` at the project root (design.md's format).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devtools import procs
from devtools.stack import Stack

# name -> module; each is run in this order by `python -m devtools.bench [NAME ...]`.
BENCHES: dict[str, str] = {
    "extractor": "devtools.bench.extractor",
    "transformer": "devtools.bench.transformer",
    "loader": "devtools.bench.loader",
    "pipelining": "devtools.bench.pipelining",
    "freshness": "devtools.bench.freshness",
    "scale": "devtools.bench.scale",
}

RESULTS_FILE = Path(__file__).resolve().parents[2] / "bench-results.json"


@dataclass(frozen=True)
class Figure:
    """One measured figure and its baseline, both from the same run."""

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        ratio = self.value / self.baseline_value if self.baseline_value else 0.0
        object.__setattr__(self, "ratio", round(ratio, 3))


def bench_stack(bootstrap: str, run_dir: Path, kind: type[Stack] = Stack) -> Stack:
    """A `Stack` (or subclass `kind`) on free ports with its own topic prefix (no
    tenants yet)."""
    return kind(
        bootstrap=bootstrap,
        run_dir=run_dir,
        siesa_port=procs.free_port(),
        kong_port=procs.free_port(),
        wms_port=procs.free_port(),
        webhook_port=procs.free_port(),
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
    )


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "baseline", "baseline value", "ratio")]
    rows += [
        (
            f.name,
            f"{f.value:,.1f} {f.unit}",
            f.baseline,
            f"{f.baseline_value:,.1f} {f.unit}",
            f"{f.ratio:.2f}",
        )
        for f in figures
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def write_results(figures: list[Figure], path: Path = RESULTS_FILE) -> None:
    path.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
