"""The soak's plan and verdicts, pure (unit-tested): when each fault happens for a run of
a given length, and whether a service's memory grew.

Faults are placed at fractions of the run so a 6-minute and a 30-minute soak see the
same sequence. The service kills come first (before a fifth of the run), so the process
whose memory is compared at the end (second fifth against last fifth) has been up since.
Every fault ends before four fifths of the run, so the last fifth measures the pipeline
back at rest, with the load still on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

# Memory "did not grow": the last fifth's mean RSS at most this much above the second
# fifth's (whichever allowance is larger).
GROWTH_PCT = 15.0
GROWTH_MB = 20.0


@dataclass(frozen=True)
class Planned:
    """One fault (or the resync) at ``at_s`` seconds into the soak."""

    at_s: float
    kind: str  # target_outage | 429_storm | service_kill | broker_restart | resync
    target: str  # siesa | kong | wms | extractor | transformer | loader | broker | <tenant>
    duration_s: float = 0.0
    faults: dict[str, Any] = field(default_factory=dict)  # POST /_admin/faults body

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"


def schedule(duration_s: float) -> list[Planned]:
    """The faults of a soak lasting ``duration_s`` seconds, in time order."""
    t = duration_s
    storm = max(15.0, 0.04 * t)
    outage = max(20.0, 0.03 * t)
    plan = [
        Planned(0.04 * t, "service_kill", "loader"),
        Planned(0.06 * t, "429_storm", "siesa", storm, _storm(rate=0.5)),
        Planned(0.09 * t, "service_kill", "transformer"),
        Planned(0.13 * t, "service_kill", "extractor"),
        Planned(0.25 * t, "target_outage", "kong", outage, {"outage_s": outage}),
        Planned(0.33 * t, "429_storm", "wms", storm, {"rate_limit_rps": 5}),
        Planned(0.42 * t, "broker_restart", "broker", 10.0),
        Planned(0.55 * t, "target_outage", "wms", outage, {"outage_s": outage}),
        Planned(0.62 * t, "resync", "kong-tenant"),
        Planned(0.66 * t, "429_storm", "kong", storm, _storm(rate=0.4)),
        Planned(0.70 * t, "429_storm", "siesa", storm, {"rate_limit_rps": 2}),
    ]
    return sorted(plan, key=lambda p: p.at_s)


def _storm(rate: float) -> dict[str, Any]:
    return {"errors": [{"rate": rate, "status": 429, "retry_after_s": 1}]}


@dataclass(frozen=True)
class MemoryVerdict:
    service: str
    ok: bool
    reason: str
    start_mb: float = 0.0
    end_mb: float = 0.0
    second_fifth_mb: float = 0.0
    last_fifth_mb: float = 0.0
    peak_mb: float = 0.0
    samples: int = 0

    def figures(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "start_mb": round(self.start_mb, 1),
            "end_mb": round(self.end_mb, 1),
            "second_fifth_mean_mb": round(self.second_fifth_mb, 1),
            "last_fifth_mean_mb": round(self.last_fifth_mb, 1),
            "peak_mb": round(self.peak_mb, 1),
            "samples": self.samples,
        }


def memory_verdict(
    service: str, samples: list[tuple[float, int, float, float]], duration_s: float
) -> MemoryVerdict:
    """Whether ``service`` grew: ``samples`` are (seconds into the soak, pid, RSS MB,
    peak RSS MB). Only the last process instance counts; it must have been up over both
    windows, and its mean RSS over the last fifth may exceed the second fifth's by at
    most GROWTH_PCT % or GROWTH_MB MB, whichever is larger."""
    if not samples:
        return MemoryVerdict(service, False, "no samples")
    pid = samples[-1][1]
    mine = [s for s in samples if s[1] == pid]
    second = [s[2] for s in mine if 0.2 * duration_s <= s[0] < 0.4 * duration_s]
    last = [s[2] for s in mine if s[0] >= 0.8 * duration_s]
    base = {"start_mb": mine[0][2], "end_mb": mine[-1][2], "peak_mb": max(s[3] for s in mine)}
    if not second or not last:
        reason = f"pid {pid} not sampled in both the second and the last fifth of the run"
        return MemoryVerdict(service, False, reason, samples=len(mine), **base)
    before, after = fmean(second), fmean(last)
    allowed = max(GROWTH_MB, before * GROWTH_PCT / 100)
    growth = after - before
    ok = growth <= allowed
    reason = (
        f"mean RSS {before:.1f} MB (2nd fifth) -> {after:.1f} MB (last fifth): "
        f"{growth:+.1f} MB, allowed +{allowed:.1f} MB"
    )
    return MemoryVerdict(
        service, ok, reason, second_fifth_mb=before, last_fifth_mb=after, samples=len(mine), **base
    )
