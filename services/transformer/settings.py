"""`TRANSFORMER_*` settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.packaged import data_dir
from services.common.settings import ServiceSettings


class TransformerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSFORMER_", frozen=True, extra="ignore")

    mappings_dir: Path = Field(default_factory=lambda: data_dir("mappings"))
    group_id: str = "siesa-sync-transformer"
    batch_size: int = Field(default=500, ge=1)
    # Names this instance's transactional producer. Give each replica a stable one (its
    # pod or host name): a restarted instance then aborts its predecessor's open
    # transaction at once instead of readers waiting for it to time out. Default:
    # <host>-<pid>, unique but not stable.
    instance_id: str = ""
