"""One tenant target's HTTP session, built by the loader and handed to the adapter:
authentication (a strategy from `auth.py`, again on a 401), the tenant's rate limit, the
target's timeout and bounded in-place retries of passing faults, always.

A success that is not what a JSON API answers (a proxy's HTML maintenance page with
200) is a passing fault of the target (`UnexpectedAnswer`), never taken as a write
done, nor as a record's fault.

The HTTP client may be given (tests pass one bound to a simulator app; a loader may share
one per target host); calls use absolute URLs, so one client can serve many tenants.
What is retried is decided by `services/common/http.py`.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import httpx

from services.common import metrics, tracing
from services.common.http import (
    TransientHTTPError,
    as_retriable,
    raise_for_transient,
    with_retries,
)
from services.common.ratelimit import RateLimiter
from services.targets.auth import Authenticator, CredentialsRefused, authenticator
from services.targets.base import TargetSettings

log = logging.getLogger(__name__)

# Passing faults are retried in place briefly; a longer Retry-After (an outage) goes up
# to the breaker at once, so one tenant's dead target never holds the others' batch.
IN_PLACE_ATTEMPTS = 5
IN_PLACE_MAX_DELAY_S = 10.0
IN_PLACE_MAX_WAIT_S = 2.0


class Limiter(Protocol):
    """Waits for the next call the tenant may send (the loader gives its share of the
    tenant's rate limit: services/loader/shares.py)."""

    def acquire(self) -> float: ...


class UnexpectedAnswer(TransientHTTPError):
    """The target answered success with a body that is not JSON (a maintenance page)."""

    error_class = "target_unexpected_answer"


def new_client(config: TargetSettings) -> httpx.Client:
    """A client with room for the tenant's concurrency (and its logins)."""
    room = config.concurrency * 2
    return httpx.Client(
        timeout=config.timeout_s,
        limits=httpx.Limits(max_connections=room, max_keepalive_connections=room),
    )


class TargetSession:
    def __init__(
        self,
        tenant: str,
        config: TargetSettings,
        client: httpx.Client | None = None,
        auth: Authenticator | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        """`limiter`: the tenant's rate limit (default: `rate_limit_rps` of its own)."""
        self.tenant = tenant
        self.config = config
        self.label = config.label
        self.base_url = config.base_url.rstrip("/")
        self._owns_client = client is None
        self.http = client if client is not None else new_client(config)
        self.auth = auth or authenticator(
            config.auth,
            tenant=tenant,
            label=config.label,
            base_url=self.base_url,
            login=config.login,
        )
        self.limiter: Limiter | None = limiter
        if limiter is None and config.rate_limit_rps:
            self.limiter = RateLimiter.per_second(config.rate_limit_rps)

    def close(self) -> None:
        if self._owns_client:
            self.http.close()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    @with_retries(
        attempts=IN_PLACE_ATTEMPTS,
        max_delay_s=IN_PLACE_MAX_DELAY_S,
        max_in_place_wait_s=IN_PLACE_MAX_WAIT_S,
    )
    def call(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One API call to `path` (on the target's base URL), authenticated; raises
        TransientHTTPError on a passing fault (after the in-place retries), and
        RetriableError when the target refuses the tenant's credentials."""
        what = f"tenant {self.tenant}: {self.label} {method} /{path.lstrip('/').split('?')[0]}"
        response, auth = self._authenticated(what, method, path, headers, **kwargs)
        again = response.status_code == 401 and self.auth.refused(auth)
        if again:
            response, auth = self._authenticated(what, method, path, headers, **kwargs)
        if response.status_code == 401:
            # Refused even with fresh credentials: the tenant's access, not this record.
            why = "after logging in again" if again else "credentials refused"
            raise CredentialsRefused(f"{what}: HTTP 401 {why}", tenant=self.tenant)
        raise_for_transient(response, what)
        if self.config.answers_json and response.is_success:
            self._check_json(response, what)
        return response

    def _check_json(self, response: httpx.Response, what: str) -> None:
        if not response.content:
            return
        try:
            response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no Content-Type").split(";")[0]
            raise UnexpectedAnswer(
                f"{what}: HTTP {response.status_code} answered {kind}, not JSON "
                "(a maintenance page?)"
            ) from None

    def _authenticated(
        self, what: str, method: str, path: str, headers: dict[str, str] | None, **kwargs: Any
    ) -> tuple[httpx.Response, dict[str, str]]:
        auth = self.auth.headers(self._send)
        response = self._send(
            what, method, self.url(path), headers={**(headers or {}), **auth}, **kwargs
        )
        return response, auth

    def _send(
        self, what: str, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request, rate limited and counted, carrying the active trace (a new span
        of the product's trace: `traceparent`); no retries, no authentication."""
        if self.limiter is not None:
            self.limiter.acquire()
        calls = metrics.TARGET_CALLS
        headers = {**(headers or {}), **tracing.outgoing()}
        try:
            response = self.http.request(
                method, url, headers=headers, timeout=self.config.timeout_s, **kwargs
            )
        except httpx.TransportError as exc:
            calls.labels(tenant=self.tenant, target=self.config.type, status="error").inc()
            raise as_retriable(exc, what) from None
        calls.labels(
            tenant=self.tenant, target=self.config.type, status=str(response.status_code)
        ).inc()
        return response
