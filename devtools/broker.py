"""A real single-node Apache Kafka broker (KRaft) from the release jars, without Docker.

`fetch()` copies Kafka's jars from Maven Central with Maven (pinned version, cached in
the git-ignored `.cache/kafka/<version>/`); `LocalBroker` formats KRaft storage, starts
one broker+controller on 127.0.0.1 with the JDK, waits until it answers, and stops it by
PID. Only Java 17 and Maven are assumed.

    python -m devtools.broker fetch
    python -m devtools.broker up [--port 9092]
    python -m devtools.broker down
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from devtools import procs

log = logging.getLogger(__name__)

POM = procs.ROOT / "devtools" / "kafka" / "pom.xml"
KAFKA_VERSION = "4.1.1"
CACHE = procs.ROOT / ".cache" / "kafka" / KAFKA_VERSION
LIBS = CACHE / "libs"
READY_MARK = CACHE / "fetched"
HEAP = os.environ.get("KAFKA_LOCAL_HEAP", "768m")


def fetch() -> Path:
    """Copy the broker's jars into the cache once; later calls return at once."""
    if READY_MARK.exists():
        return LIBS
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / "fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time (parallel test runs, demo)
        if READY_MARK.exists():
            return LIBS
        return _fetch()


def _fetch() -> Path:
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise RuntimeError("the local Kafka broker needs Java 17 and Maven (mvn) on PATH")
    staging = CACHE.with_name(f"{KAFKA_VERSION}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("fetching Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, LIBS)
    done = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(POM),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging / 'libs'}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise RuntimeError("Maven could not fetch the Kafka jars:\n" + "\n".join(output[-30:]))
    shutil.rmtree(CACHE, ignore_errors=True)
    staging.rename(CACHE)
    READY_MARK.write_text(KAFKA_VERSION + "\n")
    return LIBS


_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
num.partitions=6
# A single node: the internal topics must not wait for replicas that never come.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.check.interval.ms=60000
"""

_LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
"""


@dataclass
class LocalBroker:
    """One broker+controller on 127.0.0.1; its files live under `home`."""

    port: int = 9092
    controller_port: int = 0
    home: Path = field(default_factory=lambda: procs.RUN_DIR / "kafka")
    name: str = "kafka"
    run_dir: Path = procs.RUN_DIR
    process: procs.Process | None = None
    _admin: AdminClient | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 90.0, *, keep_data: bool = False) -> str:
        """Start the broker; a fresh, formatted log directory unless ``keep_data`` (a
        restart of this broker, which keeps its topics and offsets)."""
        libs = fetch()
        if procs.port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken: is a broker running already?")
        if not self.controller_port:
            self.controller_port = procs.free_port()
        data_dir = self.home / "data"
        fresh = not (keep_data and data_dir.exists())
        if fresh:
            shutil.rmtree(data_dir, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(
            _SERVER_PROPERTIES.format(
                port=self.port, controller_port=self.controller_port, data_dir=data_dir
            )
        )
        log4j = self.home / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log_file=self.home / "server.log"))
        java = [
            "java",
            f"-Xmx{HEAP}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
        ]
        if fresh:
            self._format(java, props)
        self.process = procs.start(
            self.name, [*java, "kafka.Kafka", str(props)], run_dir=self.run_dir
        )
        try:
            procs.wait_until(self._answers, timeout=timeout, what=f"Kafka on {self.bootstrap}")
        except TimeoutError:
            tail = self.process.log_tail()
            self.stop()
            raise RuntimeError(f"Kafka did not start on {self.bootstrap}:\n{tail}") from None
        return self.bootstrap

    def restart(self, down_s: float = 0.0, timeout: float = 90.0) -> str:
        """Stop the broker, stay down ``down_s`` seconds, start it again on the same
        ports with its data (a broker outage, for fault tests)."""
        self.stop()
        procs.wait_until(lambda: not procs.port_open(self.port), timeout=30, what="broker down")
        if down_s > 0:
            time.sleep(down_s)  # the outage itself: its length is the point
        return self.start(timeout, keep_data=True)

    def _format(self, java: list[str], props: Path) -> None:
        subprocess.run(
            [
                *java,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                _cluster_id(),
                "-c",
                str(props),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def _answers(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"Kafka exited at start-up:\n{self.process.log_tail()}")
        if not procs.port_open(self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure here just means "not yet"
            return False
        return bool(metadata.brokers)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None
        else:
            procs.stop_recorded(self.run_dir, [self.name])


def _cluster_id() -> str:
    # KRaft cluster ids are 16 random bytes, base64url without padding. One that starts
    # with "-" would be read as an option by StorageTool, so draw again.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m devtools.broker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch the Kafka jars into .cache/")
    up = sub.add_parser("up", help="start the broker and leave it running")
    up.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    sub.add_parser("down", help="stop the broker started by 'up'")
    args = parser.parse_args()
    if args.cmd == "fetch":
        log.info("Kafka jars ready in %s", fetch())
    elif args.cmd == "up":
        broker = LocalBroker(port=args.port)
        log.info(
            "Kafka %s up on %s (pid %s)",
            KAFKA_VERSION,
            broker.start(),
            broker.process and broker.process.pid,
        )
    else:
        stopped = procs.stop_recorded(names=["kafka"])
        log.info("stopped: %s", ", ".join(stopped) or "nothing was running")


if __name__ == "__main__":
    main()
