"""A consumer group member in a child process of its own, so that a test never waits on
its close for longer than it chooses.

Why not a thread: confluent-kafka's rebalance callback (`Consumer_rebalance_cb`, as of
2.16.1) takes the GIL back, then calls librdkafka's `rd_kafka_rebalance_protocol()` and
`rd_kafka_incremental_unassign()` (or `rd_kafka_assign()`), which wait without a timeout
for librdkafka's main thread. `close()` serves the revocation of a member put out of its
group through that callback; when such a call never returns (librdkafka #4041, #4884),
the GIL is never released and every thread of the process stops with it:
`Thread.join(timeout)` never returns either. Another process is killed at a deadline.

The child polls only when asked to (`wait_assigned`): between requests it stalls, as a
process whose member stops polling would, and is put out of the group after
`max.poll.interval.ms`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from devtools import procs
from services.common.kafka import make_consumer
from services.common.settings import KafkaSettings

log = logging.getLogger(__name__)

# What a request may take in the child besides its own timeout: the child's start
# (a fresh interpreter importing confluent_kafka and the services) before the first one.
SLACK_S = 30.0


@dataclass(frozen=True)
class Assigned:
    """A member's assignment and its group metadata (member id, generation) as they
    stood when it had every partition asked for: what fences its transactions."""

    partitions: list[int]
    metadata: bytes


class MemberProcess:
    """A member of `group` subscribed to `topic` (`make_consumer` with `settings`), in a
    'spawn' child process; `close` is bounded, and the process is gone after it."""

    def __init__(self, kafka: KafkaSettings, group: str, topic: str, **settings: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child_conn, kafka, group, topic, settings),
            name=f"member-{group}",
            daemon=True,
        )
        self._process.start()
        child_conn.close()  # the child's end: EOF here once the child is gone

    def __str__(self) -> str:
        return f"{self._process.name} (pid {self._process.pid})"

    def __enter__(self) -> MemberProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def partitions(self, timeout: float = 30.0) -> int:
        """How many partitions the topic has, as the member's metadata says."""
        count: int = self._ask(("partitions", timeout), timeout)
        return count

    def wait_assigned(self, partitions: int, timeout: float = 60.0) -> Assigned:
        """Poll until the member is assigned `partitions` partitions (TimeoutError after
        `timeout`), then stop polling."""
        assigned: Assigned = self._ask(("assigned", partitions, timeout), timeout)
        return assigned

    def close(self, timeout: float = 30.0) -> bool:
        """Close the member, waiting at most `timeout` for its process to end, then kill
        the process. True: it closed by itself in time."""
        if self._process.exitcode is None:
            try:
                self._conn.send(("close",))
            except OSError:  # already gone (its pipe is closed)
                pass
            self._process.join(timeout)
        closed = self._process.exitcode == 0
        if self._process.exitcode is None:
            log.warning("%s: its close still ran after %.0f s: killed", self, timeout)
            self._process.kill()
            self._process.join(10.0)
        self._conn.close()
        return closed

    def _ask(self, request: tuple[Any, ...], timeout: float) -> Any:
        self._conn.send(request)
        if not self._conn.poll(timeout + SLACK_S):
            raise TimeoutError(f"{self}: no answer to {request[0]!r}")
        try:
            kind, value = self._conn.recv()
        except (EOFError, OSError):  # the child ended (its end of the pipe closed)
            self._process.join(5.0)
            raise RuntimeError(f"{self} ended (exit code {self._process.exitcode})") from None
        if kind == "timeout":
            raise TimeoutError(value)
        return value


def _serve(
    conn: Connection, kafka: KafkaSettings, group: str, topic: str, settings: dict[str, Any]
) -> None:
    """The child: one member, answering the test's requests until it is told to close."""
    consumer = make_consumer(kafka, group_id=group, **settings)
    consumer.subscribe([topic])
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the test's process is gone: so is this one, without a close
            os._exit(1)
        if request[0] == "partitions":
            meta = consumer.list_topics(topic, timeout=request[1]).topics[topic]
            conn.send(("ok", len(meta.partitions)))
        elif request[0] == "assigned":
            partitions, timeout = request[1], request[2]

            def assigned(expected: int = partitions) -> bool:
                consumer.poll(0.2)
                return len(consumer.assignment()) == expected

            try:
                procs.wait_until(
                    assigned, timeout=timeout, interval=0.0, what=f"{partitions} partitions"
                )
            except TimeoutError as exc:
                conn.send(("timeout", str(exc)))
                continue
            ours = sorted(tp.partition for tp in consumer.assignment())
            conn.send(("ok", Assigned(ours, consumer.consumer_group_metadata())))
        else:  # "close"
            # Should the test's process be gone too, the kernel ends this one (SIGALRM's
            # default action needs no GIL) if the close hangs.
            signal.alarm(int(SLACK_S) * 4)
            consumer.close()
            return
