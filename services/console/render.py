"""Pages from the templates, with what every page shows: the user, the CSRF token for
its forms, the refresh interval of its live parts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from services.console.auth import Guard, csrf_token


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    guard: Guard = request.app.state.guard
    base = {
        "user": guard.user(request),
        "csrf": csrf_token(request),
        "refresh_ms": int(request.app.state.settings.refresh_s * 1000),
    }
    return templates.TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )


def when(value: Any) -> str:
    """A time as UTC, to the second; nothing for none."""
    if not isinstance(value, datetime):
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def secs(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def window(span_s: float | None) -> str:
    if span_s is None:
        return "since the loaders started"
    return f"last {max(1, round(span_s / 60))} min"


FILTERS = {"when": when, "secs": secs, "window": window}
