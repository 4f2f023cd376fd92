"""The Siesa ERP as a source: the "consultas estándar" API (external-apis.md).

- `settings.py`: `source: {type: siesa, ...}` of a tenant;
- `client.py`: the HTTP client (pages, retries, errors, the request budget's slots);
- `rows.py`: a row as text, its key (`f120_referencia`) and change date;
- `source.py`: all of it as a `Source` (filter by day from a watermark, the budget).
"""

from __future__ import annotations

from services.sources.base import SourcePlugin
from services.sources.siesa.settings import SiesaSettings
from services.sources.siesa.source import open_source

# Tenants files of the first release wrote `siesa: {...}` at the top of a tenant.
PLUGIN = SourcePlugin(
    settings=SiesaSettings,
    open=open_source,
    origin=("company", "consulta"),
    legacy_key="siesa",
)
