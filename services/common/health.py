"""`GET /healthz`, `/readyz` and `/metrics` for every service, on a small HTTP thread.

Liveness, ``/healthz``: 200 unless a loop that has work made no progress for longer
than its bound (`stall_after_s`, the service's ``STALL_TIMEOUT_S``), then 503 naming
the stalled loops: restarting the process is the cure. Each loop (the run loop, each
extractor poller) holds a `Heartbeat`: `beat()` when it makes progress (a bounded wait
on the broker passes a grace for its own timeout), `idle()` while it has nothing to do;
a `progress` counter (calls answered by a target or source) counts as beats while a
handler works. A broker or target being down never fails liveness: the loops keep
beating while they wait and retry.

Readiness, ``/readyz``: 200 once the service said it is ready (start-up checks passed,
partitions assigned) and no problem is reported; else 503 with the problems. A problem
is a named condition that makes the service unready while it lasts: `report(key,
message)` when it starts, `resolve(key)` when it ends; several parts of a service
report their own ("broker" unreachable, no "partitions", a "fatal" error, an
authorization refused...). docs/operations.md lists the states.

``/metrics`` is Prometheus' text format from the default registry
(services/common/metrics.py).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from services.common.errors import ConfigError
from services.product import NAME

log = logging.getLogger(__name__)

# Seconds a loop with work may go without progress before /healthz fails (default of
# every service's STALL_TIMEOUT_S): longer than any bounded wait in a loop (a target's
# retries and rate limit, a source's page) so that only a loop that is really stuck trips it.
DEFAULT_STALL_S = 300.0


class Heartbeat:
    """One loop's sign of life. Busy from the first `beat()`; stalled once no beat (and
    no change of `progress`) came for ``bound_s`` (+ the grace of the last beat) while
    busy; `idle()` while it waits for work, however long."""

    def __init__(
        self,
        name: str,
        bound_s: float,
        *,
        progress: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.bound_s = bound_s
        self._progress = progress
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()
        self._due: float | None = None
        self._seen = progress() if progress is not None else 0.0

    def beat(self, grace_s: float = 0.0) -> None:
        """Progress now; the next is due within the bound, plus ``grace_s`` for a wait
        about to start that has a timeout of its own (a broker call)."""
        with self._lock:
            self._last = self._clock()
            self._due = self._last + self.bound_s + grace_s

    def idle(self) -> None:
        """Nothing to do: waiting for work is no stall."""
        with self._lock:
            self._last = self._clock()
            self._due = None

    def excuse(self) -> None:
        """The loop waits on something a restart would not fix: if busy, it gets its
        whole bound again from now."""
        with self._lock:
            if self._due is not None:
                now = self._clock()
                self._last, self._due = now, max(self._due, now + self.bound_s)

    def stalled(self) -> str | None:
        """Why this loop counts as stuck, or None."""
        with self._lock:
            now = self._clock()
            if self._progress is not None:
                seen = self._progress()
                if seen != self._seen:
                    self._seen = seen
                    if self._due is not None:
                        self._last, self._due = now, now + self.bound_s
            if self._due is None or now <= self._due:
                return None
            return f"no progress for {now - self._last:.0f} s (bound {self.bound_s:.0f} s)"


class Health:
    """What the endpoints report; services flip `ready` and add detail."""

    def __init__(
        self,
        name: str,
        stall_after_s: float = DEFAULT_STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stall_after_s = stall_after_s
        self._clock = clock
        self._ready = threading.Event()
        self._problems: dict[str, str] = {}
        self._heartbeats: dict[str, Heartbeat] = {}
        self._lock = threading.Lock()
        self.detail: dict[str, object] = {}

    def heartbeat(self, name: str, *, progress: Callable[[], float] | None = None) -> Heartbeat:
        """A new heartbeat for loop `name` (replacing one of that name), bound by
        `stall_after_s`; it counts for /healthz until `forget(name)`."""
        beat = Heartbeat(name, self.stall_after_s, progress=progress, clock=self._clock)
        with self._lock:
            self._heartbeats[name] = beat
        return beat

    def forget(self, name: str) -> None:
        """A loop that ended: it no longer counts for liveness."""
        with self._lock:
            self._heartbeats.pop(name, None)

    @property
    def stalled(self) -> dict[str, str]:
        """The loops stuck with work. None while a problem is reported: then the loops
        wait on the broker (or what else is named) and a restart would not help."""
        with self._lock:
            beats = list(self._heartbeats.values())
            waiting = bool(self._problems)
        if waiting:
            for beat in beats:
                beat.excuse()
            return {}
        found = {beat.name: beat.stalled() for beat in beats}
        return {name: why for name, why in found.items() if why is not None}

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
            solved = self._problems.pop(key, None) is not None
            beats = list(self._heartbeats.values())
        if solved:  # what the loops waited on is back: each gets its whole bound again
            for beat in beats:
                beat.excuse()

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
                stalled = health.stalled
                if stalled:
                    self._json(503, {"service": health.name, "alive": False, "stalled": stalled})
                else:
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
