"""Who may see and do what in the console.

- Every path but the login page and the static files needs a user: an anonymous GET
  is sent to the login page, any other anonymous request refused (403). Anonymous
  viewing exists only when configured (``CONSOLE_ANONYMOUS_ROLE=viewer``).
- Actions need the ``operator`` role (403 for a ``viewer``) and the session's CSRF
  token in the form; every POST (the login included) without it is refused.
- Sessions are signed cookies (HttpOnly, SameSite=Strict, Secure when configured);
  the user's role is read from the users file at each request, not from the cookie.
- Logins are throttled: after ``login_attempts`` failures in 5 minutes for one name or
  from one address, further tries are refused until the window has passed.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from services.console.users import Role, User, UserStore

log = logging.getLogger(__name__)

PUBLIC_PATHS = ("/login",)
PUBLIC_PREFIXES = ("/static/",)
WINDOW_S = 300.0
ANONYMOUS = User("anonymous", "viewer", "")


class LoginRequired(Exception):
    """An anonymous GET: answered with a redirect to the login page."""


@dataclass
class Throttle:
    """Failed logins per key (a name, an address) in a sliding window."""

    limit: int
    window_s: float = WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, key: str) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= self.clock() - self.window_s:
            times.popleft()
        return times

    def blocked(self, *keys: str) -> bool:
        with self._lock:
            return any(len(self._recent(k)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._recent(key).append(self.clock())

    def succeeded(self, name_key: str) -> None:
        with self._lock:
            self._failures.pop(name_key, None)


class Guard:
    """The access rules above, for the app's endpoints."""

    def __init__(self, store: UserStore, anonymous_role: str, login_attempts: int) -> None:
        self.store = store
        self.anonymous = anonymous_role == "viewer"
        self.throttle = Throttle(login_attempts)

    def user(self, request: Request) -> User | None:
        name = request.session.get("user")
        if isinstance(name, str):
            user = self.store.get(name)
            if user is not None:
                return user
            request.session.clear()  # removed from the users file: out
        return ANONYMOUS if self.anonymous else None

    def viewer(self, request: Request) -> User:
        user = self.user(request)
        if user is None:
            if request.method in ("GET", "HEAD"):
                raise LoginRequired
            raise HTTPException(403, "log in first")
        return user

    async def action(self, request: Request, role: Role = "operator") -> tuple[User, FormData]:
        """An action's user and form: logged in, allowed, with the session's CSRF token."""
        user = self.viewer(request)
        form = await request.form()
        check_csrf(request, form)
        if user is ANONYMOUS or not user.may(role):
            raise HTTPException(403, f"this needs the {role} role; {user.name} is {user.role}")
        return user, form

    def login(self, request: Request, name: str, password: str) -> User | None:
        """The user, or None; raises 429 while the name or address is throttled."""
        address = f"addr:{request.client.host if request.client else '?'}"
        keys = (f"user:{name}", address)
        if self.throttle.blocked(*keys):
            raise HTTPException(429, "too many failed logins; try again in a few minutes")
        user = self.store.authenticate(name, password)
        if user is None:
            self.throttle.failed(*keys)
            log.warning("console: failed login for %r from %s", name, address[5:])
            return None
        log.info("console: %s logged in (%s)", user.name, user.role)
        self.throttle.succeeded(keys[0])
        request.session.clear()  # a fresh session: no fixation
        request.session["user"] = user.name
        request.session["csrf"] = secrets.token_urlsafe(32)
        return user


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, form: FormData) -> None:
    given = form.get("csrf")
    expected = request.session.get("csrf")
    if not (
        isinstance(given, str)
        and isinstance(expected, str)
        and hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")


class RequireLogin:
    """Outer gate: nothing but the public paths without a session user (or configured
    anonymous viewing); endpoints then check roles and CSRF tokens."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.guard.user(request) is None:
            if request.method in ("GET", "HEAD"):
                response: PlainTextResponse | RedirectResponse = RedirectResponse(
                    f"/login?next={path}", status_code=303
                )
            else:
                response = PlainTextResponse("log in first", status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
