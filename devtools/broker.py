"""Real Apache Kafka brokers (KRaft) from the release jars, without Docker.

`fetch()` copies Kafka's jars and tools from Maven Central with Maven (pinned version,
cached in the git-ignored `.cache/kafka/<version>/`); `LocalBroker` formats KRaft
storage, starts one broker+controller on 127.0.0.1 with the JDK, waits until it
answers, and stops it by PID. Alone it is a cluster of one; `devtools.cluster` starts
three as one cluster. With `security` (devtools/broker_security.py) its client listener
is SASL_SSL with SCRAM users and ACLs enforced. Only Java 17 and Maven are assumed.

    python -m devtools.broker fetch
    python -m devtools.broker up [--port 9092] [--secure] [--brokers 3]
    python -m devtools.broker down
    python -m devtools.broker tool kafka-consumer-groups --bootstrap-server ... --describe ...
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from devtools import procs
from devtools.broker_security import ADMIN, MECHANISM, BrokerSecurity

log = logging.getLogger(__name__)

POM = procs.ROOT / "devtools" / "kafka" / "pom.xml"
KAFKA_VERSION = "4.1.1"
CACHE = procs.ROOT / ".cache" / "kafka" / KAFKA_VERSION
LIBS = CACHE / "libs"
READY_MARK = CACHE / "fetched"
HEAP = os.environ.get("KAFKA_LOCAL_HEAP", "768m")


def _pom_version() -> str:
    """What the cache must have been fetched for: the Kafka version and the pom."""
    return f"{KAFKA_VERSION} {hashlib.sha256(POM.read_bytes()).hexdigest()[:12]}\n"


def fetch() -> Path:
    """Copy the broker's jars into the cache once (again when the pom changed)."""
    if READY_MARK.exists() and READY_MARK.read_text() == _pom_version():
        return LIBS
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / "fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time (parallel test runs, demo)
        if READY_MARK.exists() and READY_MARK.read_text() == _pom_version():
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
    READY_MARK.write_text(_pom_version())
    return LIBS


def java(heap: str = "256m", log4j: Path | None = None) -> list[str]:
    """The JVM command line with Kafka's jars on the class path."""
    argv = ["java", f"-Xmx{heap}", "-XX:+UseG1GC", "-cp", f"{fetch()}/*"]
    if log4j is not None:
        argv.insert(3, f"-Dlog4j2.configurationFile={log4j}")
    return argv


# Kafka's own command-line tools (bin/kafka-*.sh in a release) by their script names.
TOOLS = {
    "kafka-acls": "org.apache.kafka.tools.AclCommand",
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
}


def run_tool(
    name: str, *args: str, timeout: float = 120.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One of Kafka's own tools from the jars, by script name (`kafka-consumer-groups`)
    or main class."""
    return subprocess.run(
        [*java(), TOOLS.get(name, name), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


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
    """One broker+controller on 127.0.0.1; its files live under `home`.

    Alone (no `voters`) it is a cluster of one. In a cluster (devtools.cluster) each
    node gets the static quorum `voters`, the shared `cluster_id` and `cluster_size`,
    from which the internal topics' replication follows.
    """

    port: int = 9092
    controller_port: int = 0
    home: Path = field(default_factory=lambda: procs.RUN_DIR / "kafka")
    name: str = "kafka"
    run_dir: Path = procs.RUN_DIR
    process: procs.Process | None = None
    node_id: int = 1
    voters: str = ""
    cluster_id: str = ""
    cluster_size: int = 1
    heap: str = HEAP
    # Secured: `port` is SASL_SSL; brokers and controllers talk over mutual TLS on
    # `internal_port` and `controller_port`. `open_port`: a PLAINTEXT listener too
    # (test harness only: its anonymous principal is a super user).
    security: BrokerSecurity | None = None
    internal_port: int = 0
    open_port: int = 0
    # How often the broker deletes records past retention (tests shorten it).
    retention_check_ms: int = 60_000

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def open_bootstrap(self) -> str:
        """A PLAINTEXT address: the main one, or the open listener of a secured broker."""
        return f"127.0.0.1:{self.open_port}" if self.security else self.bootstrap

    def start(self, timeout: float = 90.0, *, keep_data: bool = False) -> str:
        """Start the broker; a fresh, formatted log directory unless ``keep_data`` (a
        restart of this broker, which keeps its topics and offsets)."""
        self.launch(keep_data=keep_data)
        self.wait(timeout)
        return self.bootstrap

    def launch(self, *, keep_data: bool = False) -> None:
        """Write the configuration, format if needed and start the JVM; `wait` for it."""
        for port in (self.port, self.open_port, self.internal_port):
            if port and procs.port_open(port):
                raise RuntimeError(f"port {port} is taken: is a broker running already?")
        self.controller_port = self.controller_port or procs.free_port()
        if self.security is not None:
            self.internal_port = self.internal_port or procs.free_port()
            self.security.prepare()
        data_dir = self.home / "data"
        fresh = not (keep_data and data_dir.exists())
        if fresh:
            shutil.rmtree(data_dir, ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(self.properties(data_dir))
        props.chmod(0o600)  # keystore password
        log4j = self.home / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log_file=self.home / "server.log"))
        jvm = java(self.heap, log4j)
        if fresh:
            self._format(jvm, props)
        self.process = procs.start(
            self.name, [*jvm, "kafka.Kafka", str(props)], run_dir=self.run_dir
        )

    def wait(self, timeout: float = 90.0) -> None:
        try:
            procs.wait_until(self._answers, timeout=timeout, what=f"Kafka on {self.bootstrap}")
        except TimeoutError:
            tail = self.process.log_tail() if self.process else ""
            self.stop()
            raise RuntimeError(f"Kafka did not start on {self.bootstrap}:\n{tail}") from None

    def restart(self, down_s: float = 0.0, timeout: float = 90.0) -> str:
        """Stop the broker, stay down ``down_s`` seconds, start it again on the same
        ports with its data (a broker outage, for fault tests)."""
        self.stop()
        procs.wait_until(lambda: not procs.port_open(self.port), timeout=30, what="broker down")
        if down_s > 0:
            time.sleep(down_s)  # the outage itself: its length is the point
        return self.start(timeout, keep_data=True)

    def properties(self, data_dir: Path) -> str:
        replicas = min(3, self.cluster_size)
        min_isr = 2 if replicas >= 3 else 1
        quorum = (
            f"controller.quorum.voters={self.voters}"
            if self.voters
            else f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"
        )
        lines = [
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            quorum,
            *self._listeners(),
            "controller.listener.names=CONTROLLER",
            f"log.dirs={data_dir}",
            "num.partitions=6",
            # The internal topics are replicated as far as the cluster allows.
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            "transaction.state.log.num.partitions=6",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            f"default.replication.factor={replicas}",
            "min.insync.replicas=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            f"log.retention.check.interval.ms={self.retention_check_ms}",
            "",
        ]
        text = "\n".join(lines)
        return text + self.security.properties() if self.security else text

    def _listeners(self) -> list[str]:
        local = "127.0.0.1"
        if self.security is None:
            return [
                f"listeners=PLAINTEXT://{local}:{self.port},CONTROLLER://{local}:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://{local}:{self.port}",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ]
        advertised = [f"SASL_SSL://{local}:{self.port}", f"INTERNAL://{local}:{self.internal_port}"]
        if self.open_port:
            advertised.append(f"PLAINTEXT://{local}:{self.open_port}")
        listeners = [*advertised, f"CONTROLLER://{local}:{self.controller_port}"]
        return [
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            "inter.broker.listener.name=INTERNAL",
            "listener.security.protocol.map="
            "SASL_SSL:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL,PLAINTEXT:PLAINTEXT",
        ]

    def _format(self, jvm: list[str], props: Path) -> None:
        quorum = [] if self.voters else ["--standalone"]
        users = self.security.scram_arguments() if self.security else []
        cluster_id = self.cluster_id or new_cluster_id()
        done = subprocess.run(
            [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                *quorum,
                "-t",
                cluster_id,
                "-c",
                str(props),
                *users,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed: {done.stdout}{done.stderr}")

    def admin_config(self) -> dict[str, Any]:
        """librdkafka settings of a super user: the PLAINTEXT listener, or `admin`."""
        if self.security is None or self.open_port:
            return {"bootstrap.servers": self.open_bootstrap}
        assert self.security.tls is not None  # noqa: S101 - set by launch()
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "sasl_ssl",
            "sasl.mechanism": MECHANISM,
            "sasl.username": ADMIN,
            "sasl.password": self.security.users[ADMIN],
            "ssl.ca.location": str(self.security.tls.ca_pem),
        }

    def _answers(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"Kafka exited at start-up:\n{self.process.log_tail()}")
        if not procs.port_open(self.port):
            return False
        admin = AdminClient({**self.admin_config(), "logger": log})
        try:
            metadata = admin.list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure here just means "not yet"
            return False
        return len(metadata.brokers) >= self.cluster_size

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=30)
            self.process = None
        else:
            procs.stop_recorded(self.run_dir, [self.name])


def new_cluster_id() -> str:
    # KRaft cluster ids are 16 random bytes, base64url without padding. One that starts
    # with "-" would be read as an option by StorageTool, so draw again.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def main() -> None:
    from devtools import cluster

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m devtools.broker")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="fetch the Kafka jars into .cache/")
    up = sub.add_parser("up", help="start the broker(s) and leave them running")
    up.add_argument("--port", type=int, default=int(os.environ.get("KAFKA_PORT", "9092")))
    up.add_argument("--secure", action="store_true", help="SASL_SSL, SCRAM users, ACLs")
    up.add_argument("--brokers", type=int, choices=(1, 3), default=1)
    sub.add_parser("down", help="stop the broker(s) started by 'up'")
    tool = sub.add_parser("tool", help=f"run one of Kafka's tools: {', '.join(TOOLS)}")
    tool.add_argument("name", choices=sorted(TOOLS))
    tool.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if args.cmd == "tool":  # stdin and stdout are the tool's own
        raise SystemExit(subprocess.call([*java(), TOOLS[args.name], *args.args]))
    if args.cmd == "fetch":
        log.info("Kafka jars ready in %s", fetch())
    elif args.cmd == "up":
        cluster.up(port=args.port, secure=args.secure, brokers=args.brokers)
    else:
        stopped = procs.stop_recorded(names=["kafka", *cluster.NODE_NAMES])
        log.info("stopped: %s", ", ".join(stopped) or "nothing was running")


if __name__ == "__main__":
    main()
