"""Whether the Kafka brokers can be reached, said once and clearly, and kept in readiness.

Every client built by services/common/kafka.py hands its librdkafka errors to
`client_error` (its ``error_cb``): a transport error (``_TRANSPORT``,
``_ALL_BROKERS_DOWN``, ``_RESOLVE``) only makes the process's `BrokerWatch` suspect the
broker, which then asks it (a metadata request, a few seconds at most). It also asks
every ``RECHECK_S`` unsuspected: a client's errors reach the watch only when that client
is polled, and a run loop waiting in a broker call (a transaction's commit, a producer's
init: up to minutes while the broker is away) polls nothing. Unreachable: one
log line naming the address and what failed, the ``broker`` readiness problem, probes
with backoff, a reminder at most once a minute; reachable again: the problem resolved,
one line. A fatal client error is the ``fatal`` problem. librdkafka's own log lines,
which repeat every few milliseconds while a broker is down, pass once a minute each;
its connection failures (``FAIL``) not at all while a watch says them.

A broker that answers but refuses this process's credentials (or its TLS handshake)
is no reachability problem: `kafka_auth` says that refusal (one line naming the
principal, the ``kafka-authorization`` readiness problem, an alert); the watch, told by
its `Refusing`, only keeps probing with backoff, and its first answer ends the refusal.

A service waits for the broker with `connect(kafka, stopper)` after its configuration
is checked and before its first Kafka call: a stop (SIGTERM) ends the wait at once.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Protocol

from confluent_kafka import KafkaError, KafkaException

from services.common import health

log = logging.getLogger(__name__)
# What the clients' error callback says about other errors (repeats held back).
client_log = logging.getLogger("librdkafka.errors")

BROKER = "broker"
FATAL = "fatal"
TRANSPORT_ERRORS = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE}
)
PROBE_TIMEOUT_S = 2.0
MAX_BACKOFF_S = 5.0
RECHECK_S = 5.0  # a broker gone unnoticed by the clients is seen within this + a probe
REPEAT_EVERY_S = 60.0
# librdkafka appends how long a connection took and how many repeats it held back;
# without them, one failure repeated reads as one message.
_VOLATILE = re.compile(
    r"\s*\((?:after \d+ms in state \w+)?(?:,? ?\d+ identical error\(s\) suppressed)?\)"
)

Probe = Callable[[float], None]  # asks the broker; raises KafkaException when it can't


class Refusing(Protocol):
    """What the watch needs of the process's Kafka refusals (kafka_auth.Refusals)."""

    def authentication(self) -> str | None: ...

    def authenticated(self) -> None: ...


class Stopping(Protocol):
    """What the watch needs of the service's stop flag (services.common.stopper.Stopper)."""

    @property
    def stopped(self) -> bool: ...

    def wait(self, seconds: float) -> bool: ...


def _plain(detail: str) -> str:
    return _VOLATILE.sub("", detail).strip()


class Repeats(logging.Filter):
    """Lets each distinct message through at most once per ``every_s``; the next one
    that passes says how many were held back."""

    def __init__(
        self, every_s: float = REPEAT_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if _watch is not None and record.name == "librdkafka":
            if record.getMessage().startswith("FAIL "):
                return False  # a connection failure: the watch says it, once
        key = f"{record.levelno}:{_plain(record.getMessage())}"
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.every_s:
                self._seen[key] = (last, held + 1)
                return False
            if len(self._seen) > 1000:  # bounded memory whatever librdkafka says
                self._seen.clear()
            self._seen[key] = (now, 0)
        if held and last is not None:
            since = now - last
            record.msg = f"{record.getMessage()} ({held} more like it in the last {since:.0f} s)"
            record.args = None
        return True


_repeats = Repeats()
logging.getLogger("librdkafka").addFilter(_repeats)
client_log.addFilter(_repeats)


class BrokerWatch:
    """The broker's reachability for one process (see the module's doc)."""

    def __init__(
        self,
        address: str,
        probe: Probe,
        *,
        target: health.Health | None = None,
        clock: Callable[[], float] = time.monotonic,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        repeat_every_s: float = REPEAT_EVERY_S,
        recheck_s: float = RECHECK_S,
        refusals: Refusing | None = None,
    ) -> None:
        self.address = address
        self._probe = probe
        self._refusals = refusals
        self._refused = False  # the broker answers, but refuses this process's credentials
        self._health = target if target is not None else health.current()
        self._clock = clock
        self.probe_timeout_s = probe_timeout_s
        self.max_backoff_s = max_backoff_s
        self.repeat_every_s = repeat_every_s
        self.recheck_s = recheck_s
        self._suspected = threading.Event()
        self._detail = ""
        self._down_since: float | None = None
        self._attempts = 0
        self._said_at = 0.0

    @property
    def reachable(self) -> bool:
        return self._down_since is None

    @property
    def accepted(self) -> bool:
        """Reachable, and not refusing this process's credentials."""
        return self.reachable and not self._refused

    @property
    def suspected(self) -> bool:
        return self._suspected.is_set()

    def suspect(self, detail: str) -> None:
        """A client met a transport error (any thread): probe soon."""
        self._detail = _plain(detail)
        self._suspected.set()

    def check(self) -> bool:
        """Ask the broker once; update readiness and say what changed."""
        self._suspected.clear()
        try:
            self._probe(self.probe_timeout_s)
        except KafkaException as exc:
            refusal = self._refusals.authentication() if self._refusals is not None else None
            if refusal is not None:
                self._refusing()
            else:
                self._failed(exc.args[0].str() if exc.args else str(exc))
            return False
        if self._down_since is not None:
            log.info(
                "the Kafka broker at %s answers again after %.0f s",
                self.address,
                self._clock() - self._down_since,
                extra={"bootstrap_servers": self.address},
            )
        self._down_since, self._attempts, self._detail = None, 0, ""
        self._health.resolve(BROKER)
        if self._refused and self._refusals is not None:
            self._refusals.authenticated()  # it answered: the credentials are taken again
        self._refused = False
        return True

    def _refusing(self) -> None:
        """The probe failed because Kafka refuses this process's credentials, which
        kafka_auth has said: no "cannot reach" (the broker answers), only backoff."""
        self._attempts += 1
        self._refused = True
        self._down_since = None
        self._health.resolve(BROKER)

    def _failed(self, error: str) -> None:
        now = self._clock()
        self._attempts += 1
        why = self._detail or error
        if self._down_since is None:
            self._down_since = now
            self._said_at = now
            log.error(
                "cannot reach the Kafka broker at %s: %s; retrying every %.0f s at most, "
                "not ready until it answers",
                self.address,
                why,
                self.max_backoff_s,
                extra={"bootstrap_servers": self.address},
            )
        elif now - self._said_at >= self.repeat_every_s:
            self._said_at = now
            log.warning(
                "still cannot reach the Kafka broker at %s after %.0f s (%d attempts): %s",
                self.address,
                now - self._down_since,
                self._attempts,
                why,
                extra={"bootstrap_servers": self.address},
            )
        self._health.report(BROKER, f"cannot reach the Kafka broker at {self.address}: {why}")

    def _backoff(self) -> float:
        return min(self.max_backoff_s, 0.5 * 2.0 ** min(self._attempts, 10))

    def wait_until_reachable(self, stopper: Stopping) -> bool:
        """Probe with backoff until the broker answers (True) or a stop (False)."""
        while not stopper.stopped:
            if self.check():
                return True
            if stopper.wait(self._backoff()):
                break
        return False

    def watch(self, stopper: Stopping) -> threading.Thread:
        """From now on, probe whenever a client suspects the broker, every `recheck_s`
        when none does, and with backoff while it is down, on a daemon thread, until
        the stop."""

        def run() -> None:
            asked = self._clock()
            while not stopper.stopped:
                if self.accepted:
                    self._suspected.wait(min(1.0, self.recheck_s))
                    if not self.suspected and self._clock() - asked < self.recheck_s:
                        continue
                elif stopper.wait(self._backoff()):
                    return
                asked = self._clock()
                self.check()

        thread = threading.Thread(target=run, name="broker-watch", daemon=True)
        thread.start()
        return thread


_watch: BrokerWatch | None = None


def install(watch: BrokerWatch | None) -> None:
    """Make `watch` the one the clients' errors go to (None: none)."""
    global _watch
    _watch = watch


def client_error(error: KafkaError) -> None:
    """Every client's ``error_cb``: transport errors go to the watch, a fatal error
    makes the service unready, anything else is logged (repeats held back)."""
    if error.code() in TRANSPORT_ERRORS:
        if _watch is not None:
            _watch.suspect(error.str())
        else:
            client_log.warning("%s", error.str())
        return
    if error.fatal():
        health.current().report(FATAL, f"Kafka client: {error.str()}")
        client_log.error("fatal: %s", error.str())
        return
    client_log.warning("%s", error.str())
