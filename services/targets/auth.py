"""How a target authenticates a call: a strategy any target can use, chosen by
`target.auth.type` in the tenants file.

- `login` (Kong's and WMS's way): `POST <path> {"username", "password"}` answers a token;
  calls send `Authorization: <scheme> <token>`; a 401 logs in again, once for all the
  threads that met the same refused token. Path, token field and scheme default to the
  target's own (`LoginDefaults`).
- `oauth2`: OAuth 2.0 client credentials (RFC 6749 §4.4): a form POST to `token_url`
  answers `access_token` (and `expires_in`); fetched again before it expires and on a 401.
- `bearer`, `api_key`, `basic`: static credentials in a header; a 401 is final.
- `none`: nothing (a webhook that only signs its bodies).

Secrets are `Secret`s (references in the file, resolved at load); no message here
carries one.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, Field

from services.common.errors import RetriableError
from services.common.http import raise_for_transient
from services.common.secrets import Secret
from services.common.tagged import tagged_union

log = logging.getLogger(__name__)


class LoginAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["login"] = "login"
    username: Secret
    password: Secret
    path: str | None = None  # the target's login path unless given
    answer_field: str | None = None  # the answer's field holding the token
    # The Authorization scheme before the token.
    scheme: str | None = Field(default=None, min_length=1, pattern=r"^\S+$")


class OAuth2Auth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["oauth2"]
    token_url: str  # absolute, or a path on the target's base_url
    client_id: str
    client_secret: Secret
    scope: str | None = None
    # How the client authenticates to the token endpoint: HTTP basic (RFC 6749 §2.3.1,
    # every server supports it) or `client_id`/`client_secret` in the form body.
    client_auth: Literal["basic", "body"] = "basic"


class BearerAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["bearer"]
    token: Secret
    scheme: str = Field(default="Bearer", min_length=1, pattern=r"^\S+$")


class ApiKeyAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["api_key"]
    key: Secret
    header: str = Field(default="X-API-Key", min_length=1, pattern=r"^[A-Za-z0-9-]+$")


class BasicAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["basic"]
    username: Secret
    password: Secret


class NoAuth(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["none"]


AUTH_MODELS: dict[str, type[BaseModel]] = {
    "login": LoginAuth,
    "oauth2": OAuth2Auth,
    "bearer": BearerAuth,
    "api_key": ApiKeyAuth,
    "basic": BasicAuth,
    "none": NoAuth,
}
if TYPE_CHECKING:
    AuthConfig = LoginAuth | OAuth2Auth | BearerAuth | ApiKeyAuth | BasicAuth | NoAuth
else:
    # `auth:` without a type is a login, as every target of the first release had.
    AuthConfig = tagged_union(AUTH_MODELS, "auth", default="login")


@dataclass(frozen=True)
class LoginDefaults:
    """A target's own login: `POST path` answers `{answer_field: token}` with one of
    `statuses`; calls then send `Authorization: <scheme> <token>`."""

    path: str
    answer_field: str
    scheme: str
    statuses: tuple[int, ...] = (200, 201)


# -- at run time -------------------------------------------------------------------------

# The session's raw send: (what, method, url, **httpx kwargs) -> response. Rate limited
# and counted like any call, not retried, not authenticated.
Send = Callable[..., httpx.Response]


class Authenticator(Protocol):
    def headers(self, send: Send) -> dict[str, str]:
        """The headers that authenticate a call now (logging in through `send` first
        when there is no valid token)."""
        ...

    def refused(self, headers: dict[str, str]) -> bool:
        """The target answered 401 to a call made with `headers`: forget that token if
        it is still the current one. False when new credentials can't be had (static)."""
        ...


class Static:
    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = headers

    def headers(self, send: Send) -> dict[str, str]:
        return self._headers

    def refused(self, headers: dict[str, str]) -> bool:
        return False


Token = tuple[str, float | None]  # (token, expires at on `clock`, or None: until refused)


class Tokens:
    """A token fetched when needed, fetched again when it expires or is refused; many
    threads meeting the same refused token fetch one new token."""

    def __init__(
        self,
        fetch: Callable[[Send], Token],
        scheme: str,
        what: str,
        tenant: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._scheme = scheme
        self._what = what
        self._tenant = tenant
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at: float | None = None
        self.fetched = 0

    def headers(self, send: Send) -> dict[str, str]:
        with self._lock:
            expired = self._expires_at is not None and self._clock() >= self._expires_at
            if self._token is None or expired:
                self._token, self._expires_at = self._fetch(send)
                self.fetched += 1
                if self.fetched > 1:
                    log.info(
                        "tenant %s: logged in to %s again (%d logins)",
                        self._tenant,
                        self._what,
                        self.fetched,
                        extra={"tenant": self._tenant, "logins": self.fetched},
                    )
            return {"Authorization": f"{self._scheme} {self._token}"}

    def refused(self, headers: dict[str, str]) -> bool:
        with self._lock:
            if headers.get("Authorization") == f"{self._scheme} {self._token}":
                self._token = None  # still the current one: fetch a new one
        return True


class CredentialsRefused(RetriableError):
    """The target refuses the tenant's credentials (a 401 after logging in again, a
    refused login): no record of the tenant can go through until they are fixed. Not
    a record's fault: its records wait (the loader opens the tenant's breaker at once
    and marks it `failed`)."""

    error_class = "target_credentials_refused"


def _refused(what: str, response: httpx.Response, tenant: str) -> CredentialsRefused:
    return CredentialsRefused(
        f"{what}: HTTP {response.status_code}: credentials refused", tenant=tenant
    )


def authenticator(
    config: AuthConfig,
    *,
    tenant: str,
    label: str,
    base_url: str,
    login: LoginDefaults | None,
    clock: Callable[[], float] = time.monotonic,
) -> Authenticator:
    """The run-time strategy for `config` (a validated `target.auth`)."""
    if isinstance(config, LoginAuth):
        if login is None and config.path is None:
            raise ValueError(f"{label} has no login of its own: give auth.path")
        return _login_tokens(config, login, tenant=tenant, label=label, base_url=base_url)
    if isinstance(config, OAuth2Auth):
        return _oauth2_tokens(config, tenant=tenant, label=label, base_url=base_url, clock=clock)
    if isinstance(config, BearerAuth):
        return Static({"Authorization": f"{config.scheme} {config.token.get()}"})
    if isinstance(config, ApiKeyAuth):
        return Static({config.header: config.key.get()})
    if isinstance(config, BasicAuth):
        pair = f"{config.username.get()}:{config.password.get()}".encode()
        return Static({"Authorization": f"Basic {base64.b64encode(pair).decode()}"})
    return Static({})


def _url(base_url: str, path: str) -> str:
    return path if "://" in path else f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def _login_tokens(
    config: LoginAuth, defaults: LoginDefaults | None, *, tenant: str, label: str, base_url: str
) -> Tokens:
    path = config.path or (defaults.path if defaults else "")
    field = config.answer_field or (defaults.answer_field if defaults else "token")
    scheme = config.scheme or (defaults.scheme if defaults else "Bearer")
    statuses = defaults.statuses if defaults else (200, 201)
    what = f"tenant {tenant}: {label} login"

    def fetch(send: Send) -> Token:
        body = {"username": config.username.get(), "password": config.password.get()}
        response = send(what, "POST", _url(base_url, path), json=body)
        raise_for_transient(response, what)
        if response.status_code not in statuses:
            raise _refused(what, response, tenant)
        return _field(_answer(response, what, tenant), field, what, tenant), None

    return Tokens(fetch, scheme, label, tenant)


def _oauth2_tokens(
    config: OAuth2Auth, *, tenant: str, label: str, base_url: str, clock: Callable[[], float]
) -> Tokens:
    what = f"tenant {tenant}: {label} OAuth2 token"

    def fetch(send: Send) -> Token:
        form = {"grant_type": "client_credentials"}
        if config.scope:
            form["scope"] = config.scope
        kwargs: dict[str, Any] = {}
        if config.client_auth == "basic":
            kwargs["auth"] = httpx.BasicAuth(config.client_id, config.client_secret.get())
        else:
            form.update(client_id=config.client_id, client_secret=config.client_secret.get())
        response = send(what, "POST", _url(base_url, config.token_url), data=form, **kwargs)
        raise_for_transient(response, what)
        if response.status_code != 200:
            raise _refused(what, response, tenant)
        answer = _answer(response, what, tenant)
        lifetime = answer.get("expires_in")
        # Fetched again a little before it expires, so no call goes out with a dead one.
        expires_at = (
            clock() + max(0.0, float(lifetime) - min(30.0, float(lifetime) / 10))
            if isinstance(lifetime, int | float)
            else None
        )
        return _field(answer, "access_token", what, tenant), expires_at

    return Tokens(fetch, "Bearer", label, tenant, clock)


def _answer(response: httpx.Response, what: str, tenant: str) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise RetriableError(
            f"{what}: HTTP {response.status_code}: not a JSON object", tenant=tenant
        )
    return answer


def _field(answer: dict[str, Any], field: str, what: str, tenant: str) -> str:
    token = answer.get(field)
    if not isinstance(token, str) or not token:
        raise RetriableError(f"{what}: the answer has no {field!r}", tenant=tenant)
    return token
