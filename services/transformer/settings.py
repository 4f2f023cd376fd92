"""`TRANSFORMER_*` settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ROOT, ServiceSettings


class TransformerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSFORMER_", frozen=True, extra="ignore")

    mappings_dir: Path = ROOT / "mappings"
    group_id: str = "siesa-sync-transformer"
    batch_size: int = Field(default=500, ge=1)
