"""Source plugins, registered by the tenant config's `source.type`.

Adding a source: a folder here (its settings model, its `Source`, a `SourcePlugin`),
one line in `SOURCES`, and passing the source contract suite
(`tests/unit/test_source_contract.py`). docs/design.md, "Adding a source".
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx

from services.common.stopper import Stopper
from services.common.tagged import tagged_union
from services.sources import siesa
from services.sources.base import Source, SourcePlugin, SourceSettings
from services.sources.clients import SHARED, HttpClients

log = logging.getLogger(__name__)

SOURCES: dict[str, SourcePlugin] = {
    "siesa": siesa.PLUGIN,
}

if TYPE_CHECKING:
    SourceConfig = SourceSettings
else:
    # `source:` of a tenant: the registered sources' settings, chosen by `type`.
    SourceConfig = tagged_union({name: p.settings for name, p in SOURCES.items()}, "source")


def open_source(
    tenant: str,
    settings: SourceSettings,
    *,
    http: httpx.Client | None = None,
    stopper: Stopper | None = None,
    clients: HttpClients = SHARED,
) -> Source:
    """The `Source` of one tenant. `http`: the client to send requests with (shared by
    its owner); default: the client `clients` shares among the tenants of the same
    source host and client settings (services/sources/clients.py), or one the source
    opens and closes itself when its settings name no `http_pool`. `stopper` ends waits
    for a request budget early."""
    if http is None:
        pool = settings.http_pool()
        if pool is not None:
            http = clients.client(pool)
    return SOURCES[settings.type].open(tenant, settings, http, stopper)


def origin_fields() -> frozenset[str]:
    """Every name a registered source gives in `RawItem.origin`."""
    return frozenset(name for plugin in SOURCES.values() for name in plugin.origin)


def default_mapping(source: Any) -> str:
    """The mapping of a tenant that names none: its source type's (`source` as written
    in the file); "" for an unknown type (reported as such)."""
    kind = source.get("type") if isinstance(source, dict) else getattr(source, "type", None)
    plugin = SOURCES.get(kind) if isinstance(kind, str) else None
    return plugin.settings.default_mapping if plugin is not None else ""


_warned: set[str] = set()


def from_legacy_key(item: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A tenant entry of the first release (`siesa: {...}` at its top) as today's
    (`source: {type: siesa, ...}`), and the old key (None if it had none). Warns once
    per process and key."""
    if "source" in item:
        return item, None
    for name, plugin in SOURCES.items():
        key = plugin.legacy_key
        if key is not None and key in item:
            old = item[key]
            source = {"type": name, **old} if isinstance(old, dict) else old
            new = {k: v for k, v in item.items() if k != key}
            new["source"] = source
            if key not in _warned:
                _warned.add(key)
                log.warning(
                    "tenants file: `%s:` at the top of a tenant is deprecated and read as "
                    "`source: {type: %s, ...}`; write it that way (README.md, Configuration)",
                    key,
                    name,
                )
            return new, key
    return item, None
