"""Tenants: `config/tenants.yaml`, checked whole at start-up; the one loader of it.

Each tenant names its source (`source:`, a registered source's settings chosen by
`type`, services/sources) and its target (`target:`, likewise, services/targets, with
its `auth:`). Credentials are never written in the file: each secret is a reference,
`{env: VAR}` or `{file: path}`, resolved at load into a `SecretStr` only for the parts
the caller uses (`resolve=("source",)` in the extractor, ``("target",)`` in the loader:
a target's `auth` and its settings' secrets; nothing in the transformer and the
operator tools); a secret of another part stays a reference and raises if read. Every
problem is reported at once, naming the tenant and the field as the file writes it.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from services.common.errors import ConfigError
from services.common.secrets import BASE_DIR, RESOLVE, Secret, SecretRef, in_part
from services.sources import SourceConfig, default_mapping, from_legacy_key
from services.targets.config import TargetConfig

__all__ = [
    "PARTS",
    "Secret",
    "SecretRef",
    "Tenant",
    "enabled",
    "load_tenants",
    "parse_tenants",
    "tenant_of_key",
]

# The parts of a tenant whose secrets a service may ask to resolve.
PARTS = ("source", "target")


class Tenant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    enabled: bool = True
    # mappings/<name>.yaml; default: the source type's (services/sources).
    mapping: str = ""
    source: SourceConfig  # a registered source's settings, by `type` (services/sources)
    target: TargetConfig  # a registered target's settings, by `type` (services/targets)

    @field_validator("source", "target", mode="wrap")
    @classmethod
    def _part(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        with in_part(info, str(info.field_name)):  # its secrets resolve if it is asked for
            return handler(value)

    @model_validator(mode="before")
    @classmethod
    def _source_mapping(cls, data: Any) -> Any:
        if isinstance(data, dict) and "mapping" not in data:
            return {**data, "mapping": default_mapping(data.get("source"))}
        return data


def load_tenants(path: Path, *, resolve: Collection[str] = ()) -> dict[str, Tenant]:
    """All tenants of `path` by id (enabled or not), with the secrets of the `resolve`
    parts (of `PARTS`) read; ConfigError lists every problem."""
    items = read_tenants_file(path)
    return parse_tenants(items, str(path), base_dir=path.parent, resolve=resolve)


def read_tenants_file(path: Path) -> list[Any]:
    """The entries of the tenants file `path`, as written (not checked one by one)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read tenants file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tenants"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'tenants' list")
    return list(raw["tenants"])


def parse_tenants(
    items: list[Any], origin: str, *, base_dir: Path, resolve: Collection[str] = ()
) -> dict[str, Tenant]:
    """Tenants from their entries as a tenants file writes them (`origin` names where
    they come from in errors); relative secret files are found in `base_dir`, secrets
    read for the `resolve` parts only. ConfigError lists every problem."""
    unknown = set(resolve) - set(PARTS)
    if unknown:
        raise ValueError(f"no such tenant parts: {sorted(unknown)} (known: {PARTS})")
    problems: list[str] = []
    tenants: dict[str, Tenant] = {}
    context: dict[str, Any] = {BASE_DIR: base_dir, RESOLVE: frozenset(resolve)}
    for index, item in enumerate(items):
        name = item.get("id", f"#{index + 1}") if isinstance(item, dict) else f"#{index + 1}"
        where = f"{origin}: tenant {name}"
        legacy = None
        if isinstance(item, dict):
            item, legacy = from_legacy_key(item)
        try:
            tenant = Tenant.model_validate(item, context=context)
        except ValidationError as exc:
            problems.extend(
                f"{where}: {_as_written(tuple(err['loc']), legacy)}: {err['msg']}"
                for err in exc.errors()
            )
            continue
        if tenant.id in tenants:
            problems.append(f"{origin}: tenant {tenant.id}: id: defined twice")
        tenants[tenant.id] = tenant
    if problems:
        raise ConfigError(problems)
    return tenants


def _as_written(loc: tuple[Any, ...], legacy: str | None) -> str:
    """An error's location as the file writes it (a plugin part's chosen `type` is
    already out of it, services/common/tagged.py): an old file's source under its key."""
    if legacy is not None and loc and loc[0] == "source":
        loc = (legacy, *loc[1:])
    return ".".join(str(p) for p in loc) or "(root)"


def enabled(tenants: dict[str, Tenant]) -> list[Tenant]:
    return [t for t in tenants.values() if t.enabled]


def tenant_of_key(key: bytes | None) -> str | None:
    """`<tenant>/<id>` record keys name their tenant first."""
    if not key:
        return None
    text = key.decode(errors="replace")
    return text.split("/", 1)[0] if "/" in text else None


def split_key(key: bytes | None) -> tuple[str, str]:
    """A `<tenant>/<id>` record key's two parts; an empty id when it has none."""
    tenant, _, item = (key or b"").decode(errors="replace").partition("/")
    return tenant, item
