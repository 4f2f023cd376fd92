"""Faults only the target simulators (Kong, WMS) have (`POST /_admin/faults`):

- ``reject_external_ids``: refuse writes of chosen external ids for good, to test
  permanent 4xx answers;
- ``credentials_revoked_s``: for that many seconds from now every call, the login
  included, answers 401, as when the tenant's password is changed, then restored;
- ``maintenance_html``: every call answers 200 with an HTML maintenance page, as a proxy
  in front of a target under maintenance does.
"""

from __future__ import annotations

import time

from pydantic import Field
from starlette.responses import HTMLResponse, Response

from simulators.faults import ErrorAnswer, Faults, FaultSettings

DEFAULT_REJECT_MESSAGE = "rejected: this product is blocked in the target"
REVOKED = "credentials revoked"
MAINTENANCE = "maintenance"
MAINTENANCE_PAGE = (
    "<!DOCTYPE html><html><head><title>Down for maintenance</title></head>"
    "<body><h1>We'll be back soon</h1><p>Scheduled maintenance.</p></body></html>"
)


class TargetFaultSettings(FaultSettings):
    """`FaultSettings` plus permanent refusals of writes (create or update) of the
    products whose external id is in ``reject_external_ids``, revoked credentials and
    a maintenance page."""

    reject_external_ids: list[str] = Field(default_factory=list)
    reject_status: int = Field(default=400, ge=400, le=499)
    reject_message: str = DEFAULT_REJECT_MESSAGE
    credentials_revoked_s: float = Field(default=0, ge=0)
    maintenance_html: bool = False


class TargetFaults(Faults):
    """`Faults` answering revoked credentials and maintenance before anything else."""

    def set(self, settings: FaultSettings) -> None:
        self.set_at = time.monotonic()
        super().set(settings)

    def decide(self) -> tuple[int, dict[str, str], str] | None:
        settings = self.settings
        if isinstance(settings, TargetFaultSettings):
            revoked = time.monotonic() - self.set_at < settings.credentials_revoked_s
            for on, status, reason in (
                (revoked, 401, REVOKED),
                (settings.maintenance_html, 200, MAINTENANCE),
            ):
                if on:
                    with self._lock:
                        self.counts[reason] = self.counts.get(reason, 0) + 1
                    return status, {}, reason
        return super().decide()


def target_faults() -> Faults:
    return TargetFaults(TargetFaultSettings)


def target_answer(answer: ErrorAnswer) -> ErrorAnswer:
    """A simulator's injected answers (`answer`), but the maintenance page in HTML."""

    def answered(status: int, headers: dict[str, str], reason: str) -> Response:
        if reason == MAINTENANCE:
            return HTMLResponse(MAINTENANCE_PAGE, status_code=status, headers=headers)
        return answer(status, headers, reason)

    return answered


def rejected(faults: Faults, external_id: object) -> tuple[int, str] | None:
    """(status, message) when a write of ``external_id`` must be refused, else None."""
    settings = faults.settings
    if isinstance(settings, TargetFaultSettings) and external_id in settings.reject_external_ids:
        return settings.reject_status, f"{settings.reject_message} ({external_id})"
    return None
