"""Target adapters, registered by the tenant config's `target.type`."""

from __future__ import annotations

from services.loader.adapters.base import Adapter
from services.loader.adapters.kong import KongAdapter
from services.loader.adapters.wms import WmsAdapter

ADAPTERS: dict[str, type[Adapter]] = {
    "kong": KongAdapter,
    "wms": WmsAdapter,
}
