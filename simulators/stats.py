"""Request statistics shared by the simulators: counts per route, concurrency, 429s, and
a log of the last requests with the `traceparent` each carried (`GET /_admin/requests`),
so tests can follow a product's trace into the simulator."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/_admin"
# Requests kept in the log, newest last (a full sync of a large catalogue rolls it over).
LOGGED_REQUESTS = 20_000

RequestKey = tuple[str, str, int]

_PROPAGATOR = TraceContextTextMapPropagator()


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id a W3C `traceparent` names (32 hex), None if absent or not valid."""
    if not traceparent:
        return None
    span = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}))
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


class RequestStats:
    """Counters of served HTTP requests; mutated only from the event loop's thread."""

    def __init__(self, logged: int = LOGGED_REQUESTS) -> None:
        self._log: deque[dict[str, Any]] = deque(maxlen=logged)
        self._counts: Counter[RequestKey] = Counter()
        self._in_flight = 0
        self._peak = 0
        self._first_at: float | None = None  # time.time() of the first request counted
        self._last_at: float | None = None  # ... and of the end of the last one

    def enter(self) -> None:
        """A request has started."""
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        if self._first_at is None:
            self._first_at = time.time()

    def leave(self, route: str, method: str, status: int, **logged: Any) -> None:
        """A request has finished with ``status``; ``logged``: what its log entry says
        besides (path, query, traceparent, and the trace id it names)."""
        self._in_flight -= 1
        self._counts[(route, method, status)] += 1
        self._last_at = time.time()
        self._log.append(
            {"at": self._last_at, "method": method, "route": route, "status": status, **logged}
        )

    def requests(self, trace_id: str | None = None) -> list[dict[str, Any]]:
        """The logged requests, oldest first; only those of trace `trace_id` if given."""
        if trace_id is None:
            return list(self._log)
        return [r for r in self._log if r.get("trace_id") == trace_id]

    def count(self, route: str, method: str, status: int) -> int:
        """How many requests matched this (route template, method, status)."""
        return self._counts[(route, method, status)]

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data, requests sorted by route, method, status."""
        requests = [
            {"route": route, "method": method, "status": status, "count": n}
            for (route, method, status), n in sorted(self._counts.items())
        ]
        served_429 = sum(n for (_, _, status), n in self._counts.items() if status == 429)
        return {
            "requests": requests,
            "peak_concurrency": self._peak,
            "in_flight": self._in_flight,
            "served_429": served_429,
            "first_request_at": self._first_at,
            "last_request_at": self._last_at,
        }

    def reset(self) -> None:
        """Forget the counts and the peak; requests in flight stay counted as such."""
        self._counts.clear()
        self._log.clear()
        self._peak = self._in_flight
        self._first_at = self._last_at = None


def route_template(scope: Scope) -> str:
    """The path template of the Starlette route that matched, else the raw path."""
    template = getattr(scope.get("route"), "path_format", None)
    if isinstance(template, str):
        return template
    return str(scope.get("path", ""))


class Answered:
    """A `send` wrapper that notes the status of the answer it passes on (500 until an
    answer starts, e.g. when the app raised)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)


class StatsMiddleware:
    """Pure-ASGI middleware that records every HTTP request into a `RequestStats`.

    Requests whose path starts with one of ``exclude_prefixes`` (the admin API by
    default) are not recorded, so reading the stats does not change them.
    """

    def __init__(
        self,
        app: ASGIApp,
        stats: RequestStats,
        exclude_prefixes: tuple[str, ...] = (ADMIN_PREFIX,),
    ) -> None:
        self.app = app
        self.stats = stats
        self.exclude_prefixes = exclude_prefixes

    def snapshot(self) -> dict[str, Any]:
        """See `RequestStats.snapshot`."""
        return self.stats.snapshot()

    def reset(self) -> None:
        """See `RequestStats.reset`."""
        self.stats.reset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(self.exclude_prefixes):
            await self.app(scope, receive, send)
            return

        self.stats.enter()
        answered = Answered(send)
        header = next((v for k, v in scope["headers"] if k == b"traceparent"), None)
        traceparent = header.decode("latin-1") if header is not None else None
        try:
            await self.app(scope, receive, answered)
        finally:
            self.stats.leave(
                route_template(scope),
                str(scope["method"]),
                answered.status,
                path=path,
                query=bytes(scope.get("query_string", b"")).decode("latin-1"),
                traceparent=traceparent,
                trace_id=trace_id_of(traceparent),
            )


def stats_middleware(stats: RequestStats) -> Middleware:
    """The `Middleware` entry that makes a Starlette app record into ``stats``."""
    return Middleware(StatsMiddleware, stats=stats)


def request_log_routes(stats: RequestStats) -> list[Route]:
    """``GET /_admin/requests[?trace_id=<32 hex>]``: the logged requests, oldest first,
    each ``{"at", "method", "route", "path", "query", "status", "traceparent", "trace_id"}``
    (the trace id the `traceparent` names, null without a valid one)."""

    async def requests(request: Request) -> Response:
        return JSONResponse(stats.requests(request.query_params.get("trace_id")))

    return [Route(f"{ADMIN_PREFIX}/requests", requests, methods=["GET"])]
