"""Tenants: `config/tenants.yaml`, checked whole at start-up.

Credentials are never written in the file: each secret is a reference,
`{env: VAR}` or `{file: path}`, resolved at load into a `SecretStr`. Every problem is
reported at once, naming the tenant and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.common.errors import ConfigError
from services.common.secrets import Secret, SecretRef
from services.targets.config import TargetConfig

__all__ = ["Secret", "SecretRef", "Tenant", "enabled", "load_tenants", "tenant_of_key"]

SiesaMode = Literal["diff", "filter", "hybrid"]


class SiesaSource(BaseModel):
    """Where and how a tenant's items are read (external-apis.md, design.md).

    ``mode``: ``diff`` reads the whole catalogue every poll; ``filter`` asks only for
    rows changed since the watermark (``change_date_column`` through ``parametros``,
    day-granular, minus ``lookback_days``); ``hybrid`` filters every poll and runs a full
    ``diff`` reconcile every ``reconcile_interval_s``. Default: ``hybrid`` when the
    tenant's consulta has a change-date column (``change_date_column`` set, e.g.
    ``f120_fecha_actualizacion``; *assumed* in Siesa, so not on by default), else ``diff``.
    ``request_budget_per_min``: requests to Siesa in any 60 s (retries included).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    company: int
    consulta: str = "API_v2_Items"
    page_size: int = Field(default=100, ge=1, le=100)
    poll_interval_s: float = Field(default=5.0, gt=0)
    conni_key: Secret
    conni_token: Secret
    timeout_s: float = Field(default=30.0, gt=0)
    mode: SiesaMode | None = None
    change_date_column: str | None = None
    filter_start_param: str = "FechaInicio"
    lookback_days: int = Field(default=1, ge=0, le=366)
    reconcile_interval_s: float = Field(default=3600.0, gt=0)
    request_budget_per_min: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _mode_needs_a_date_column(self) -> SiesaSource:
        if self.mode in ("filter", "hybrid") and not self.change_date_column:
            raise ValueError(f"mode {self.mode} needs a change_date_column")
        return self

    @property
    def effective_mode(self) -> SiesaMode:
        if self.mode is not None:
            return self.mode
        return "hybrid" if self.change_date_column else "diff"


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    enabled: bool = True
    mapping: str = "siesa-items"
    siesa: SiesaSource
    target: TargetConfig  # a registered target's settings, by `type` (services/targets)


class TenantsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenants: list[Tenant]


def load_tenants(path: Path) -> dict[str, Tenant]:
    """All tenants of `path` by id (enabled or not); ConfigError lists every problem."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read tenants file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tenants"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'tenants' list")
    problems: list[str] = []
    tenants: dict[str, Tenant] = {}
    for index, item in enumerate(raw["tenants"]):
        name = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        try:
            # Relative secret files are found next to the tenants file.
            tenant = Tenant.model_validate(item, context={"base_dir": path.parent})
        except ValidationError as exc:
            problems.extend(
                f"{path}: tenant {name}: {'.'.join(str(p) for p in err['loc']) or '(root)'}: "
                f"{err['msg']}"
                for err in exc.errors()
            )
            continue
        if tenant.id in tenants:
            problems.append(f"{path}: tenant {tenant.id}: id: defined twice")
        tenants[tenant.id] = tenant
    if problems:
        raise ConfigError(problems)
    return tenants


def enabled(tenants: dict[str, Tenant]) -> list[Tenant]:
    return [t for t in tenants.values() if t.enabled]


def tenant_of_key(key: bytes | None) -> str | None:
    """`<tenant>/<id>` record keys name their tenant first."""
    if not key:
        return None
    text = key.decode(errors="replace")
    return text.split("/", 1)[0] if "/" in text else None
