"""The tenants as applied: `sync.tenants.v1`, a compacted topic keyed by tenant id.

`siesa-sync tenants apply <file>` makes the topic hold exactly the file's tenants: an
entry per tenant, as the file writes it (secrets stay references, `{env: VAR}` or
`{file: path}`, resolved by each service where it runs), and a *removal* record for a
tenant applied before and gone from the file. A removal is a record, not a tombstone:
compaction keeps it, so a removed tenant never comes back when tombstones expire.

Each record goes to the partition `partition_of` gives its tenant (never a client's
partitioner), so anyone can tell a tenant's partition from its id and the partition
count: the extractors' consumer group spreads tenants by these partitions.

Until a first apply the topic is empty and services keep their tenants file's tenants;
once it holds any record it is what they follow.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from services.common import topics
from services.common.errors import ConfigError
from services.common.tenants import Tenant, parse_tenants, read_tenants_file

REMOVED = {"removed": True}


def partition_of(tenant: str, partitions: int) -> int:
    """The partition of `sync.tenants.v1` (of `partitions`) holding `tenant`."""
    return zlib.crc32(tenant.encode()) % partitions


def encode(entry: Mapping[str, Any] | None) -> bytes:
    """A tenant's record value: its entry as the tenants file writes it, or a removal."""
    return json.dumps(REMOVED if entry is None else {"tenant": entry}, sort_keys=True).encode()


def decode(key: bytes | None, value: bytes | None) -> tuple[str, dict[str, Any] | None]:
    """(tenant id, its entry) of a record; the entry is None for a removal (or a
    tombstone). ConfigError names the tenant when the record is not one of ours."""
    tenant = (key or b"").decode(errors="replace")
    if value is None:
        return tenant, None
    try:
        data = json.loads(value)
    except ValueError:
        raise ConfigError(f"{topics.TENANTS}: tenant {tenant}: not JSON") from None
    if data == REMOVED:
        return tenant, None
    entry = data.get("tenant") if isinstance(data, dict) else None
    if not isinstance(entry, dict) or entry.get("id") != tenant:
        raise ConfigError(f"{topics.TENANTS}: tenant {tenant}: not a tenant entry for its key")
    return tenant, entry


def file_entries(path: Path) -> list[dict[str, Any]]:
    """The tenants file's entries, checked whole (every problem at once) before any is
    published; secrets are not read."""
    items = read_tenants_file(path)
    parse_tenants(items, str(path), base_dir=path.parent)
    return [dict(item) for item in items]


def changes(
    entries: list[dict[str, Any]], applied: Mapping[str, dict[str, Any] | None]
) -> dict[str, dict[str, Any] | None]:
    """What to publish to make the topic hold `entries`: each new or changed entry, and
    a removal (None) for each tenant applied and no longer in `entries`."""
    wanted = {str(e["id"]): e for e in entries}
    out: dict[str, dict[str, Any] | None] = {t: e for t, e in wanted.items() if applied.get(t) != e}
    out.update({t: None for t, e in applied.items() if e is not None and t not in wanted})
    return out


def tenants_of(
    entries: Mapping[str, dict[str, Any] | None],
    *,
    base_dir: Path,
    resolve: Collection[str] = (),
) -> dict[str, Tenant]:
    """The applied tenants (removals left out), secrets of the `resolve` parts read."""
    items = [e for e in entries.values() if e is not None]
    return parse_tenants(items, topics.TENANTS, base_dir=base_dir, resolve=resolve)
