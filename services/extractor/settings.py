"""`EXTRACTOR_*` settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ExtractorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXTRACTOR_", frozen=True, extra="ignore")
    # The sources' credentials only: the extractor never holds a target's.
    tenant_parts: ClassVar[tuple[str, ...]] = ("source",)

    # Threads that run the tenants' scans (services/extractor/schedule.py): how many
    # scans run at once, whatever the number of tenants.
    workers: int = Field(default=8, ge=1, le=256)
    max_field_length: int = Field(default=4000, ge=1)
    max_backoff_s: float = Field(default=60.0, gt=0)
    # A transaction is committed once it holds this many records or is this old.
    # Bigger transactions cost fewer commits (each ~0.1-0.2 s on a busy broker); a scan
    # cut short is read again, so their size only bounds what is re-read, never lost.
    commit_rows: int = Field(default=5000, ge=1)
    commit_interval_s: float = Field(default=5.0, gt=0)
    # Commands older than this when first read (e.g. by a new consumer group) are ignored.
    command_max_age_s: float = Field(default=3600.0, gt=0)
    # This instance's name in the extractors' group and in its transactional id
    # (`<prefix>siesa-sync-extractor-<instance id>`); default: <host>-<pid>. Two
    # instances must never share one: the second fences the first.
    instance_id: str = ""
