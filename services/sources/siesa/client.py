"""The Siesa "consultas estándar" client (external-apis.md).

Every request, retries included, first takes a slot of the tenant's request budget
(`RateLimiter`), so Siesa never sees more than the budget from one tenant. 429 and 5xx
answers and transport errors are retried with exponential backoff and jitter, honouring
`Retry-After` (services/common/http.py); ``codigo != 0`` inside an HTTP 200 is an error
with Siesa's ``mensaje``; 401 means the tenant's ConniKey/ConniToken are refused.

A Siesa that pours without end is stopped (`SiesaLimit`, the tenant `degraded` and
alerted at once): an answer is read streamed and never past ``max_response_bytes``; a
page holding more rows than asked (``page_size``), a scan longer than ``max_pages``, a
page that is the previous one again (Siesa ignoring ``numPag``) and a 200 that is not
JSON (an HTML maintenance page) each end the scan with the reason.

The client sends absolute URLs and its tenant's headers on each request, so the
`httpx.Client` it is given can be shared by every tenant of one Siesa host.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import httpx

from services.common import metrics, tracing
from services.common.http import as_retriable, raise_for_transient, with_retries
from services.common.ratelimit import RateLimiter
from services.common.stopper import Stopper
from services.common.text import decode_json, escaped
from services.sources.base import CredentialsRefused, SourceError, SourceLimit, StopRequested
from services.sources.siesa.settings import SiesaSettings

log = logging.getLogger(__name__)

Row = dict[str, Any]

ATTEMPTS = 8
# Pages a scan's reader fetches ahead of its caller, at most.
READ_AHEAD = 8
# How often a scan waiting for its next page looks at its stopper.
STOP_CHECK_S = 0.1


class SiesaError(SourceError):
    """Siesa answered with an error (not worth an immediate retry); the next poll tries again."""

    error_class = "siesa_error"


class SiesaCodigoError(SiesaError):
    """``codigo != 0`` in the envelope of an HTTP 200: ``mensaje`` says why."""

    error_class = "siesa_codigo"

    def __init__(self, message: str, *, tenant: str, codigo: object, mensaje: object) -> None:
        super().__init__(message, tenant=tenant)
        self.codigo = codigo
        self.mensaje = mensaje


class SiesaAuthError(SiesaError, CredentialsRefused):
    """HTTP 401: Siesa refused the tenant's ConniKey/ConniToken."""

    error_class = "siesa_auth"


class SiesaLimit(SiesaError, SourceLimit):
    """Siesa's answer is over a cap, repeats a page or is not JSON: the scan stops."""

    error_class = "siesa_limit"


class SiesaClient:
    def __init__(
        self,
        source: SiesaSettings,
        *,
        tenant: str,
        limiter: RateLimiter | None = None,
        http: httpx.Client | None = None,
        stopper: Stopper | None = None,
    ) -> None:
        """`http`: the client to send requests with (shared, closed by its owner);
        default a client of this one's own, closed by `close`. `stopper`: a scan waiting
        for its next page ends (`StopRequested`) once it is stopped."""
        self.source = source
        self.tenant = tenant
        self.limiter = limiter
        self.stopper = stopper
        self.requests = 0
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=source.timeout_s)
        self._url = f"{source.base_url.rstrip('/')}/ejecutarconsultaestandar"

    def _headers(self) -> dict[str, str]:
        # Read when a request is sent: a client that never sends (a preview) needs none.
        # A page request of a scan carries the scan's trace (a new span each).
        return {
            "ConniKey": self.source.conni_key.get(),
            "ConniToken": self.source.conni_token.get(),
            **tracing.outgoing(),
        }

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    @with_retries(attempts=ATTEMPTS, max_delay_s=60.0)
    def page(self, number: int, parametros: str | None = None) -> list[Row]:
        """Rows of page `number` (from 1); the last page is the short or empty one."""
        params = {
            "idCompania": str(self.source.company),
            "descripcion": self.source.consulta,
            "paginacion": f"numPag={number}|tamPag={self.source.page_size}",
        }
        if parametros:
            params["parametros"] = parametros
        what = f"tenant {self.tenant}: Siesa page {number}"
        if self.limiter is not None:
            self.limiter.acquire()
        self.requests += 1
        calls = metrics.TARGET_CALLS
        try:
            with self._http.stream(
                "GET",
                self._url,
                params=params,
                headers=self._headers(),
                timeout=self.source.timeout_s,
            ) as response:
                calls.labels(
                    tenant=self.tenant, target="siesa", status=str(response.status_code)
                ).inc()
                if response.status_code == 401:
                    raise SiesaAuthError(
                        f"{what}: HTTP 401: ConniKey/ConniToken refused", tenant=self.tenant
                    )
                raise_for_transient(response, what)
                if response.status_code != 200:
                    raise SiesaError(f"{what}: HTTP {response.status_code}", tenant=self.tenant)
                data = self._read(response, what)
        except httpx.TransportError as exc:
            calls.labels(tenant=self.tenant, target="siesa", status="error").inc()
            raise as_retriable(exc, what) from None
        body = self._json(data, response.headers.get("content-type", "?"), what)
        if not isinstance(body, dict) or body.get("codigo") != 0:
            message = body.get("mensaje") if isinstance(body, dict) else None
            code = body.get("codigo") if isinstance(body, dict) else None
            raise SiesaCodigoError(
                f"{what}: codigo {code}: {message}",
                tenant=self.tenant,
                codigo=code,
                mensaje=message,
            )
        detalle = body.get("detalle") or {}
        rows = (detalle.get("Table") or []) if isinstance(detalle, dict) else None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise SiesaError(f"{what}: detalle.Table is not a list of rows", tenant=self.tenant)
        if len(rows) > self.source.page_size:
            raise SiesaLimit(
                f"{what} holds {len(rows)} rows, more than the {self.source.page_size} asked "
                "(source.page_size): scan stopped",
                tenant=self.tenant,
            )
        return rows

    def _read(self, response: httpx.Response, what: str) -> bytes:
        """The answer's bytes (decompressed), never more than the cap."""
        cap = self.source.max_response_bytes
        over = SiesaLimit(
            f"{what}: the answer is over the cap of {cap} bytes (source.max_response_bytes): "
            "scan stopped",
            tenant=self.tenant,
        )
        declared = response.headers.get("content-length", "")
        encoded = "content-encoding" in response.headers  # a compressed length says little
        if declared.isdigit() and int(declared) > cap and not encoded:
            raise over
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise over
            chunks.append(chunk)
        return b"".join(chunks)

    def _json(self, data: bytes, content_type: str, what: str) -> Any:
        """The answer as JSON (text that is not UTF-8 kept for the rows to refuse,
        services/common/text.py); SiesaLimit when it is not JSON at all."""
        try:
            return decode_json(data)
        except (ValueError, RecursionError):
            start = escaped(data[:60].decode("utf-8", "replace"))
            raise SiesaLimit(
                f"{what}: the answer is not JSON (HTTP 200, content-type {content_type}, "
                f"{len(data)} bytes, starting {start!r}): scan stopped",
                tenant=self.tenant,
            ) from None

    def scan(self, parametros: str | None = None) -> Iterator[list[Row]]:
        """Every page of the consulta, in order, until the short (or empty) one.

        A reader thread fetches the pages one after the other (one request at a time, as
        a plain loop would) up to `READ_AHEAD` pages ahead of the caller, so Siesa's
        answer time overlaps with the caller's work, also while the caller waits on
        something else (a commit). Stopping early ends the reader after the request it
        has in flight; a stop of `stopper` while the caller waits for a page (Siesa slow
        to answer, or retrying) ends the scan at once with `StopRequested`, leaving the
        reader to end by itself after its request."""
        size = self.source.page_size
        pages: queue.Queue[tuple[list[Row] | None, BaseException | None]] = queue.Queue(READ_AHEAD)
        done = threading.Event()

        def hand(item: tuple[list[Row] | None, BaseException | None]) -> None:
            while not done.is_set():
                try:
                    pages.put(item, timeout=0.1)
                except queue.Full:
                    continue
                else:
                    return

        def read() -> None:
            number = 1
            previous: list[Row] = []
            try:
                while not done.is_set():
                    rows = self.page(number, parametros)
                    self._check_progress(number, rows, previous)
                    hand((rows, None))
                    if len(rows) < size:
                        return
                    number += 1
                    previous = rows
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
                hand((None, exc))

        # The reader runs in the caller's context: its requests carry the caller's trace.
        context = contextvars.copy_context()
        reader = threading.Thread(
            target=context.run, args=(read,), name=f"siesa-{self.tenant}", daemon=True
        )
        reader.start()
        stopped = False
        try:
            while True:
                rows, error = self._next(pages)
                if error is not None:
                    raise error
                assert rows is not None  # noqa: S101 - a page or an error, never neither
                yield rows
                if len(rows) < size:
                    return
        except StopRequested:
            stopped = True
            raise
        finally:
            done.set()
            if not stopped:
                reader.join()

    def _next(
        self, pages: queue.Queue[tuple[list[Row] | None, BaseException | None]]
    ) -> tuple[list[Row] | None, BaseException | None]:
        """The reader's next page (or error); StopRequested once `stopper` stops."""
        while True:
            try:
                return pages.get(timeout=STOP_CHECK_S if self.stopper is not None else None)
            except queue.Empty:
                if self.stopper is not None and self.stopper.stopped:
                    raise StopRequested(
                        f"tenant {self.tenant}: stopped waiting for Siesa", tenant=self.tenant
                    ) from None

    def _check_progress(self, number: int, rows: list[Row], previous: list[Row]) -> None:
        """SiesaLimit when page `number` is the one before again, or one too many."""
        what = f"tenant {self.tenant}: Siesa page {number}"
        if rows and rows == previous:
            raise SiesaLimit(
                f"{what} is page {number - 1} again (Siesa ignores numPag): scan stopped",
                tenant=self.tenant,
            )
        if number > self.source.max_pages:
            raise SiesaLimit(
                f"{what}: the scan is over the cap of {self.source.max_pages} pages "
                "(source.max_pages): scan stopped",
                tenant=self.tenant,
            )
