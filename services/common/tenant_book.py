"""The tenants a service runs, live: its tenants file's until `sync.tenants.v1` holds any
record, then the topic's (services/common/tenant_feed.py), followed as it changes.

`TenantView` is the rule, with no Kafka: records go in one at a time, `current()` is
the enabled tenants. A record that does not parse here (not a tenant entry, a bad
field, a secret this service cannot resolve) is logged with its tenant and field and
changes nothing: a tenant that was running keeps running as it was, one that was not
stays out, and every other tenant goes on. A removal takes its tenant out.

`TenantBook` feeds a view from the topic: `start()` reads the whole topic (committed
records) to its end before it returns, then a daemon thread follows it and calls
`on_change` with the whole new enabled set each time it changes. The book reads in a
throwaway group of its own and commits nothing (every instance reads every tenant).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from services.common import tenant_feed, topics
from services.common.errors import ConfigError, RetriableError
from services.common.scan import end_offsets, reader, scan
from services.common.settings import KafkaSettings, ServiceSettings
from services.common.tenants import Tenant, tenant_of_key

log = logging.getLogger(__name__)

Entries = dict[str, dict[str, Any] | None]  # tenant -> its applied entry, None: removed
OnChange = Callable[[dict[str, Tenant]], None]

POLL_S = 0.2
CATCH_UP_EVERY_S = 5.0
CATCH_UP_TIMEOUT_S = 5.0


class TenantView:
    """The book's rule over the records read so far (see the module's docstring)."""

    def __init__(
        self, file_tenants: dict[str, Tenant], base_dir: Path, resolve: Collection[str] = ()
    ) -> None:
        self.file_tenants = dict(file_tenants)
        self.base_dir = base_dir
        self.resolve = tuple(resolve)
        self.applied: dict[str, Tenant] = {}  # the topic's tenants that parse here
        self.any_record = False

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic, in the topic's order."""
        self.any_record = True
        try:
            tenant, entry = tenant_feed.decode(key, value)
        except ConfigError as exc:
            problems, tenant = exc.problems, _tenant_of(key)
        else:
            problems = [] if entry is None else self._take(tenant, entry)
            if entry is None and self.applied.pop(tenant, None) is not None:
                log.info("tenant %s removed", tenant, extra={"tenant": tenant})
        kept = "kept as it was" if tenant in self.applied else "not run"
        for problem in problems:
            log.error("tenant record skipped: %s (%s)", problem, kept, extra={"tenant": tenant})

    def _take(self, tenant: str, entry: dict[str, Any]) -> list[str]:
        """The tenant's new entry, or the problems why it is not taken."""
        try:
            parsed = tenant_feed.tenants_of(
                {tenant: entry}, base_dir=self.base_dir, resolve=self.resolve
            )
        except ConfigError as exc:
            return exc.problems
        self.applied[tenant] = parsed[tenant]
        return []

    def tenants(self) -> dict[str, Tenant]:
        """Every tenant by the rule, enabled or not."""
        return dict(self.applied) if self.any_record else dict(self.file_tenants)

    def current(self) -> dict[str, Tenant]:
        """The enabled tenants by the rule."""
        return {t.id: t for t in self.tenants().values() if t.enabled}


def _tenant_of(key: bytes | None) -> str:
    return (key or b"").decode(errors="replace")


def read_entries(kafka: KafkaSettings, timeout: float = 30.0) -> tuple[Entries, list[str]]:
    """What the topic holds now, committed, to its end: tenant -> entry (None: removed),
    and the tenants whose latest record is not one of ours (left out of the entries)."""
    entries: Entries = {}
    unreadable: dict[str, None] = {}
    for key, value in _records(kafka, timeout):
        try:
            tenant, entry = tenant_feed.decode(key, value)
        except ConfigError:
            tenant = _tenant_of(key)
            entries.pop(tenant, None)
            unreadable[tenant] = None
            continue
        unreadable.pop(tenant, None)
        entries[tenant] = entry
    return entries, list(unreadable)


def _records(kafka: KafkaSettings, timeout: float) -> Iterator[tuple[bytes | None, bytes | None]]:
    consumer = reader(kafka)
    try:
        for msg in scan(consumer, kafka.topic(topics.TENANTS), timeout=timeout):
            yield msg.key(), msg.value()
    finally:
        consumer.close()


def applied_tenants(kafka: KafkaSettings, base_dir: Path) -> dict[str, Tenant] | None:
    """Every applied tenant (enabled or not), read once, no secret resolved; None while
    the topic holds no record (then the tenants file is the truth): what the operator
    tools (status, the console) show as configured."""
    view = TenantView({}, base_dir)
    for key, value in _records(kafka, 30.0):
        view.apply(key, value)
    return view.tenants() if view.any_record else None


class TenantBook:
    """A `TenantView` fed live from `sync.tenants.v1` (see the module's docstring)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        file_tenants: dict[str, Tenant],
        base_dir: Path,
        resolve: Collection[str],
        on_change: OnChange,
    ) -> None:
        self.kafka = kafka
        self.view = TenantView(file_tenants, base_dir, resolve)
        self.on_change = on_change
        self.topic = kafka.topic(topics.TENANTS)
        self._lock = threading.Lock()
        self._current = self.view.current()
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        # Callers waiting for the book to reach the topic's end (`catch_up`).
        self._asked = threading.Condition(self._lock)
        self._asks = 0
        self._answered = 0

    @classmethod
    def of_service(
        cls,
        kafka: KafkaSettings,
        file_tenants: dict[str, Tenant],
        settings: ServiceSettings,
        on_change: OnChange,
    ) -> TenantBook:
        """A service's book: the tenants of its tenants file until a first apply (secret
        files found beside it), the secrets of its own tenant parts read."""
        return cls(
            kafka,
            file_tenants,
            base_dir=settings.tenants_file.parent,
            resolve=settings.tenant_parts,
            on_change=on_change,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Read the topic to its end (RetriableError past `timeout`), then follow it."""
        consumer = reader(self.kafka)
        self._consumer = consumer
        ends = end_offsets(consumer, self.topic, timeout)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in ends])
        self._read_to(ends, time.monotonic() + timeout)
        with self._lock:
            self._current = self.view.current()
        self._thread = threading.Thread(target=self._follow, name="tenant-book", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def current(self) -> dict[str, Tenant]:
        """The enabled tenants now."""
        with self._lock:
            return dict(self._current)

    def catch_up(self, timeout: float = 5.0) -> bool:
        """Wait until the book has read (and told `on_change` of) everything committed to
        the topic when this is called; False if it did not within `timeout`."""
        with self._asked:
            self._asks += 1
            wanted = self._asks
            return self._asked.wait_for(lambda: self._answered >= wanted, timeout)

    def _follow(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                asks = self._asks
            try:
                if asks > self._answered:
                    ends = end_offsets(self._consumer_now(), self.topic, timeout=10)
                    self._read_to(ends, time.monotonic() + 10)
                else:
                    self._read_some()
            except RetriableError as exc:
                log.warning("tenants topic: %s", exc)
                self._stop.wait(1.0)
                continue
            self._publish()
            if asks > self._answered:
                with self._asked:
                    self._answered = asks
                    self._asked.notify_all()

    def _consumer_now(self) -> Consumer:
        if self._consumer is None:
            raise RetriableError("the tenant book is stopped")
        return self._consumer

    def _read_some(self) -> None:
        """What came since the last read: waits up to POLL_S for a first record."""
        consumer = self._consumer_now()
        for msg in consumer.consume(500, POLL_S):
            self._take(msg.error(), msg.key(), msg.value())

    def _read_to(self, ends: dict[int, int], deadline: float) -> None:
        consumer = self._consumer_now()
        todo = [TopicPartition(self.topic, p) for p, end in ends.items() if end > 0]
        while todo:
            # Positions pass transaction markers too; before a first record it is < 0.
            todo = [tp for tp in consumer.position(todo) if tp.offset < ends[tp.partition]]
            if not todo:
                return
            if time.monotonic() > deadline:
                raise RetriableError(f"timed out reading {self.topic} to offsets {ends}")
            for msg in consumer.consume(500, POLL_S):
                self._take(msg.error(), msg.key(), msg.value())

    def _take(self, error: KafkaError | None, key: bytes | None, value: bytes | None) -> None:
        if error is None:
            self.view.apply(key, value)
        elif error.code() != KafkaError._PARTITION_EOF:
            raise RetriableError(f"cannot read {self.topic}: {error.str()}")

    def _publish(self) -> None:
        now = self.view.current()
        with self._lock:
            if now == self._current:
                return
            self._current = now
        log.info("tenants now: %s", ", ".join(sorted(now)) or "none")
        self.on_change(now)


class CatchUp:
    """For a stage following a book: before a batch holding a record of a tenant it does
    not know, the book reads the topic to its end (and tells `on_change`), at most every
    `every_s`. A tenant applied a moment ago may have records in flight before this
    instance's book has read its entry; without this they would be dead-lettered as of an
    unknown tenant. A removed tenant's records cost one catch-up per `every_s`."""

    def __init__(
        self,
        catch_up: Callable[[float], bool],
        every_s: float = CATCH_UP_EVERY_S,
        timeout_s: float = CATCH_UP_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catch_up = catch_up
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._last: float | None = None

    def before(self, batch: Sequence[Message], known: Collection[str]) -> bool:
        """True if the book was asked to catch up (the stage takes its changes then)."""
        if not any((tenant_of_key(msg.key()) or "") not in known for msg in batch):
            return False
        if self._last is not None and self.clock() - self._last < self.every_s:
            return False
        self._last = self.clock()
        if not self.catch_up(self.timeout_s):
            log.warning("the tenants topic was not read to its end in %.0f s", self.timeout_s)
        return True
