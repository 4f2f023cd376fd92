"""`CONSOLE_*` settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import ROOT, KafkaSettings

DEFAULT_METRICS = ",".join(f"http://127.0.0.1:{port}/metrics" for port in (9101, 9102, 9103))


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", frozen=True, extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    host: str = "127.0.0.1"
    port: int = Field(default=9100, ge=0, le=65535)
    # Local users: name, role (viewer | operator) and an argon2 password hash each;
    # `siesa-sync console add-user` writes it.
    users_file: Path = ROOT / "config" / "console-users.yaml"
    # "viewer" lets anyone who reaches the console look (never act) without logging in.
    anonymous_role: Literal["none", "viewer"] = "none"
    # Signs the session cookies. Unset: a random key per start (everyone logs in again).
    session_secret: SecretStr | None = None
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    # Send cookies only over HTTPS (set it when a TLS proxy fronts the console).
    secure_cookies: bool = False
    login_attempts: int = Field(default=5, ge=1)  # failures per user or address in 5 min
    tenants_file: Path = ROOT / "config" / "tenants.yaml"
    mappings_dir: Path = ROOT / "mappings"
    transformer_group: str = "siesa-sync-transformer"
    loader_group: str = "siesa-sync-loader"
    # The services' /metrics (comma-separated): breaker states and freshness come from
    # there, the rest from the topics.
    metrics_urls: str = DEFAULT_METRICS
    metrics_interval_s: float = Field(default=15.0, gt=0)
    refresh_s: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"

    def metrics_url_list(self) -> list[str]:
        return [u.strip() for u in self.metrics_urls.split(",") if u.strip()]
