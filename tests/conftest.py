"""The test harness: one broker per session (per pytest-xdist worker), a unique topic
prefix and group per test.

The broker: `KAFKA_BOOTSTRAP_SERVERS` if set; else the project's local broker from
Kafka's release jars (devtools/broker.py) on free ports, secured (SASL_SSL, ACLs) with
an open PLAINTEXT listener for the tests not about security; else, only if a Docker
engine answers, testcontainers' Kafka. Markers follow the directory.
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
from devtools.broker_security import BrokerSecurity
from devtools.stack import Stack
from services.common import health, kafka_auth, reachability
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


@pytest.fixture(autouse=True)
def _fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with the process's Health, Kafka refusals and broker watch new:
    a test before it on this worker (in any order, with xdist's work stealing) may have
    left a problem reported, a fake alerter or a watch installed."""
    monkeypatch.setattr(health, "_current", None)
    monkeypatch.setattr(kafka_auth, "_current", None)
    monkeypatch.setattr(reachability, "_watch", None)


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker | None]:
    """The project's local broker, secured: SASL_SSL with SCRAM users and ACLs enforced
    on `bootstrap`, plus a PLAINTEXT listener (`open_bootstrap`) whose anonymous
    principal is a super user, for the tests that are not about security (test only:
    devtools/broker_security.py). None when the tests run on a given broker."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield None
        return
    home = tmp_path_factory.mktemp("kafka")
    broker = LocalBroker(
        port=procs.free_port(),
        open_port=procs.free_port(),
        home=home,
        run_dir=home,
        security=BrokerSecurity(home / "security", open_listener=True),
        retention_check_ms=2_000,  # records past a short retention go within seconds
    )
    try:
        broker.start()
    except (RuntimeError, subprocess.CalledProcessError):
        if not _docker_answers():
            raise
        yield None
        return
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(session_broker: LocalBroker | None) -> Iterator[str]:
    """Where the tests' clients connect without credentials: `KAFKA_BOOTSTRAP_SERVERS`,
    else the session broker's PLAINTEXT listener, else testcontainers' Kafka."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
    elif session_broker is not None:
        yield session_broker.open_bootstrap
    else:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()


@pytest.fixture
def secured_broker(session_broker: LocalBroker | None) -> LocalBroker:
    """The session broker, for tests of its SASL_SSL listener, users and ACLs."""
    if session_broker is None or session_broker.security is None:
        pytest.skip("needs the project's local secured broker (KAFKA_BOOTSTRAP_SERVERS is set)")
    return session_broker


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
