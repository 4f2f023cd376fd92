"""The loader's step: a batch of canonical products upserted into their targets.

Within a batch only the newest version of each key is written (older ones are
superseded, so skipping them keeps order), different keys go out concurrently, and the
batch's offsets are committed by the run loop only after every record is confirmed by
its target or dead-lettered.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from services.common.errors import FatalError, RetriableError, SkippableError, UnknownTenant
from services.common.runloop import BatchResult, unexpected
from services.common.serde import Serde
from services.common.tenants import Tenant
from services.loader.adapters import ADAPTERS
from services.loader.adapters.base import Adapter, UpsertResult

log = logging.getLogger(__name__)


@dataclass
class Loader:
    serde: Serde
    tenants: dict[str, Tenant]
    max_in_flight: int = 16
    adapters: dict[str, Adapter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tenant in self.tenants.values():
            self.adapters[tenant.id] = ADAPTERS[tenant.target.type](tenant.id, tenant.target)
        self._pool = ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="upsert")
        self._slots = {
            t.id: threading.BoundedSemaphore(t.target.concurrency) for t in self.tenants.values()
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for adapter in self.adapters.values():
            adapter.close()

    def handle_batch(self, batch: list[Message]) -> BatchResult:
        result = BatchResult()
        newest: dict[tuple[str, str], tuple[Message, dict[str, Any]]] = {}
        for msg in batch:
            try:
                product = self.serde.decode_as("CanonicalProduct", msg.value())
                if product["tenant"] not in self.adapters:
                    raise UnknownTenant(
                        f"tenant {product['tenant']}: no target configured for it",
                        tenant=product["tenant"],
                    )
            except SkippableError as exc:
                result.failures.append((msg, exc))
                continue
            newest[product["tenant"], product["sku"]] = (msg, product)
        if superseded := len(batch) - len(result.failures) - len(newest):
            result.counts["superseded"] = superseded
        futures = [
            (msg, self._pool.submit(self._upsert, product)) for msg, product in newest.values()
        ]
        retriable: RetriableError | None = None
        for msg, future in futures:
            try:
                result.counts[future.result().action] += 1
            except SkippableError as exc:
                result.failures.append((msg, exc))
            except RetriableError as exc:
                retriable = exc
            except FatalError:
                raise
            except Exception as exc:  # noqa: BLE001 - dead-lettered with the reason, not lost
                result.failures.append((msg, unexpected(exc, f"upsert of {msg.key()!r}")))
        if retriable is not None:
            raise retriable  # the whole batch again; what landed already is idempotent
        return result

    def _upsert(self, product: dict[str, Any]) -> UpsertResult:
        tenant = product["tenant"]
        with self._slots[tenant]:
            return self.adapters[tenant].upsert(product)
