"""Errors grouped by what the caller must do with them.

- `ConfigError`: bad settings or tenant/mapping files; stop at start-up.
- `RetriableError`: a passing fault (broker, network, 429/5xx); try again later.
- `SkippableError`: this one record can never go on; dead-letter it, then move on.
- `FatalError`: the process can't go on safely; stop without committing.
"""

from __future__ import annotations

from services.common.text import escaped


class SyncError(Exception):
    """Root of the project's errors. `error_class` names the kind in DLQ headers.

    Its message is always writable (a DLQ header, a tenant's `last_error`, a log line):
    text in it that is not valid Unicode, quoted from bad data, shows as ``\\udce9``."""

    error_class = "error"

    def __init__(self, message: str, *, tenant: str | None = None) -> None:
        message = escaped(message)
        super().__init__(message)
        self.message = message
        self.tenant = tenant

    def __str__(self) -> str:
        return self.message


class ConfigError(SyncError):
    """Configuration is wrong; `problems` lists every problem found, not just the first."""

    error_class = "config"

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return self.problems[0]
        return "\n".join(
            [f"{len(self.problems)} configuration problems:", *(f"  - {p}" for p in self.problems)]
        )


class RetriableError(SyncError):
    """A passing fault: the same work may succeed later."""

    error_class = "retriable"

    def __init__(
        self, message: str, *, tenant: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, tenant=tenant)
        self.retry_after = retry_after


class SkippableError(SyncError):
    """This record can't go on: it goes to the DLQ with the reason, the rest goes on."""

    error_class = "skippable"

    def __init__(self, message: str, *, tenant: str | None = None, error_class: str = "") -> None:
        super().__init__(message, tenant=tenant)
        if error_class:
            self.error_class = error_class


class FatalError(SyncError):
    """The process can't go on safely; stop without committing what is in hand."""

    error_class = "fatal"


class UnknownTenant(SkippableError):
    """A record of a tenant this process has no configuration for."""

    error_class = "unknown_tenant"
