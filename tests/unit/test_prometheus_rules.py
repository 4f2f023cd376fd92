"""The alert rules in deploy/prometheus/ are valid Prometheus rules, and each fires on
what it is for and stays quiet on its look-alike (promtool's own rule unit tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

RULES_DIR = Path(__file__).parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool not found: `make setup` installs it (Debian's prometheus package)")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=RULES_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", "siesa-sync-alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", "siesa-sync-alerts.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
