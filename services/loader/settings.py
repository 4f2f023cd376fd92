"""`LOADER_*` settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class LoaderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOADER_", frozen=True, extra="ignore")
    # The targets' credentials only (`auth`, settings' secrets): never a source's.
    tenant_parts: ClassVar[tuple[str, ...]] = ("target",)

    group_id: str = "siesa-sync-loader"
    batch_size: int = Field(default=500, ge=1)
    # The most calls one tenant has in flight in this loader (with its share of its
    # target's `concurrency`).
    max_in_flight: int = Field(default=16, ge=1, le=256)
    # The threads making calls, for all tenants together: the loader's threads and
    # connections are bounded by it, not by the tenant count.
    workers: int = Field(default=64, ge=1, le=1024)
    # Names this loader's sync state (`<tenant>/loader-<instance_id>` on sync.state.v1).
    # Give each replica a stable one (its pod or host name) so its counts carry on over
    # restarts. Default: <host>-<pid>, unique but not stable.
    instance_id: str = ""
    # Records held (pending or parked), at most, in all tenants; past it new records are
    # not kept but read again later (their offsets held, nothing committed past them),
    # while the held ones go on being delivered; read again, only they are taken (not
    # written twice). Each costs ~3 KB while held: its Kafka message, and its call
    # queued (a Future and its lock); memory freed after a first sync mostly stays in
    # the allocator, so this bound sets the loader's peak RSS (20,000 made it 261 MB
    # at 1,000 tenants, where the targets, not the records read ahead, set the pace).
    max_parked: int = Field(default=10_000, ge=1)
    # Records one tenant keeps parked, at most (distinct products); past it its records
    # are read again later instead of kept, so a tenant whose target is down holds at
    # most this much of `max_parked`, and the others go on (the default: two such
    # tenants before the rest share what is left). Well above what one tenant has in
    # flight (`max_in_flight` x 64 queued per call slot).
    max_parked_per_tenant: int = Field(default=5_000, ge=1)
    # The longest one step waits for tenants' calls to end before the consumer is polled
    # again (a slow target's calls go on meanwhile, in its own threads).
    step_wait_s: float = Field(default=0.5, gt=0, le=30)
    # A breaker's cool-down doubles at each failed probe, up to this.
    breaker_max_cooldown_s: float = Field(default=300.0, gt=0)
    # How long the consumer may go without polling before its group evicts it (librdkafka
    # `max.poll.interval.ms`; at least its session timeout, 15 s). The loader polls every
    # `step_wait_s` or so however long its targets take, so the default is plenty.
    max_poll_interval_s: float = Field(default=300.0, ge=15, le=86_400)
