"""The console's web application: Starlette, pages rendered on the server (Jinja2),
a few lines of script for the live parts. Wiring here; the pages are in pages.py,
access control in auth.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from services.console import pages
from services.console.auth import Guard, LoginRequired, RequireLogin, check_csrf
from services.console.data import ConsoleData
from services.console.render import FILTERS, render
from services.console.sampler import Sampler
from services.console.settings import ConsoleSettings
from services.console.users import UserStore

HERE = Path(__file__).parent
COOKIE = "siesa_sync_console"


def safe_next(target: str | None) -> str:
    """Only a path of this site: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parts = urlsplit(target)
    return "/" if parts.scheme or parts.netloc else target


async def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": safe_next(request.query_params.get("next"))})


async def login(request: Request) -> Response:
    guard: Guard = request.app.state.guard
    form = await request.form()
    check_csrf(request, form)
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    user = await run_in_threadpool(guard.login, request, name, password)
    if user is None:
        context = {"next": safe_next(str(form.get("next", ""))), "error": "wrong name or password"}
        return render(request, "login.html", context, status_code=401)
    return RedirectResponse(safe_next(str(form.get("next", ""))), status_code=303)


async def logout(request: Request) -> Response:
    check_csrf(request, await request.form())
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for HTTPException only
    return render(
        request,
        "error.html",
        {"status": exc.status_code, "detail": exc.detail},
        status_code=exc.status_code,
    )


async def on_login_required(request: Request, _exc: Exception) -> Response:
    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)


def create_app(
    settings: ConsoleSettings, sampler: Sampler | None = None, data: ConsoleData | None = None
) -> Starlette:
    store = UserStore(settings.users_file)
    guard = Guard(store, settings.anonymous_role, settings.login_attempts)
    sampler = sampler or Sampler(settings.metrics_url_list(), settings.metrics_interval_s)
    secret = (
        settings.session_secret.get_secret_value()
        if settings.session_secret
        else secrets.token_urlsafe(32)
    )
    app = Starlette(
        routes=[
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            *pages.routes(),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=COOKIE,
                max_age=settings.session_max_age_s,
                same_site="strict",
                https_only=settings.secure_cookies,
            ),
            Middleware(RequireLogin, guard=guard),
        ],
        exception_handlers={HTTPException: on_http_error, LoginRequired: on_login_required},
    )
    app.state.settings = settings
    app.state.guard = guard
    app.state.sampler = sampler
    app.state.data = data or ConsoleData(settings, sampler)
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(FILTERS)
    app.state.templates = templates
    return app
