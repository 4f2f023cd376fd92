"""One HTTP client per target host, shared by every tenant of that host.

A client per tenant costs a connection pool and a TLS context each (about a megabyte
per tenant at 300 tenants); tenants on the same Kong or WMS share one here instead, so
the loader's memory follows the hosts and the calls in flight, not the tenants.

Sharing is safe because nothing of a tenant lives in the client: every call carries
its tenant's own credentials (`session.py`), uses an absolute URL and its tenant's
timeout, and the client keeps no cookies (a cookie one tenant's session is given would
otherwise go out with another tenant's calls). Connections: as many as the loader has
worker threads (each thread makes one request at a time, logins included), so a call
never waits for a connection another tenant holds.
"""

from __future__ import annotations

import threading
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urlsplit

import httpx

from services.targets.base import TargetSettings


def host_of(config: TargetSettings) -> str:
    """What a client is shared by: the base URL's scheme, host and port (the timeout is
    given with each call; targets take no TLS settings of their own yet)."""
    url = urlsplit(config.base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{(url.hostname or '').lower()}:{port}"


def no_cookies() -> CookieJar:
    return CookieJar(DefaultCookiePolicy(allowed_domains=[]))


class Clients:
    def __init__(self, connections: int) -> None:
        """`connections`: the most requests in flight at once (the loader's workers)."""
        self.connections = connections
        self._lock = threading.Lock()
        self._clients: dict[str, httpx.Client] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def for_target(self, config: TargetSettings) -> httpx.Client:
        host = host_of(config)
        with self._lock:
            client = self._clients.get(host)
            if client is None:
                limits = httpx.Limits(
                    max_connections=self.connections,
                    max_keepalive_connections=self.connections,
                )
                client = httpx.Client(timeout=config.timeout_s, limits=limits, cookies=no_cookies())
                self._clients[host] = client
            return client

    def keep(self, configs: list[TargetSettings]) -> None:
        """Close the clients of hosts no target in `configs` is on any more."""
        used = {host_of(c) for c in configs}
        with self._lock:
            gone = [h for h in self._clients if h not in used]
            closing = [self._clients.pop(h) for h in gone]
        for client in closing:
            client.close()

    def close(self) -> None:
        with self._lock:
            closing = list(self._clients.values())
            self._clients.clear()
        for client in closing:
            client.close()
