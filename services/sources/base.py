"""What every source plugin is: its settings (the fields every source has, plus its own)
and the `Source` the extractor reads rows from.

A source is one folder in `services/sources/`: a `SourceSettings` subclass with
``type: Literal["<name>"]``, a class implementing `Source`, and a `SourcePlugin` naming
both, registered by one line in `services/sources/__init__.py` (docs/design.md,
"Adding a source"). A source never imports the tenants file's module: the tenants file
is built from the registry, not the other way round.

The protocol is synchronous and blocking: the extractor calls a source from one thread
at a time (a tenant's poller today, a worker of a pool later), and a source may be
given the `httpx.Client` to use, so connections are pooled per source host
(`SourceSettings.http_pool`, services/sources/clients.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.errors import SyncError
from services.common.stopper import Stopper
from services.sources.clients import HttpPool

# A row as the source sent it (parsed JSON), and as text: what a RawItem carries.
SourceRow = dict[str, Any]
Row = dict[str, str | None]
# The greatest (change stamp, key) of a complete scan: where a filtered read starts.
Watermark = tuple[str, str]
ScanMode = Literal["diff", "filter", "hybrid"]


class SourceSettings(BaseModel):
    """`source:` of a tenant: the fields every source has. A plugin subclasses it with
    ``type: Literal["<name>"]`` and its own fields, and says whether it can filter.

    ``mode``: ``diff`` reads the whole catalogue every poll; ``filter`` asks only for
    rows changed since the watermark; ``hybrid`` filters every poll and runs a full
    ``diff`` reconcile every ``reconcile_interval_s``. Default: ``hybrid`` when the source
    can filter, else ``diff``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What `filter`/`hybrid` need that is missing, when `can_filter` is False.
    filter_needs: ClassVar[str] = "a source that can filter by change date"
    # The mapping (mappings/<name>.yaml) of a tenant that names none.
    default_mapping: ClassVar[str] = ""

    type: str
    poll_interval_s: float = Field(default=5.0, gt=0)
    mode: ScanMode | None = None
    reconcile_interval_s: float = Field(default=3600.0, gt=0)

    @property
    def can_filter(self) -> bool:
        """Whether this source can read only the rows changed since a watermark."""
        return False

    def http_pool(self) -> HttpPool | None:
        """The shared HTTP client this tenant's source may use (tenants with the same
        pool share one connection pool, services/sources/clients.py); None: the source
        opens its own, if it needs one."""
        return None

    @property
    def effective_mode(self) -> ScanMode:
        if self.mode is not None:
            return self.mode
        return "hybrid" if self.can_filter else "diff"

    @model_validator(mode="after")
    def _mode_needs_a_filter(self) -> SourceSettings:
        if self.mode in ("filter", "hybrid") and not self.can_filter:
            raise ValueError(f"mode {self.mode} needs {self.filter_needs}")
        return self


class SourceError(SyncError):
    """The source answered with an error (not worth an immediate retry); the next poll
    tries again. Passing faults past the retries are `RetriableError`s."""

    error_class = "source_error"


class CredentialsRefused(SourceError):
    """The source refused the tenant's credentials: the tenant is `failed` until a poll
    succeeds again. Each source raises its own subclass."""

    error_class = "source_auth"


class SourceLimit(SourceError):
    """The source's answer is one the extractor will not read on: over a cap (bytes,
    rows, pages), a page repeated, not the format asked for. No retry changes it: the
    tenant is `degraded` and alerted at once; the next poll tries again."""

    error_class = "source_limit"


class StopRequested(SyncError):
    """The process is stopping while a request waited (e.g. for its slot of a budget)."""

    error_class = "stopped"


class Source(Protocol):
    """One tenant's source, as the extractor reads it.

    - `pages(since)`: the rows, page by page, in the source's stable order: every row
      when `since` is None, else (at least) those changed since the watermark `since`;
      raises `CredentialsRefused`, `SourceError`, `RetriableError` or `StopRequested`;
    - `row(raw)`: the row as text (every value a string or None), as RawItem carries it;
    - `key(row)`: the row's business key (None or blank: the row can't be emitted);
    - `changed_at(row)`: its change stamp, a string that sorts in time order (None when
      the source has none or it is unusable);
    - `origin()`: where the rows come from, in the source's own terms (RawItem.origin,
      which a mapping reads as `@name`);
    - `close()`: release what the source opened (not an HTTP client it was given).
    """

    key_name: str  # what `key` reads, for messages (e.g. a column name)

    @property
    def requests(self) -> int:
        """Requests sent to the source so far, retries included."""
        ...

    def pages(self, since: Watermark | None = None) -> Iterator[list[SourceRow]]: ...

    def row(self, raw: SourceRow) -> Row: ...

    def key(self, row: Row) -> str | None: ...

    def changed_at(self, row: Row) -> str | None: ...

    def origin(self) -> dict[str, str]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourcePlugin:
    """A registry entry: the settings model, how to open a tenant's source from them,
    the names of its origin, and the top-level tenant key the first release configured
    this source under (read as ``source: {type: <name>, ...}``, with a warning)."""

    settings: type[SourceSettings]
    open: Callable[[str, Any, httpx.Client | None, Stopper | None], Source]
    # The names `Source.origin` gives (a mapping may read them as `@name`).
    origin: tuple[str, ...] = ()
    legacy_key: str | None = None
