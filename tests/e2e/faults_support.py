"""What the fault tests share: a 10,000-item flow (20,000 with `SIESA_FULL_SIZE=1`),
the figures they print, and the check that every target holds exactly its source
(tests/e2e/test_faults.py, tests/e2e/test_cluster_faults.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devtools import procs
from devtools.expected import mismatches
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from services.ops.dlq import dead_letters

# The flow's items, all tenants together. 10,000 in make test: the loader writes about
# 200 a second on the 2-core machine, so the faults still hit a flow of a minute or
# more, each while thousands of records are in flight; 20,000 with SIESA_FULL_SIZE=1.
TOTAL = 20_000 if os.environ.get("SIESA_FULL_SIZE") == "1" else 10_000
KONG_COMPANY = 8585
WMS_COMPANY = 8020
# One diff scan of 10,000-20,000 rows takes the extractor and the Siesa simulator several
# seconds of CPU: a short poll interval would rescan all the time and slow the loader,
# the flow's slowest stage, on a 2-core machine. The first scan finds everything.
CONCURRENCY = 16
POLL_INTERVAL_S = 30.0
# The deadline for target == source after the last fault: several times what it takes
# on the 2-core machine the suite runs on, so a slow CI machine does not flake.
SETTLE_TIMEOUT_S = 300.0


@dataclass
class Flow:
    """The targets the test watches and the figures it prints."""

    stack: Stack
    targets: dict[str, int]  # "kong"/"wms" -> the Siesa company it mirrors
    started: float = field(default_factory=time.monotonic)
    events: list[str] = field(default_factory=list)

    def held(self) -> int:
        """Items the targets hold, all tenants together."""
        count = 0
        for target in self.targets:
            if target == "kong":
                count += int(self.stack.sim_stats(self.stack.kong_url)["skus"])
            else:
                count += int(self.stack.sim_stats(self.stack.wms_url)["products"])
        return count

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started:7.1f}s  held {self.held():6d}  {what}"
        self.events.append(line)
        print(f"[faults] {line}")

    def wait_held(self, at_least: int, timeout: float, check: Callable[[], None]) -> None:
        def enough() -> bool:
            check()
            return self.held() >= at_least

        procs.wait_until(enough, timeout=timeout, interval=0.25, what=f"{at_least} items held")

    def problems(self) -> list[str]:
        found: list[str] = []
        for target, company in self.targets.items():
            rows = self.stack.siesa_items(company)
            held = self.stack.held(target)
            found.extend(f"{target}: {p}" for p in mismatches(target, rows, held))
        return found

    def wait_exact(self, timeout: float, check: Callable[[], None]) -> list[str]:
        """Wait until every target holds exactly its source; returns what still differs
        (empty when it settled) after the wait."""
        found: list[str] = ["not checked yet"]

        def settled() -> bool:
            nonlocal found
            check()
            # Counting first is cheap; the full comparison only once the counts are there.
            if self.held() < TOTAL:
                return False
            found = self.problems()
            return not found

        try:
            procs.wait_until(settled, timeout=timeout, interval=1.0, what="target == source")
        except TimeoutError:
            found = self.problems()
        return found


def dlq_of(stack: Stack) -> list[str]:
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap, topic_prefix=stack.topic_prefix)
    return [
        f"{d.tenant} {d.stage} {d.error_class}: {d.headers.get('error.message', '')}"
        for d in dead_letters(kafka)
    ]
