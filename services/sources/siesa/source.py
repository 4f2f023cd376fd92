"""Siesa as a `Source`: pages of a consulta, filtered by day from a watermark, rows as
text keyed by `f120_referencia`, within the tenant's request budget."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx

from services.common.ratelimit import RateLimiter
from services.common.stopper import Stopper
from services.sources.base import Row, SourceRow, StopRequested, Watermark
from services.sources.siesa import rows
from services.sources.siesa.client import SiesaClient
from services.sources.siesa.settings import SiesaSettings

# The budget's window is a little longer than Siesa's minute, so that a request sent
# just over 60 s after another never reaches Siesa just under 60 s after it.
BUDGET_WINDOW_S = 61.0


def budget_limiter(
    settings: SiesaSettings, stopper: Stopper | None = None, *, tenant: str = ""
) -> RateLimiter | None:
    """The tenant's request budget as a limiter, or None when it has none. Its waits end
    early (StopRequested, no request sent) when `stopper` is set."""
    if settings.request_budget_per_min is None:
        return None
    if stopper is None:
        return RateLimiter(settings.request_budget_per_min, BUDGET_WINDOW_S)
    halt = stopper

    def sleep(seconds: float) -> None:
        if halt.wait(seconds):
            raise StopRequested(f"tenant {tenant}: stopping", tenant=tenant)

    return RateLimiter(settings.request_budget_per_min, BUDGET_WINDOW_S, sleep=sleep)


def filter_parametros(settings: SiesaSettings, since: Watermark | None) -> str | None:
    """``FechaInicio=YYYYMMDD`` for the watermark's day minus the lookback; None (read
    everything) while there is no usable watermark."""
    if since is None or not rows.is_change_date(since[0]):
        return None
    day = datetime.strptime(since[0][:8], "%Y%m%d")
    start = day - timedelta(days=settings.lookback_days)
    return f"{settings.filter_start_param}={start:%Y%m%d}"


class SiesaSource:
    """One tenant's Siesa consulta (see `Source` in services/sources/base.py)."""

    key_name = rows.KEY_FIELD

    def __init__(
        self,
        settings: SiesaSettings,
        *,
        tenant: str,
        http: httpx.Client | None = None,
        stopper: Stopper | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.tenant = tenant
        self.client = SiesaClient(
            settings,
            tenant=tenant,
            limiter=limiter or budget_limiter(settings, stopper, tenant=tenant),
            http=http,
            stopper=stopper,
        )
        self._origin = {"company": str(settings.company), "consulta": settings.consulta}
        self._date_column = settings.change_date_column
        # Rows come with their columns in the consulta's order; they leave in key order
        # (what the extractor fingerprints), sorted once per set of columns.
        self._columns: tuple[str, ...] = ()
        self._order: tuple[str, ...] = ()

    @property
    def requests(self) -> int:
        return self.client.requests

    def pages(self, since: Watermark | None = None) -> Iterator[list[SourceRow]]:
        return self.client.scan(filter_parametros(self.settings, since))

    def row(self, raw: SourceRow) -> Row:
        columns = tuple(raw)
        if columns != self._columns:
            self._columns, self._order = columns, tuple(sorted(columns))
        return rows.normalize(raw, self._order)

    def key(self, row: Row) -> str | None:
        return rows.key(row)

    def changed_at(self, row: Row) -> str | None:
        if self._date_column is None:
            return None
        value = row.get(self._date_column)
        return value if value is not None and rows.is_change_date(value) else None

    def origin(self) -> dict[str, str]:
        return self._origin

    def close(self) -> None:
        self.client.close()


def open_source(
    tenant: str, settings: SiesaSettings, http: httpx.Client | None, stopper: Stopper | None
) -> SiesaSource:
    return SiesaSource(settings, tenant=tenant, http=http, stopper=stopper)
