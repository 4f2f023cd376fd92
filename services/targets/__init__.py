"""Target plugins, registered by the tenant config's `target.type`.

Adding a target: a module here (its settings model, its adapter, a `Plugin`), one line
in `TARGETS`, and one entry in the adapter contract suite
(`tests/unit/test_loader_contract.py`). docs/design.md, "Adding a target".
"""

from __future__ import annotations

import httpx

from services.targets import kong, webhook, wms
from services.targets.base import Plugin, Target, TargetSettings
from services.targets.session import Limiter, TargetSession

TARGETS: dict[str, Plugin] = {
    "kong": kong.PLUGIN,
    "wms": wms.PLUGIN,
    "webhook": webhook.PLUGIN,
}


def open_target(
    tenant: str,
    config: TargetSettings,
    client: httpx.Client | None = None,
    limiter: Limiter | None = None,
) -> Target:
    """The adapter for one tenant's target, on a session built here: its authentication,
    rate limit, retries and timeout are always applied. `client` is the HTTP client to
    use (default: a new one, closed with the adapter; a loader shares one per target
    host: `clients.py`); `limiter` the rate limit (default: the tenant's own)."""
    session = TargetSession(tenant, config, client, limiter=limiter)
    return TARGETS[config.type].build(tenant, config, session)
