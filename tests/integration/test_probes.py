"""The probes tell the truth, on real processes and a real broker of this module's own
(stopped and started again: the session's broker is shared by every test).

- a service started while its broker is down says so in one line within seconds, is
  not ready, and becomes ready without a restart once the broker answers; SIGTERM
  during that wait exits 0 without a traceback;
- the broker stopped under running services: every /readyz turns 503, every /healthz
  stays 200, and all are ready again once it is back;
- a run loop frozen on purpose (its handler blocks) turns /healthz 503 past its bound,
  and the lag it leaves behind keeps growing on /metrics.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from devtools import procs
from devtools.broker import LocalBroker
from devtools.stack import SERVICES, Stack
from services.common import health, topics
from services.common.health import HealthServer
from services.common.kafka import make_consumer, make_producer, producer_config
from services.common.runloop import BatchResult, RunLoop
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.common.topics import create_topics

COMPANY = 8585
WAITING = "cannot reach the Kafka broker at"


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    home = tmp_path_factory.mktemp("probes-kafka")
    broker = LocalBroker(port=procs.free_port(), home=home, run_dir=home)
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


def make_stack(bootstrap: str, tmp_path: Path, topic_prefix: str) -> Stack:
    stack = Stack(
        bootstrap=bootstrap,
        run_dir=tmp_path / "run",
        siesa_port=procs.free_port(),  # no simulator: the extractor's polls fail, and retry
        kong_port=procs.free_port(),
        wms_port=procs.free_port(),
        topic_prefix=topic_prefix,
    )
    stack.tenants = [stack.kong_tenant("acme", COMPANY)]
    return stack


def status(url: str) -> int:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.TransportError:
        return 0


def log_lines(stack: Stack, name: str) -> list[dict[str, Any]]:
    """The service's JSON log lines (anything else, e.g. a traceback, as `raw`)."""
    lines = []
    for text in stack.processes[name].log_path.read_text().splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            lines.append({"raw": text})
    return lines


def said(stack: Stack, name: str, words: str) -> list[dict[str, Any]]:
    return [line for line in log_lines(stack, name) if words in line.get("message", "")]


def seconds(line: dict[str, Any]) -> float:
    return time.mktime(time.strptime(line["ts"][:19], "%Y-%m-%d %H:%M:%S")) + float(
        "0." + line["ts"][20:]
    )


def test_a_service_started_without_its_broker_says_so_once_and_is_ready_when_it_comes(
    own_broker: LocalBroker, tmp_path: Path, topic_prefix: str
) -> None:
    create_topics(KafkaSettings(bootstrap_servers=own_broker.bootstrap, topic_prefix=topic_prefix))
    own_broker.stop()  # the cluster and its topics exist; its broker is down
    stack = make_stack(own_broker.bootstrap, tmp_path, topic_prefix)
    try:
        stack.start_services(("transformer",))
        ready_url = f"{stack.health_url('transformer')}/readyz"

        procs.wait_until(
            lambda: stack.check_alive() or bool(said(stack, "transformer", WAITING)),
            timeout=30,
            what="the transformer saying it cannot reach the broker",
        )
        first, line = log_lines(stack, "transformer")[0], said(stack, "transformer", WAITING)[0]
        assert line["level"] == "ERROR"
        assert f"{WAITING} {own_broker.bootstrap}: " in line["message"]
        assert "Connection refused" in line["message"]
        # Within 5 s of the service's first line (its health server up, settings read).
        assert seconds(line) - seconds(first) <= 5.0, (first, line)

        answer = httpx.get(ready_url, timeout=3)
        assert answer.status_code == 503
        assert own_broker.bootstrap in answer.json()["problems"]["broker"]
        assert status(f"{stack.health_url('transformer')}/healthz") == 200

        own_broker.start(keep_data=True)
        procs.wait_until(
            lambda: stack.check_alive() or status(ready_url) == 200,
            timeout=60,
            what="the transformer ready once its broker answers",
        )
        assert stack.processes["transformer"].alive()  # the same process: no restart
        assert len(said(stack, "transformer", "health and metrics on port")) == 1
        # Said once: librdkafka's own repeats (every few ms while down) were held back.
        assert len(said(stack, "transformer", WAITING)) == 1
        assert len(said(stack, "transformer", "Connection refused")) <= 2
        assert said(stack, "transformer", f"the Kafka broker at {own_broker.bootstrap} answers")
        assert not [line for line in log_lines(stack, "transformer") if "raw" in line]
    finally:
        stack.stop_all()
        if own_broker.process is None:
            own_broker.start(keep_data=True)


def test_sigterm_while_waiting_for_the_broker_exits_0_without_a_traceback(
    tmp_path: Path, topic_prefix: str
) -> None:
    stack = make_stack(f"127.0.0.1:{procs.free_port()}", tmp_path, topic_prefix)
    try:
        stack.start_services(SERVICES)
        for name in SERVICES:
            procs.wait_until(
                lambda n=name: stack.check_alive() or bool(said(stack, n, WAITING)),
                timeout=30,
                what=f"{name} waiting for the broker",
            )
        for name in SERVICES:
            process = stack.processes[name]
            assert process.stop() == 0, process.log_tail()
            output = process.log_path.read_text()
            assert "Traceback" not in output, output
            assert said(stack, name, "stopped while waiting for the Kafka broker"), output
    finally:
        stack.stop_all()


def test_the_broker_stopped_under_running_services_makes_them_unready_not_dead(
    own_broker: LocalBroker, tmp_path: Path, topic_prefix: str
) -> None:
    create_topics(KafkaSettings(bootstrap_servers=own_broker.bootstrap, topic_prefix=topic_prefix))
    stack = make_stack(own_broker.bootstrap, tmp_path, topic_prefix)
    urls = {name: stack.health_url(name) for name in SERVICES}
    alive: list[int] = []

    def all_ready(want: int) -> bool:
        stack.check_alive()
        alive.extend(status(f"{url}/healthz") for url in urls.values())
        return all(status(f"{url}/readyz") == want for url in urls.values())

    def wait_all(want: int, timeout: float, what: str) -> None:
        """Wait for every /readyz to answer `want`; on timeout, say which did not, with
        what their /readyz said and the tail of their logs."""
        try:
            procs.wait_until(lambda: all_ready(want), timeout=timeout, what=what)
        except TimeoutError as exc:
            late = {}
            for name, url in urls.items():
                try:
                    answer = httpx.get(f"{url}/readyz", timeout=3)
                except httpx.TransportError as error:
                    late[name] = f"/readyz: {error!r}\n{stack.processes[name].log_tail()}"
                    continue
                if answer.status_code != want:
                    late[name] = (
                        f"/readyz {answer.status_code} {answer.text}\n"
                        f"{stack.processes[name].log_tail()}"
                    )
            report = "\n\n".join(f"{name}: {why}" for name, why in late.items())
            raise AssertionError(f"{exc}; not {want}:\n{report}") from None

    try:
        stack.start_services(SERVICES)
        urls = {name: stack.health_url(name) for name in SERVICES}
        wait_all(200, timeout=90, what="every service ready")

        alive.clear()
        own_broker.stop()
        wait_all(503, timeout=30, what="every service unready")
        problems = {n: httpx.get(f"{u}/readyz", timeout=3).json() for n, u in urls.items()}
        for name, body in problems.items():
            assert own_broker.bootstrap in body["problems"]["broker"], (name, body)

        own_broker.start(keep_data=True)
        wait_all(200, timeout=30, what="every service ready again")
        assert alive, "no /healthz was asked"
        assert set(alive) == {200}, "a /healthz failed while the broker was away"
    finally:
        stack.stop_all()
        if own_broker.process is None:
            own_broker.start(keep_data=True)


def lag(stage: str, topic: str) -> float:
    labels = {"stage": stage, "topic": topic, "partition": "0"}
    return REGISTRY.get_sample_value("siesa_sync_consumer_lag", labels) or 0.0


def test_a_frozen_run_loop_fails_liveness_past_its_bound_and_its_lag_keeps_growing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=1
    )
    create_topics(kafka)
    state = health.current()
    bound, previous = 3.0, state.stall_after_s
    state.stall_after_s = bound  # what STALL_TIMEOUT_S sets in a service
    entered, release, stopper = threading.Event(), threading.Event(), Stopper()

    def frozen(_batch: list[Any]) -> BatchResult:  # the test hook: a handler that hangs
        entered.set()
        release.wait(120)
        return BatchResult()

    stage = f"freeze-{uuid.uuid4().hex[:6]}"
    raw = kafka.topic(topics.RAW)
    loop = RunLoop(
        stage=stage,
        consumer=make_consumer(kafka, group_id=f"{topic_prefix}freeze"),
        producer=make_producer(kafka),
        topics=[raw],
        handler=frozen,
        dlq_topic=kafka.topic(topics.DLQ),
        stopper=stopper,
    )
    server = HealthServer(state, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}/healthz"
    thread = threading.Thread(target=loop.run)
    producer = Producer(producer_config(kafka))
    try:
        thread.start()
        for i in range(5):
            producer.produce(raw, key=f"acme/{i}".encode(), value=b"x")
        assert producer.flush(30) == 0
        assert entered.wait(60), "the loop never got the batch"
        assert state.problems == {}, "nothing else may excuse the loop"

        # (Not before its bound: tests/unit/test_core_health.py, on an injected clock.)
        procs.wait_until(lambda: status(url) == 503, timeout=bound + 10, what="/healthz 503")
        stalled = httpx.get(url, timeout=3).json()["stalled"]
        assert stalled[f"{stage} loop"].startswith("no progress for")

        for i in range(5, 25):
            producer.produce(raw, key=f"acme/{i}".encode(), value=b"x")
        assert producer.flush(30) == 0
        procs.wait_until(lambda: lag(stage, raw) >= 20, timeout=40, what="the lag growing")
    finally:
        release.set()
        stopper.stop()
        thread.join(60)
        server.stop()
        state.stall_after_s = previous
    assert not thread.is_alive()
