"""`GET /healthz`, `/readyz` and `/metrics` for every service, on a small HTTP thread.

``/healthz`` answers 200 while the process runs; ``/readyz`` 200 once the service says
it is ready (connected, assigned) and no problem is reported, 503 otherwise, naming the
problems; ``/metrics`` is Prometheus' text format from the default registry
(services/common/metrics.py).

A problem is a named condition that makes the service unready while it lasts (the
broker unreachable, an authorization refused...): `report(key, message)` when it
starts, `resolve(key)` when it ends; several parts of a service can report their own.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.common.errors import ConfigError
from services.product import NAME

log = logging.getLogger(__name__)


class Health:
    """What the endpoints report; services flip `ready` and add detail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ready = threading.Event()
        self._problems: dict[str, str] = {}
        self._lock = threading.Lock()
        self.detail: dict[str, object] = {}

    def set_ready(self, ready: bool = True) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

    def report(self, key: str, message: str) -> None:
        """A condition that keeps the service unready until `resolve(key)`."""
        with self._lock:
            self._problems[key] = message

    def resolve(self, key: str) -> None:
        with self._lock:
            self._problems.pop(key, None)

    @property
    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._problems)

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self.problems


_current: Health | None = None


def current(name: str = NAME) -> Health:
    """The process's one Health (a process runs one service), made on first use."""
    global _current
    if _current is None:
        _current = Health(name)
    return _current


def _handler(health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._json(200, {"service": health.name, "alive": True})
            elif path == "/readyz":
                ready, problems = health.ready, health.problems
                body = {"service": health.name, "ready": ready, **health.detail}
                if problems:
                    body["problems"] = problems
                self._json(200 if ready else 503, body)
            else:
                self._json(404, {"detail": "not found"})

        def _json(self, status: int, body: dict[str, object]) -> None:
            self._send(status, json.dumps(body, default=str).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes are not worth a log line each

    return Handler


class HealthServer:
    """The endpoints on ``host:port`` (port 0 = any free one) in a daemon thread."""

    def __init__(self, health: Health, host: str, port: int) -> None:
        self.server = ThreadingHTTPServer((host, port), _handler(health))
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("health and metrics on port %d", self.port)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(health: Health, host: str, port: int | None, default_port: int = 0) -> Callable[[], None]:
    """Start serving on ``port``, or on ``default_port`` when it is None; returns the
    function that stops it. A given port in use is a config error naming it; a busy
    default port (a second loader on one host) falls back to any free port, logged."""
    try:
        server = HealthServer(health, host, default_port if port is None else port)
    except OSError as exc:
        if port is None and default_port:
            log.warning("health port %d is busy; using a free one", default_port)
            return serve(health, host, 0)
        raise ConfigError(
            f"health/metrics server: cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    server.start()
    return server.stop
