"""What every target adapter offers the loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from services.common.errors import SkippableError
from services.common.tenants import Target

Action = Literal["created", "updated", "inactivated", "absent"]


@dataclass(frozen=True)
class UpsertResult:
    sku: str
    action: Action
    target_id: str | None


class TargetRejected(SkippableError):
    """The target refused this record for good (a 4xx other than 401/408/409/429)."""

    error_class = "target_rejected"


class Adapter(Protocol):
    """One tenant's target. Thread-safe: the loader calls it from several threads, but
    never for the same sku at once."""

    def __init__(self, tenant: str, target: Target) -> None: ...

    def upsert(self, product: dict[str, Any]) -> UpsertResult:
        """Create or update (or, for op DELETE, inactivate) one canonical product.
        Raises TargetRejected (permanent) or RetriableError (try again later)."""
        ...

    def close(self) -> None: ...
