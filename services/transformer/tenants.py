"""The transformer's tenants, live: the tenant book (services/common/tenant_book.py) says
what changed, and the change is taken between batches, in the run loop's thread, so a
batch is transformed by one set of mappings from its first record to its last.

A new tenant's mapping is compiled (or taken from those compiled at start-up), a tenant
whose mapping name changed gets that mapping, and a removed tenant's records go to the
DLQ as of an unknown tenant, as any tenant's that is not configured. A mapping that
does not compile is logged with its tenant and the tenant keeps the mapping it had
(or stays out, if new); the other tenants go on.

A batch holding a record of a tenant not known here first asks the book to read the
tenants topic to its end (`tenant_book.CatchUp`): an extractor may start a tenant just
applied a moment before this instance's book has read it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
from pathlib import Path

from confluent_kafka import Message

from services.common.errors import ConfigError
from services.common.runloop import BatchResult, per_record
from services.common.sizes import within
from services.common.tenant_book import CatchUp
from services.common.tenants import Tenant
from services.transformer.compiler import Shapes, compile_mapping
from services.transformer.mapping import Mapping
from services.transformer.service import Transformer

log = logging.getLogger(__name__)

MAPPING_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")  # a file of mappings_dir, no path


class LiveTenants:
    def __init__(
        self,
        transformer: Transformer,
        tenants: dict[str, Tenant],
        compiled: dict[str, Mapping],
        mappings_dir: Path,
        shapes: Shapes,
        max_bytes: int,
        catch_up: CatchUp | None = None,
    ) -> None:
        self.transformer = transformer
        self.tenants = dict(tenants)
        self.compiled = dict(compiled)  # by mapping name
        self.mappings_dir = mappings_dir
        self.shapes = shapes
        self.max_bytes = max_bytes
        self.catch_up = catch_up
        self._lock = threading.Lock()
        self._pending: dict[str, Tenant] | None = None

    def changed(self, tenants: dict[str, Tenant]) -> None:
        """The book's `on_change` (its thread): taken before the next batch."""
        with self._lock:
            self._pending = dict(tenants)

    def handle_batch(self, batch: list[Message]) -> BatchResult:
        self._take_changes()
        if self.catch_up is not None and self.catch_up.before(batch, self.transformer.mappings):
            self._take_changes()
        return per_record(within(self.transformer.handle, self.max_bytes))(batch)

    def _take_changes(self) -> None:
        with self._lock:
            tenants, self._pending = self._pending, None
        if tenants is None:
            return
        mappings: dict[str, Mapping] = {}
        for tenant in tenants.values():
            mapping = self._mapping(tenant)
            if mapping is not None:
                mappings[tenant.id] = mapping
            elif tenant.id in self.transformer.mappings:  # kept as it was
                mappings[tenant.id] = self.transformer.mappings[tenant.id]
        for gone in sorted(set(self.transformer.mappings) - set(mappings)):
            log.info("tenant %s: no longer transformed here", gone, extra={"tenant": gone})
        for new in sorted(set(mappings) - set(self.transformer.mappings)):
            log.info("tenant %s: transformed from now on", new, extra={"tenant": new})
        self.tenants = tenants
        self.transformer = dataclasses.replace(self.transformer, mappings=mappings)

    def _mapping(self, tenant: Tenant) -> Mapping | None:
        """The tenant's mapping, compiled once per name; None (logged) if it does not."""
        name = tenant.mapping
        if not MAPPING_NAME.fullmatch(name):
            log.error(
                "tenant %s: mapping: %r is not a mapping name",
                tenant.id,
                name,
                extra={"tenant": tenant.id},
            )
            return None
        if name not in self.compiled:
            try:
                mapping = compile_mapping(self.mappings_dir / f"{name}.yaml", self.shapes)
            except ConfigError as exc:
                problems = exc.problems
            else:
                self.compiled[name] = mapping
                return mapping
            for problem in problems:
                log.error("tenant %s: mapping: %s", tenant.id, problem, extra={"tenant": tenant.id})
            return None
        return self.compiled[name]
