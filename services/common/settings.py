"""Settings shared by every service; each service adds its own class with its own prefix."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.health import DEFAULT_STALL_S
from services.common.packaged import data_dir


def example_tenants_file() -> Path:
    """The tenants file shipped with the package (the demo tenants): the default, so a
    checkout runs as is; a deployment names its own in `<SERVICE>_TENANTS_FILE`."""
    return data_dir("config") / "tenants.yaml"


class KafkaSettings(BaseSettings):
    """`KAFKA_*`: how to reach the broker and name the topics."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", frozen=True, extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


class ServiceSettings(BaseSettings):
    """Fields every service has; subclasses set their own `env_prefix`, and name the
    tenant parts whose secrets the service reads (`tenant_parts`, services/common/tenants.py:
    a service is given and holds no other credential)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")
    tenant_parts: ClassVar[tuple[str, ...]] = ()

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    tenants_file: Path = Field(default_factory=example_tenants_file)
    log_level: str = "INFO"
    # /healthz, /readyz, /metrics: None = the service's default port, 0 = any free port.
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535)
    # Liveness: /healthz fails once a loop with work made no progress for this long.
    stall_timeout_s: float = Field(default=DEFAULT_STALL_S, gt=0)
    # Alerts: one JSON POST (Slack-compatible) per condition while it lasts.
    alert_webhook_url: str | None = None
    alert_dlq_threshold: int = Field(default=100, ge=1)
