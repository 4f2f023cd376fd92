"""`EXTRACTOR_*` settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class ExtractorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EXTRACTOR_", frozen=True, extra="ignore")

    max_field_length: int = Field(default=4000, ge=1)
    max_backoff_s: float = Field(default=60.0, gt=0)
