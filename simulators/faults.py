"""Injected faults shared by the simulators: latency, rate limits, errors, outages.

``POST /_admin/faults`` replaces the fault settings (fields left out take their
defaults, so ``{}`` clears every fault); ``GET /_admin/faults`` shows them. They apply
to every request outside ``/_admin``, in this order: outage window, rate limit, random
errors, latency. Token TTL is read by the simulators that issue tokens.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulators.stats import ADMIN_PREFIX


class ErrorRule(BaseModel):
    """Answer ``status`` to a random share ``rate`` of requests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(ge=0, le=1)
    status: int = Field(default=503, ge=400, le=599)
    retry_after_s: float | None = Field(default=None, ge=0)


class FaultSettings(BaseModel):
    """What `POST /_admin/faults` accepts (design.md's fields, plus ``errors`` for
    several kinds of error at once and ``seed`` for a repeatable run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0, ge=0)
    rate_limit_rps: float | None = Field(default=None, gt=0)
    error_rate: float = Field(default=0, ge=0, le=1)
    error_status: int = Field(default=503, ge=400, le=599)
    retry_after_s: float | None = Field(default=None, ge=0)
    errors: list[ErrorRule] = Field(default_factory=list)
    outage_s: float = Field(default=0, ge=0)
    token_ttl_s: float | None = Field(default=None, gt=0)
    seed: int | None = None

    def error_rules(self) -> list[ErrorRule]:
        """``errors`` plus the single ``error_rate``/``error_status`` rule, if any."""
        rules = list(self.errors)
        if self.error_rate > 0:
            rules.append(
                ErrorRule(
                    rate=self.error_rate,
                    status=self.error_status,
                    retry_after_s=self.retry_after_s,
                )
            )
        return rules


def _retry_after(seconds: float) -> str:
    """Retry-After in whole seconds (HTTP allows no fractions), at least 1."""
    return str(max(1, math.ceil(seconds)))


class Faults:
    """The current fault settings and the state they need (outage start, bucket)."""

    def __init__(self, settings_class: type[FaultSettings] = FaultSettings) -> None:
        self.settings_class = settings_class
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.set(settings_class())

    def set(self, settings: FaultSettings) -> None:
        with self._lock:
            self.settings = settings
            self._set_at = time.monotonic()
            self._random = random.Random(settings.seed)  # noqa: S311 - not for security
            self._tokens = settings.rate_limit_rps or 0.0
            self._refilled_at = self._set_at
            self.counts = {}

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def outage_left(self) -> float:
        """Seconds left in the outage window, 0 when none."""
        left = self.settings.outage_s - (time.monotonic() - self._set_at)
        return max(0.0, left)

    def _take_token(self) -> float:
        """0 if the rate limit lets this request through, else seconds to wait."""
        rps = self.settings.rate_limit_rps
        if rps is None:
            return 0.0
        now = time.monotonic()
        # A bucket of one second's worth: bursts up to the limit, never above it.
        self._tokens = min(rps, self._tokens + (now - self._refilled_at) * rps)
        self._refilled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / rps

    def decide(self) -> tuple[int, dict[str, str], str] | None:
        """The injected answer for one request (status, headers, reason), or None."""
        with self._lock:
            settings = self.settings
            left = self.outage_left()
            if left > 0:
                self._count("outage")
                return settings.error_status, {"Retry-After": _retry_after(left)}, "outage"
            wait = self._take_token()
            if wait > 0:
                self._count("rate_limited")
                after = settings.retry_after_s if settings.retry_after_s is not None else wait
                return 429, {"Retry-After": _retry_after(after)}, "rate limit exceeded"
            roll = self._random.random()
            for rule in settings.error_rules():
                if roll < rule.rate:
                    self._count(f"error_{rule.status}")
                    headers = {}
                    if rule.retry_after_s is not None:
                        headers["Retry-After"] = _retry_after(rule.retry_after_s)
                    return rule.status, headers, "injected error"
                roll -= rule.rate
        return None

    def token_expired(self, issued_at: float) -> bool:
        """Whether a token issued at ``issued_at`` (monotonic) has outlived its TTL."""
        ttl = self.settings.token_ttl_s
        return ttl is not None and time.monotonic() - issued_at > ttl

    def snapshot(self) -> dict[str, Any]:
        return {
            "settings": self.settings.model_dump(),
            "outage_left_s": round(self.outage_left(), 3),
            "injected": dict(self.counts),
        }

    async def set_view(self, request: Request) -> Response:
        """``POST /_admin/faults``: replace the fault settings."""
        try:
            body = json.loads(await request.body() or b"{}")
            settings = self.settings_class.model_validate(body)
        except (ValueError, ValidationError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        self.set(settings)
        return JSONResponse(self.snapshot())

    async def get_view(self, request: Request) -> Response:
        """``GET /_admin/faults``: the settings and what was injected since."""
        return JSONResponse(self.snapshot())

    def routes(self) -> list[Route]:
        return [
            Route(f"{ADMIN_PREFIX}/faults", self.set_view, methods=["POST"]),
            Route(f"{ADMIN_PREFIX}/faults", self.get_view, methods=["GET"]),
        ]


def json_error(status: int, headers: dict[str, str], reason: str) -> Response:
    """The default injected answer: ``{"detail": reason}`` like Django REST's errors."""
    return JSONResponse({"detail": reason}, status_code=status, headers=headers)


ErrorAnswer = Callable[[int, dict[str, str], str], Response]


class FaultsMiddleware:
    """Pure-ASGI middleware applying `Faults` to every non-admin request."""

    def __init__(self, app: ASGIApp, faults: Faults, answer: ErrorAnswer = json_error) -> None:
        self.app = app
        self.faults = faults
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        injected = self.faults.decide()
        latency = self.faults.settings.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        if injected is not None:
            await self.answer(*injected)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def faults_middleware(faults: Faults, answer: ErrorAnswer = json_error) -> Middleware:
    return Middleware(FaultsMiddleware, faults=faults, answer=answer)
