"""One tenant target's HTTP session, shared by the adapters: token login (again on 401),
the tenant's rate limit and bounded in-place retries of passing faults.

Adapters say how to log in (path, token field, Authorization scheme) and make calls with
`call`; what is retried is decided by `services/common/http.py`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from services.common import metrics
from services.common.errors import RetriableError
from services.common.http import as_retriable, raise_for_transient, with_retries
from services.common.ratelimit import RateLimiter
from services.common.tenants import Target

log = logging.getLogger(__name__)

# Passing faults are retried in place briefly; a longer Retry-After (an outage) goes up
# to the breaker at once, so one tenant's dead target never holds the others' batch.
IN_PLACE_ATTEMPTS = 5
IN_PLACE_MAX_DELAY_S = 10.0
IN_PLACE_MAX_WAIT_S = 2.0


@dataclass(frozen=True)
class Login:
    """How a target logs in: `POST path {"username","password"}` answers `{answer_field: token}`
    with one of `statuses`; calls then send `Authorization: <scheme> <token>`."""

    label: str  # "Kong", "WMS": names the target in messages
    path: str
    answer_field: str  # the login answer's field holding the token
    scheme: str
    statuses: tuple[int, ...] = (200, 201)


class TargetSession:
    def __init__(self, tenant: str, target: Target, login: Login) -> None:
        self.tenant = tenant
        self.target = target
        self.login_spec = login
        self.scheme = target.auth_scheme or login.scheme
        self.http: Any = httpx.Client(
            base_url=target.base_url.rstrip("/"),
            timeout=target.timeout_s,
            limits=httpx.Limits(
                max_connections=target.concurrency * 2,
                max_keepalive_connections=target.concurrency * 2,
            ),
        )
        self.limiter = (
            RateLimiter.per_second(target.rate_limit_rps) if target.rate_limit_rps else None
        )
        self.logins = 0
        self._token: str | None = None
        self._token_lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    @with_retries(
        attempts=IN_PLACE_ATTEMPTS,
        max_delay_s=IN_PLACE_MAX_DELAY_S,
        max_in_place_wait_s=IN_PLACE_MAX_WAIT_S,
    )
    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call, logged in; raises TransientHTTPError on a passing fault (after
        the in-place retries)."""
        what = f"tenant {self.tenant}: {self.login_spec.label} {method} {path.split('?')[0]}"
        token: str | None = None
        for _attempt in (1, 2):
            token = self._token_for(refused=token)
            response = self._send(what, method, path, token=token, **kwargs)
            if response.status_code != 401:
                break
        else:
            # Refused even with a fresh token: the tenant's access, not this record.
            raise RetriableError(f"{what}: HTTP 401 after logging in again", tenant=self.tenant)
        raise_for_transient(response, what)
        return response

    def _send(
        self, what: str, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        if self.limiter is not None:
            self.limiter.acquire()
        headers = {"Authorization": f"{self.scheme} {token}"} if token else None
        calls = metrics.TARGET_CALLS
        try:
            response: httpx.Response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            calls.labels(tenant=self.tenant, target=self.target.type, status="error").inc()
            raise as_retriable(exc, what) from None
        calls.labels(
            tenant=self.tenant, target=self.target.type, status=str(response.status_code)
        ).inc()
        return response

    def _token_for(self, *, refused: str | None) -> str:
        """The current token, logging in when there is none or when `refused` (a token
        the target just answered 401 to) is still the current one: many threads meeting
        the same expired token log in once."""
        with self._token_lock:
            if self._token is None or self._token == refused:
                self._token = self._login()
            return self._token

    def _login(self) -> str:
        spec = self.login_spec
        what = f"tenant {self.tenant}: {spec.label} login"
        response = self._send(
            what,
            "POST",
            spec.path,
            json={"username": self.target.username.get(), "password": self.target.password.get()},
        )
        raise_for_transient(response, what)
        if response.status_code not in spec.statuses:
            # Not this record's fault: the batch waits and is tried again.
            raise RetriableError(
                f"{what}: HTTP {response.status_code}: credentials refused", tenant=self.tenant
            )
        self.logins += 1
        if self.logins > 1:
            log.info(
                "tenant %s: logged in to %s again (%d logins)",
                self.tenant,
                spec.label,
                self.logins,
                extra={"tenant": self.tenant, "logins": self.logins},
            )
        return str(response.json()[spec.answer_field])
