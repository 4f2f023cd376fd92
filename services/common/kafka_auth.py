"""Kafka refusing this process: an authentication failure (bad or missing credentials, a
TLS handshake refused) or an authorization failure (an ACL missing).

Never a silent hang nor a crash loop: each refusal is an error log line naming the
principal, the operation and the topic, group or transactional id; it is counted
(`kafka_refusals_total`); while refusals last, the service's `/readyz` answers 503
(problem `kafka-authorization`) and one alert is posted. The work is retried (the run
loop backs off, librdkafka reconnects); the first operation that succeeds again
resolves the problem and clears the alert.

One `Refusals` per process (`current()`), like `health.current()`: the Kafka clients
report to it through their `error_cb` (services/common/kafka.py `client_error`), the run
loop and the transactional producer helpers through `refused` and `succeeded`. While
the cluster refuses this process's credentials, the broker watch
(services/common/reachability.py) asks it `authentication()` and retries with backoff
instead of calling the broker unreachable: at start-up too, a service with bad
credentials waits not ready, saying why, rather than exiting into a crash loop; the
watch's first answer from the broker ends the refusal (`authenticated`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaError
from prometheus_client import Counter

from services.common import health
from services.common.alerts import Alerter
from services.product import METRIC_NAMESPACE

log = logging.getLogger(__name__)

PROBLEM = "kafka-authorization"
CONDITION = "kafka_refused"
ALL_TENANTS = "all"  # alerts are per tenant; a refusal stops every tenant's records
AUTHENTICATE = "AUTHENTICATE"  # the operation of a refused credential or TLS handshake
RELOG_S = 60.0  # the same refusal is logged again at most this often while it lasts

REFUSALS = Counter(
    f"{METRIC_NAMESPACE}_kafka_refusals",
    "Kafka operations refused to this service: authentication or authorization.",
    ["operation", "resource"],
)

AUTHORIZATION = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
}
AUTHENTICATION = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)
# librdkafka reports a connection lost in the middle of a SASL handshake as an
# authentication failure ("SASL SCRAM-SHA-512 mechanism handshake failed: Local: Broker
# transport failure"; seen in CI): the credentials were never answered, so it is no
# refusal, and librdkafka reconnects by itself.
TRANSPORT_FAILURE = "mechanism handshake failed: Local: Broker transport failure"


def is_refusal(error: KafkaError | None) -> bool:
    return error is not None and (error.code() in AUTHORIZATION or error.code() in AUTHENTICATION)


def is_client_refusal(error: KafkaError) -> bool:
    """What a client's `error_cb` reports as a refusal (`Refusals.on_client_error`): an
    authorization or authentication failure, or the TLS handshake refused."""
    return is_refusal(error) or error.code() == KafkaError._SSL


class Refusals:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.principal = "User:ANONYMOUS"
        self.alerter: Alerter | None = None
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], float] = {}  # (operation, resource) -> logged at
        self._messages: dict[tuple[str, str], str] = {}  # what each says

    def refused(self, error: KafkaError, operation: str, resource: str) -> str:
        """Kafka refused `operation` (READ, WRITE, AUTHENTICATE...) on `resource` ("topic
        products.canonical.v1", "group loaders"); returns the message logged."""
        message = (
            f"Kafka refused {operation} on {resource} to {self.principal}: {error.str()}"
            f"{_hint(error)}"
        )
        REFUSALS.labels(operation=operation, resource=resource).inc()
        now = self._clock()
        with self._lock:
            if self._named_already(operation, resource):
                # A transaction's commit says "topic" where its deliveries said which
                # one: the named refusal stays what is logged and shown.
                return message
            last = self._active.get((operation, resource))
            due = last is None or now - last >= RELOG_S
            if due:
                self._active[operation, resource] = now
            self._messages[operation, resource] = message
        if due:
            log.error(
                message,
                extra={"principal": self.principal, "operation": operation, "resource": resource},
            )
        health.current().report(PROBLEM, message)
        if self.alerter is not None:
            self.alerter.fire(ALL_TENANTS, CONDITION, message)
        return message

    def _named_already(self, operation: str, resource: str) -> bool:
        """`resource` is only a kind ("topic") and a refusal of `operation` on a named
        resource of that kind ("topic products.canonical.v1") is active."""
        if resource not in AUTHORIZATION.values():
            return False
        return any(
            op == operation and named.startswith(f"{resource} ") for op, named in self._active
        )

    def succeeded(self, *, except_operations: tuple[str, ...] = ()) -> None:
        """Operations went through: the refusals (if any) are over, but those of
        `except_operations`, which what succeeded did not exercise (an offsets-only
        commit says nothing of WRITE on a topic)."""
        self._resolve(lambda operation: operation not in except_operations)

    def authentication(self) -> str | None:
        """What Kafka said when it last refused this process's credentials (or its TLS
        handshake), while that lasts; else None."""
        with self._lock:
            said = [m for (op, _r), m in self._messages.items() if op == AUTHENTICATE]
        return said[-1] if said else None

    def authenticated(self) -> None:
        """The cluster answered this process (the broker watch's probe): refusals of its
        credentials are over; those of ACLs remain until their operations succeed."""
        self._resolve(lambda operation: operation == AUTHENTICATE)

    def _resolve(self, over: Callable[[str], bool]) -> None:
        with self._lock:
            if not self._active:
                return
            for key in [k for k in self._active if over(k[0])]:
                del self._active[key]
                self._messages.pop(key, None)
            if self._active:
                return
        log.info("Kafka accepts %s's operations again", self.principal)
        health.current().resolve(PROBLEM)
        if self.alerter is not None:
            self.alerter.clear(ALL_TENANTS, CONDITION)

    def on_client_error(self, error: KafkaError) -> None:
        """A client's `error_cb`: authentication failures are reported here; anything
        else is left to librdkafka's log (and to the broker-reachability handling)."""
        if error.code() in AUTHENTICATION and TRANSPORT_FAILURE in error.str():
            return  # the connection dropped during the handshake: nothing was refused
        if error.code() in AUTHENTICATION or error.code() == KafkaError._SSL:
            self.refused(error, AUTHENTICATE, "the cluster")
        elif error.code() in AUTHORIZATION:
            self.refused(error, "ACCESS", AUTHORIZATION[error.code()])


def _hint(error: KafkaError) -> str:
    if error.code() in AUTHORIZATION:
        return " (an ACL is missing: see `acls`)"
    return " (check the KAFKA_SASL_* and KAFKA_SSL_* settings; retried with backoff)"


_current: Refusals | None = None


def current() -> Refusals:
    """The process's one `Refusals`, made on first use."""
    global _current
    if _current is None:
        _current = Refusals()
    return _current
