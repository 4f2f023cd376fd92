"""The tenants this instance polls: started (state and fingerprints restored, a poller
handed to the scheduler) and stopped as ownership (services/extractor/ownership.py)
says; operator commands reach them through `command` (services/extractor/commands.py).

Every tenant's scanner commits through the instance's one `Transactions`
(services/extractor/commit.py). A tenant's memory lives only while it is polled here:
stopping it drops it, and the next owner restores what was committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from services.common.alerts import Alerter
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.stopper import Stopper
from services.common.tenants import Tenant
from services.extractor.commands import Commands
from services.extractor.commit import Transactions
from services.extractor.memory import TenantMemory, restore
from services.extractor.poller import TenantPoller
from services.extractor.scan import Scanner
from services.extractor.schedule import Scheduler
from services.extractor.settings import ExtractorSettings
from services.sources import open_source

log = logging.getLogger(__name__)

# Tenants whose scans are asked to end together when partitions leave.
STOPPING_AT_ONCE = 16


@dataclass
class Fleet:
    settings: ExtractorSettings
    kafka: KafkaSettings
    serde: Serde
    scheduler: Scheduler
    transactions: Transactions
    commands: Commands
    stopper: Stopper
    alerter: Alerter | None = None
    max_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        self._pollers: dict[str, TenantPoller] = {}
        self.commands.tenants = self

    def polled(self) -> list[str]:
        return sorted(self._pollers)

    def restore(self, tenants: list[str]) -> dict[str, TenantMemory]:
        """Their committed state and fingerprints, as stored now."""
        began = time.monotonic()
        memories = restore(self.kafka, self.serde, tenants)
        log.info("restored %d tenants in %.1f s", len(tenants), time.monotonic() - began)
        return memories

    def start(self, tenants: list[tuple[Tenant, TenantMemory]]) -> None:
        """Poll them, each from its memory (restored since its partition came)."""
        for tenant, memory in tenants:
            # The tenant's own stop flag: its source's waits end when it is stopped here.
            stopper = self.scheduler.tenant_stopper()
            poller = TenantPoller(
                Scanner(
                    tenant=tenant,
                    source=open_source(tenant.id, tenant.source, stopper=stopper),
                    producer=None,
                    transactions=self.transactions,
                    serde=self.serde,
                    kafka=self.kafka,
                    memory=memory,
                    max_field_length=self.settings.max_field_length,
                    commit_rows=self.settings.commit_rows,
                    commit_interval_s=self.settings.commit_interval_s,
                    max_bytes=self.max_bytes,
                ),
                max_backoff_s=self.settings.max_backoff_s,
                alerter=self.alerter,
            )
            with self.commands.lock:
                self._pollers[tenant.id] = poller
                self.scheduler.start(poller, stopper)
                self.commands.started(tenant.id)
        log.info(
            "polling %d more tenants (%d in all): %s",
            len(tenants),
            len(self._pollers),
            ", ".join(f"{t.id} ({t.source.type}, {t.source.effective_mode})" for t, _ in tenants),
        )

    def stop(self, tenants: Collection[str]) -> None:
        """Stop polling them; returns once their scans have ended (what they handed over
        committed or failed) and their memory is dropped."""
        with self.commands.lock:
            leaving = [t for t in tenants if self._pollers.pop(t, None) is not None]
        if not leaving:
            return
        with ThreadPoolExecutor(min(STOPPING_AT_ONCE, len(leaving))) as pool:
            list(pool.map(self.scheduler.stop, leaving))
        log.info("stopped %d tenants (%d left): %s", len(leaving), len(self._pollers), leaving)

    def state_of(self, tenant: str) -> dict[str, Any] | None:
        poller = self._pollers.get(tenant)
        return poller.memory.state if poller is not None else None

    def command(self, tenant: str, name: str) -> None:
        self.scheduler.command(tenant, name)
