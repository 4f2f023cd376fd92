"""The sources' HTTP clients, shared: one `httpx.Client` (one connection pool) per source
host and client settings, however many tenants read from that host.

A tenant's source asks `HttpClients.client(pool)` for the client of its `HttpPool` (the
host's origin, the request timeout and the TLS settings: tenants differing in any of
these never share). Nothing of a tenant stays in a shared client: a source sends its
credentials as headers of each request (never as the client's headers), and the
clients keep no cookies (a cookie one tenant's answer set would be sent with the next
tenant's requests). A source closes only a client it opened itself, never a shared one;
`close()` closes them all (the process ending).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

# Connections a shared client keeps to one host: well over the scans running at once
# (the extractor's workers, one request in flight each).
MAX_CONNECTIONS = 64


@dataclass(frozen=True)
class HttpPool:
    """What makes two tenants' sources able to share a client."""

    origin: str  # scheme://host:port
    timeout_s: float
    verify: bool | str = True  # TLS: verify the server (or the CA bundle's path)

    @classmethod
    def of(cls, base_url: str, timeout_s: float, verify: bool | str = True) -> HttpPool:
        url = httpx.URL(base_url)
        port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
        return cls(f"{url.scheme}://{url.host}:{port}", timeout_s, verify)


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class HttpClients:
    """The shared clients, one per `HttpPool`, made on first use (any thread)."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._clients: dict[HttpPool, httpx.Client] = {}

    def client(self, pool: HttpPool) -> httpx.Client:
        with self._lock:
            client = self._clients.get(pool)
            if client is None:
                client = self._clients[pool] = httpx.Client(
                    timeout=pool.timeout_s,
                    verify=pool.verify,
                    cookies=no_cookies(),
                    limits=httpx.Limits(
                        max_connections=self.max_connections,
                        max_keepalive_connections=self.max_connections,
                    ),
                )
            return client

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()


# The process's shared clients (what `open_source` uses unless given a client).
SHARED = HttpClients()
