"""The test harness: one broker per session, a unique topic prefix and group per test.

The broker: `KAFKA_BOOTSTRAP_SERVERS` if set; else the project's local broker from
Kafka's release jars (devtools/broker.py) on a free port; else, only if a Docker engine
answers, testcontainers' Kafka. Markers follow the directory (unit/integration/e2e).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools import procs
from devtools.broker import LocalBroker
from devtools.stack import Stack
from services.common.settings import KafkaSettings
from services.common.topics import create_topics

FIXTURES = Path(__file__).parent / "fixtures"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).parent.name
        if tier in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, tier))


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    home = tmp_path_factory.mktemp("kafka")
    broker = LocalBroker(port=procs.free_port(), home=home, run_dir=home)
    try:
        yield broker.start()
    except (RuntimeError, subprocess.CalledProcessError):
        if not _docker_answers():
            raise
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
    finally:
        broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    """Unique per test, so tests never see each other's records or groups."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def kafka(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    """Settings for this test's own topics, created up front."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix)
    create_topics(settings)
    return settings


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed e2e test shows the tail of each process's log under its report."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and call.when == "call" and isinstance(stack, Stack):
        report.sections.append(("process logs", stack.log_tails()))
    return report


@pytest.fixture
def stack(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Stack]:
    """Simulators and services as real processes on free ports; all stopped after."""
    stack = Stack(
        bootstrap=kafka_bootstrap,
        run_dir=tmp_path / "run",
        siesa_port=procs.free_port(),
        kong_port=procs.free_port(),
        topic_prefix=topic_prefix,
        wms_port=procs.free_port(),
        webhook_port=procs.free_port(),
    )
    try:
        yield stack
    finally:
        stack.stop_all()
