"""What the console shows, read through the operator tools (services/ops/) the CLI
uses, and kept a few seconds so that many open pages cost the broker one read."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from services.common.serde import Serde, default_serde
from services.common.tenant_book import read_entries
from services.console.activity import Activity, read_activity
from services.console.sampler import Sampler
from services.console.settings import ConsoleSettings
from services.ops import audit, status

T = TypeVar("T")

SECRET_FIELD = re.compile(r"key|token|password|secret|username|user", re.IGNORECASE)


class Cached(Generic[T]):
    """``load()``'s value, loaded again once older than ``ttl_s`` (one load at a time)."""

    def __init__(self, load: Callable[[], T], ttl_s: float) -> None:
        self.load = load
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None or time.monotonic() - self._value[0] > self.ttl_s:
                self._value = (time.monotonic(), self.load())
            return self._value[1]

    def clear(self) -> None:
        with self._lock:
            self._value = None


def masked(config: Any, field: str = "") -> Any:
    """A tenant's configuration to show: every credential replaced by where it comes
    from (the console never resolves a secret, so it has none to show)."""
    if isinstance(config, dict):
        if set(config) <= {"env", "file"} and config:
            where = ", ".join(f"{k} {v}" for k, v in config.items())
            return f"•••• (from {where})"
        return {k: masked(v, str(k)) for k, v in config.items()}
    if isinstance(config, list):
        return [masked(v, field) for v in config]
    if SECRET_FIELD.search(field) and isinstance(config, str):
        return "••••"
    return config


class ConsoleData:
    def __init__(self, settings: ConsoleSettings, sampler: Sampler) -> None:
        self.settings = settings
        self.kafka = settings.kafka
        self.sampler = sampler
        self.serde: Serde = default_serde()
        self.stages = status.default_stages(settings.transformer_group, settings.loader_group)
        self._rows = Cached(self._load_rows, ttl_s=2.0)
        self._activity = Cached(self._load_activity, ttl_s=15.0)
        self._entries = Cached(self._load_entries, ttl_s=2.0)

    def changed(self) -> None:
        """After an action: the next page reads the topics again."""
        self._rows.clear()
        self._activity.clear()
        self._entries.clear()

    # -- overview --------------------------------------------------------------------

    def _load_rows(self) -> list[dict[str, Any]]:
        rows = status.tenant_status(self.kafka, self.serde, self.settings.tenants_file, self.stages)
        for row in rows:
            row["breaker"] = self.sampler.breaker(row["tenant"])
            row["freshness"] = self.sampler.freshness(row["tenant"])
        return rows

    def rows(self) -> list[dict[str, Any]]:
        return self._rows.get()

    def row(self, tenant: str) -> dict[str, Any] | None:
        return next((r for r in self.rows() if r["tenant"] == tenant), None)

    # -- a tenant --------------------------------------------------------------------

    def _load_activity(self) -> Activity:
        return read_activity(self.kafka)

    def activity(self) -> Activity:
        return self._activity.get()

    def _load_entries(self) -> list[Any]:
        """The tenants' entries as the services take them (services/common/tenant_book.py):
        applied to `sync.tenants.v1` once it holds any record, else the tenants file's."""
        applied, unreadable = read_entries(self.kafka)
        if applied or unreadable:
            return [entry for entry in applied.values() if entry is not None]
        doc = yaml.safe_load(self.settings.tenants_file.read_text()) or {}
        return list(doc.get("tenants") or [])

    def tenant_config(self, tenant: str) -> dict[str, Any] | None:
        for entry in self._entries.get():
            if isinstance(entry, dict) and entry.get("id") == tenant:
                shown: dict[str, Any] = masked(entry)
                return shown
        return None

    def mapping_text(self, name: str) -> str | None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            return None
        path: Path = self.settings.mappings_dir / f"{name}.yaml"
        try:
            return path.read_text()
        except OSError:
            return None

    def audit(self, tenant: str | None = None, limit: int = 50) -> list[audit.Entry]:
        return audit.read(self.kafka, tenant=tenant, limit=limit)
