"""`LOADER_*` settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class LoaderSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOADER_", frozen=True, extra="ignore")

    group_id: str = "siesa-sync-loader"
    batch_size: int = Field(default=500, ge=1)
    max_in_flight: int = Field(default=16, ge=1, le=256)
