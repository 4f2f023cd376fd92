"""Faults only the target simulators (Kong, WMS) have: refusing chosen external ids for
good, to test permanent 4xx answers (`POST /_admin/faults` with `reject_external_ids`)."""

from __future__ import annotations

from pydantic import Field

from simulators.faults import Faults, FaultSettings

DEFAULT_REJECT_MESSAGE = "rejected: this product is blocked in the target"


class TargetFaultSettings(FaultSettings):
    """`FaultSettings` plus permanent refusals of writes (create or update) of the
    products whose external id is in ``reject_external_ids``."""

    reject_external_ids: list[str] = Field(default_factory=list)
    reject_status: int = Field(default=400, ge=400, le=499)
    reject_message: str = DEFAULT_REJECT_MESSAGE


def target_faults() -> Faults:
    return Faults(TargetFaultSettings)


def rejected(faults: Faults, external_id: object) -> tuple[int, str] | None:
    """(status, message) when a write of ``external_id`` must be refused, else None."""
    settings = faults.settings
    if isinstance(settings, TargetFaultSettings) and external_id in settings.reject_external_ids:
        return settings.reject_status, f"{settings.reject_message} ({external_id})"
    return None
