"""HTTP helpers shared by the simulators: JSON request bodies and JSON error answers."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ExceptionHandler

from simulators.faults import ErrorAnswer, Faults, faults_middleware, json_error
from simulators.stats import RequestStats, request_log_routes, stats_middleware

logger = logging.getLogger(__name__)


class BodyError(ValueError):
    """A request body that is not the JSON it should be."""


async def read_json(request: Request) -> Any:
    """The request's JSON body, ``None`` for an empty body; `BodyError` if unparsable."""
    body = await request.body()
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BodyError(f"JSON parse error - {exc}") from exc


async def _http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 answers, as JSON ``{"detail": ...}`` like the real APIs."""
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for HTTPException
        raise exc
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


EXCEPTION_HANDLERS: dict[Any, ExceptionHandler] = {HTTPException: _http_exception}


def simulator_app(
    simulator: Any,
    routes: list[Route],
    stats: RequestStats,
    faults: Faults | None = None,
    error_answer: ErrorAnswer = json_error,
) -> Starlette:
    """A simulator's app: its routes, request stats and log (``/_admin/requests``),
    injected faults (with ``/_admin/faults``), JSON errors, and its state as
    ``app.state.simulator``.

    Faults sit inside the stats, so injected answers are counted like real ones.
    """
    faults = faults if faults is not None else Faults()
    app = Starlette(
        routes=[*routes, *faults.routes(), *request_log_routes(stats)],
        middleware=[stats_middleware(stats), faults_middleware(faults, error_answer)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.simulator = simulator
    return app
