"""`source: {type: siesa, ...}`: where and how a tenant's Siesa items are read
(external-apis.md, design.md)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from services.common.secrets import Secret
from services.sources.base import SourceSettings
from services.sources.clients import HttpPool


class SiesaSettings(SourceSettings):
    """A Siesa "consulta estándar" read page by page.

    ``filter`` (and ``hybrid``) ask only for rows changed since the watermark's day
    (``change_date_column`` through ``parametros``, day-granular, minus
    ``lookback_days``); they need the consulta's change-date column
    (``change_date_column``, e.g. ``f120_fecha_actualizacion``; *assumed* in Siesa, so
    not on by default). ``request_budget_per_min``: requests to Siesa in any 60 s
    (retries included). Caps (services/sources/siesa/client.py): an answer is never read
    past ``max_response_bytes``, nor a scan past ``max_pages`` pages; a page holds at
    most ``page_size`` rows.
    """

    filter_needs: ClassVar[str] = "a change_date_column"
    default_mapping: ClassVar[str] = "siesa-items"

    type: Literal["siesa"] = "siesa"
    base_url: str
    company: int
    consulta: str = "API_v2_Items"
    page_size: int = Field(default=100, ge=1, le=100)
    conni_key: Secret
    conni_token: Secret
    timeout_s: float = Field(default=30.0, gt=0)
    change_date_column: str | None = None
    filter_start_param: str = "FechaInicio"
    lookback_days: int = Field(default=1, ge=0, le=366)
    request_budget_per_min: int | None = Field(default=None, ge=1)
    # A full page of 100 rows is ~100 KB; one of 100 rows with every field at the
    # extractor's max_field_length (4000) a few MB. 100,000 pages: 10 million rows.
    max_response_bytes: int = Field(default=32_000_000, ge=1024)
    max_pages: int = Field(default=100_000, ge=1)

    def http_pool(self) -> HttpPool:
        """Tenants of one Siesa host (and timeout) share a client: credentials go in
        each request's headers (client.py)."""
        return HttpPool.of(self.base_url, self.timeout_s)

    @property
    def can_filter(self) -> bool:
        return self.change_date_column is not None and self.change_date_column != ""
