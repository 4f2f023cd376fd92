"""Settings shared by every service; each service adds its own class with its own prefix."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.health import DEFAULT_STALL_S
from services.common.packaged import data_dir
from services.product import NAME


def example_tenants_file() -> Path:
    """The tenants file shipped with the package (the demo tenants): the default, so a
    checkout runs as is; a deployment names its own in `<SERVICE>_TENANTS_FILE`."""
    return data_dir("config") / "tenants.yaml"


DAY_MS = 24 * 3600 * 1000

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class KafkaSettings(BaseSettings):
    """`KAFKA_*`: how to reach and authenticate to the cluster, and how the topics are
    named and made. Every client (services and CLI) is built from these by
    `services.common.kafka.client_config`; the checks (missing or contradictory
    settings, unreadable files) are in `services.common.kafka_security`.

    Secrets are `SecretStr`, given directly (`KAFKA_SASL_PASSWORD`) or by file
    (`KAFKA_SASL_PASSWORD_FILE`, e.g. a mounted Kubernetes or Docker secret), never
    both. `librdkafka` passes any other librdkafka property through:
    `KAFKA_LIBRDKAFKA__SOCKET_KEEPALIVE_ENABLE=true` (underscores become dots) or
    `KAFKA_LIBRDKAFKA='{"socket.keepalive.enable": "true"}'`.
    """

    model_config = SettingsConfigDict(
        env_prefix="KAFKA_", frozen=True, extra="ignore", env_nested_delimiter="__"
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    # Names this process's clients to the brokers (quotas, broker logs): each service
    # appends `-<service>-<instance>`.
    client_id: str = Field(default=NAME, min_length=1)

    # Topics (`topics create`): None = chosen from the cluster's size.
    partitions: int = Field(default=6, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)  # min(3, brokers)
    min_insync_replicas: int | None = Field(default=None, ge=1)  # 2 from RF 3, else 1
    raw_retention_ms: int = Field(default=7 * DAY_MS, ge=-1)
    canonical_retention_ms: int = Field(default=7 * DAY_MS, ge=-1)
    dlq_retention_ms: int = Field(default=30 * DAY_MS, ge=-1)
    commands_retention_ms: int = Field(default=7 * DAY_MS, ge=-1)
    # A stage whose committed offset is older than its topic's retention: `stop`
    # (default: log the range lost, alert, stop consuming) or `earliest` (the same, then
    # go on from the oldest record still kept).
    lost_offsets: Literal["stop", "earliest"] = "stop"

    # Security: see docs/operations.md for managed clusters.
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    # OAUTHBEARER: OIDC client credentials, fetched and refreshed by librdkafka ...
    sasl_oauthbearer_token_endpoint_url: str | None = None
    sasl_oauthbearer_client_id: str | None = None
    sasl_oauthbearer_client_secret: SecretStr | None = None
    sasl_oauthbearer_client_secret_file: Path | None = None
    sasl_oauthbearer_scope: str | None = None
    sasl_oauthbearer_extensions: str | None = None
    # ... or tokens from a function `module:function` (e.g. AWS MSK IAM), which returns
    # (token, expiry as epoch seconds).
    sasl_oauthbearer_token_provider: str | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    ssl_key_password_file: Path | None = None
    # Check that the broker's certificate names the host connected to (librdkafka's
    # `ssl.endpoint.identification.algorithm=https`); turn off only for test clusters.
    ssl_endpoint_identification: bool = True
    librdkafka: dict[str, str] = Field(default_factory=dict)

    _secrets: dict[str, SecretStr] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _checked(self) -> KafkaSettings:
        from services.common.kafka_security import check

        # Every problem at once, one per line; each names its KAFKA_* variable.
        self._secrets = check(self)
        return self

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def secret(self, name: str) -> SecretStr | None:
        """A secret setting (`sasl_password`, ...) whether given directly or by file."""
        return self._secrets.get(name)

    def for_client(self, role: str) -> KafkaSettings:
        """These settings with `client_id` extended by `role` (`transformer-<instance>`)."""
        copy = self.model_copy(update={"client_id": f"{self.client_id}-{role}"})
        copy._secrets = dict(self._secrets)
        return copy


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
