"""What every target plugin is: its settings (the fields every target has, plus its own
under `settings:`), and the adapter the loader calls.

A plugin is one module: a `TargetSettings` subclass with `type: Literal["<name>"]` and
its own `settings` model, an adapter class, and a `Plugin` naming both, registered by
one line in `services/targets/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.errors import SkippableError
from services.targets.auth import AuthConfig, LoginAuth, LoginDefaults

if TYPE_CHECKING:
    from services.targets.session import TargetSession

Action = Literal["created", "updated", "inactivated", "absent"]


@dataclass(frozen=True)
class UpsertResult:
    sku: str
    action: Action
    # The target's id of the product, when the target has ids (None: it has none, or
    # the product is absent). The loader keeps it so that the next update is one call.
    target_id: str | None


class TargetRejected(SkippableError):
    """The target refused this record for good (a 4xx other than 401/408/409/429)."""

    error_class = "target_rejected"


class TargetSettings(BaseModel):
    """`target:` of a tenant. Subclasses fix `type` and give `settings` their model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The target's own login (`auth.type: login` without a path uses it), if it has one.
    login: ClassVar[LoginDefaults | None] = None
    # Names the target in messages ("Kong").
    label: ClassVar[str] = "target"
    # Whether the target's successes carry JSON (a REST API): a success that does not is
    # a passing fault (a maintenance page), not a write done.
    answers_json: ClassVar[bool] = True

    type: str
    base_url: str = Field(pattern=r"^https?://\S+$")
    auth: AuthConfig
    concurrency: int = Field(default=8, ge=1, le=64)
    timeout_s: float = Field(default=30.0, gt=0)
    # Requests per second this tenant may send to its target (None: no limit of ours).
    rate_limit_rps: float | None = Field(default=None, gt=0)
    # The breaker opens after this many records in a row failed for a passing reason,
    # and tries one record again after `breaker_cooldown_s` (or the target's Retry-After).
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _login_needs_a_path(self) -> TargetSettings:
        if isinstance(self.auth, LoginAuth) and self.auth.path is None and self.login is None:
            raise ValueError(f"auth: {self.label} has no login of its own: give auth.path")
        return self

    @property
    def identity(self) -> str:
        """Which target instance this is: a remembered id is only worth something for
        the same one."""
        return f"{self.type} {self.base_url.rstrip('/')}"


class Target(Protocol):
    """One tenant's target, as the loader sees it. The loader may call `upsert` from
    several threads at once, never twice at once for the same sku."""

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        """Create or update (or, for op DELETE, inactivate) one canonical product.
        `known_id` is the target id this product had when the loader last wrote it, a
        hint to check, never a fact. Raises TargetRejected (permanent) or
        RetriableError (try again later)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Plugin:
    """A registry entry: the settings model and how to build the adapter from them and
    the session the loader made (auth, rate limit, retries and timeouts in place)."""

    settings: type[TargetSettings]
    build: Callable[[str, Any, TargetSession], Target]
