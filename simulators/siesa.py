"""Siesa ERP simulator: ``GET .../ejecutarconsultaestandar`` plus an admin API.

Only the consulta ``API_v2_Items`` is served. Rows are kept per company, keyed by
their trimmed ``f120_referencia`` and listed in ``f120_rowid`` order, and returned
exactly as stored (padding kept, native types).

Broken text as ERPs send it: a stored value holding a lone surrogate U+DC80..U+DCFF
(``"\\udce9"`` in the admin API's JSON) goes out as that raw byte (0xE9: not UTF-8, as
Python's ``surrogateescape``), any other lone surrogate as its JSON escape
(``"\\ud800"``). ``POST /_admin/faults`` with ``hostile: {"<company>": kind}`` makes
that company's consultas hostile (the others answer as usual): ``repeat_page``
(``numPag`` ignored: page 1 every time), ``html`` (a 200 HTML maintenance page) or
``oversized`` (the answer padded with ``oversized_bytes`` blanks).
"""

from __future__ import annotations

import codecs
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeGuard
from urllib.parse import unquote

from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from simulators.catalogue import DATE_FORMAT, generate_items
from simulators.faults import Faults, FaultSettings
from simulators.stats import Answered, RequestStats
from simulators.web import BodyError, read_json, simulator_app

logger = logging.getLogger(__name__)

CONSULTA_ITEMS = "API_v2_Items"
MAX_PAGE_SIZE = 100
MAX_SEED_COUNT = 1_000_000
OK_MESSAGE = "transacción exitosa"
FILTER_PARAMETERS = ("FechaInicio", "FechaFin")
MAX_LOGGED_REQUESTS = 200_000

Row = dict[str, Any]
DayRange = tuple[str | None, str | None]


class ConsultaError(ValueError):
    """A consulta request answered with ``codigo != 0`` inside an HTTP 200."""


def envelope_error(
    message: str, status_code: int = 200, codigo: int = 1, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The Siesa envelope of an error: ``codigo`` (1 by default), the reason, no ``detalle``."""
    return JSONResponse(
        {"codigo": codigo, "mensaje": message, "detalle": None},
        status_code=status_code,
        headers=headers,
    )


def siesa_error_answer(status: int, headers: dict[str, str], reason: str) -> Response:
    """Injected HTTP errors (429, 5xx...) in Siesa's envelope, ``codigo`` = the status."""
    return envelope_error(reason, status_code=status, codigo=status, headers=headers)


class SiesaFaultSettings(FaultSettings):
    """The generic faults plus Siesa's own: a share ``codigo_error_rate`` of consultas
    answered HTTP 200 with ``codigo`` != 0 and ``mensaje`` (no rows)."""

    codigo_error_rate: float = Field(default=0, ge=0, le=1)
    codigo: int = Field(default=99, ge=1)
    mensaje: str = "Error ejecutando la consulta: tiempo de espera agotado en el servidor SQL"
    hostile: dict[int, Literal["repeat_page", "html", "oversized"]] = Field(default_factory=dict)
    oversized_bytes: int = Field(default=8_000_000, ge=0, le=500_000_000)


MAINTENANCE_PAGE = (
    b"<!DOCTYPE html><html><head><title>Mantenimiento</title></head>"
    b"<body><h1>Siesa Cloud</h1><p>Estamos en mantenimiento.</p></body></html>"
)


def _wire_error(exc: UnicodeError) -> tuple[bytes, int]:
    """Encoding errors of `wire_json`: U+DC80..U+DCFF as the raw byte, any other lone
    surrogate as its JSON escape (it is inside a JSON string)."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        out += bytes([code - 0xDC00]) if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}".encode()
    return bytes(out), exc.end


codecs.register_error("siesa-wire", _wire_error)


def wire_json(body: Any) -> bytes:
    """`body` as Siesa's JSON (compact, UTF-8; broken text as the module says)."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "siesa-wire")


def _referencia_key(row: Row) -> str:
    referencia = row.get("f120_referencia")
    if not isinstance(referencia, str) or not referencia.strip():
        raise BodyError("every row needs a non-empty string f120_referencia")
    return referencia.strip()


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _day(row: Row) -> str | None:
    value = row.get("f120_fecha_actualizacion")
    return value[:8] if isinstance(value, str) else None


class Catalogue:
    """One company's item rows, keyed by trimmed referencia, listed in rowid order."""

    def __init__(self) -> None:
        self._rows: dict[str, Row] = {}
        self._last_rowid = 0
        self._ordered: list[Row] | None = None
        self._selections: dict[DayRange, list[Row]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self) -> list[Row]:
        """Every row in (f120_rowid, referencia) order."""
        if self._ordered is None:
            self._ordered = sorted(
                self._rows.values(),
                key=lambda r: (r.get("f120_rowid", 0), r["f120_referencia"]),
            )
        return self._ordered

    def select(self, days: DayRange) -> list[Row]:
        """Rows changed on a day in [start, end); either bound may be open."""
        if days == (None, None):
            return self.rows()
        if days not in self._selections:
            start, end = days
            self._selections[days] = [
                row
                for row in self.rows()
                if (day := _day(row)) is not None
                and (start is None or day >= start)
                and (end is None or day < end)
            ]
        return self._selections[days]

    def upsert(self, rows: list[Row], stamp: str, keep_dates: bool = False) -> None:
        """Merge ``rows`` into the stored ones (by trimmed referencia), in order.

        A row without f120_rowid gets the last one + 1 (or keeps its stored one).
        Every row's f120_fecha_actualizacion becomes ``stamp`` unless ``keep_dates``
        and the row gives one. Call only with rows checked by `check_rows`.
        """
        for row in rows:
            key = _referencia_key(row)
            merged = {**self._rows.get(key, {}), **row}
            if "f120_rowid" not in merged:
                merged["f120_rowid"] = self._last_rowid + 1
            if not (keep_dates and "f120_fecha_actualizacion" in row):
                merged["f120_fecha_actualizacion"] = stamp
            self._last_rowid = max(self._last_rowid, merged["f120_rowid"])
            self._rows[key] = merged
        self._changed()

    def replace(self, rows: list[Row]) -> None:
        """Drop every row, then store ``rows`` as they are."""
        self._rows = {_referencia_key(row): row for row in rows}
        self._last_rowid = max((row["f120_rowid"] for row in rows), default=0)
        self._changed()

    def delete(self, referencia: str) -> bool:
        """Remove the row with this (trimmed) referencia; False if there is none."""
        found = self._rows.pop(referencia.strip(), None) is not None
        if found:
            self._changed()
        return found

    def _changed(self) -> None:
        self._ordered = None
        self._selections.clear()


def check_rows(body: Any) -> list[Row]:
    """The rows of an admin upsert body (a list, or ``{"items": [...]}``), validated."""
    rows = body.get("items") if isinstance(body, dict) else body
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BodyError('expected a JSON list of rows or {"items": [rows]}')
    for row in rows:
        _referencia_key(row)
        if not _is_int(row.get("f120_rowid", 0)):
            raise BodyError("f120_rowid must be an integer")
    return rows


def parse_pairs(raw: str, what: str) -> dict[str, str]:
    """``Name=Value|Name=Value`` (raw or percent-encoded once more) as a dict."""
    text = unquote(raw) if "%" in raw else raw
    pairs: dict[str, str] = {}
    for part in text.split("|"):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ConsultaError(f"{what} mal formado: se espera Nombre=Valor|Nombre=Valor")
        pairs[name.strip()] = value.strip()
    return pairs


def parse_paginacion(raw: str | None) -> tuple[int, int]:
    """(numPag, tamPag) from ``numPag=N|tamPag=S``; numPag starts at 1."""
    if raw is None or not raw.strip():
        raise ConsultaError("falta el parámetro paginacion (numPag=N|tamPag=S)")
    pairs = {name.lower(): value for name, value in parse_pairs(raw, "paginacion").items()}
    try:
        page, size = int(pairs["numpag"]), int(pairs["tampag"])
    except (KeyError, ValueError) as exc:
        raise ConsultaError("paginacion necesita numPag y tamPag enteros") from exc
    if page < 1 or size < 1:
        raise ConsultaError("numPag y tamPag deben ser mayores que cero")
    if size > MAX_PAGE_SIZE:
        raise ConsultaError(f"tamPag no puede ser mayor que {MAX_PAGE_SIZE}")
    return page, size


def _parse_day(value: str, name: str) -> str:
    try:
        datetime.strptime(value, "%Y%m%d")  # only checks that it is a real date
    except ValueError as exc:
        raise ConsultaError(f"{name} debe ser una fecha AAAAMMDD") from exc
    if len(value) != 8:
        raise ConsultaError(f"{name} debe ser una fecha AAAAMMDD")
    return value


def parse_parametros(raw: str | None) -> DayRange:
    """(FechaInicio, FechaFin) as ``YYYYMMDD`` strings, None where not given."""
    if raw is None or not raw.strip():
        return None, None
    pairs = parse_pairs(raw, "parametros")
    unknown = sorted(set(pairs) - set(FILTER_PARAMETERS))
    if unknown:
        raise ConsultaError(f"parámetros no soportados por {CONSULTA_ITEMS}: {', '.join(unknown)}")
    days = [_parse_day(pairs[name], name) if name in pairs else None for name in FILTER_PARAMETERS]
    return days[0], days[1]


def parse_query(params: Mapping[str, str]) -> tuple[int, int, int, DayRange]:
    """(company, page, page size, day range) of a consulta request; `ConsultaError`."""
    if params.get("descripcion") != CONSULTA_ITEMS:
        raise ConsultaError(f"consulta no encontrada; solo se sirve {CONSULTA_ITEMS}")
    try:
        company = int(params.get("idCompania", ""))
    except ValueError as exc:
        raise ConsultaError("idCompania debe ser un número") from exc
    page, size = parse_paginacion(params.get("paginacion"))
    return company, page, size, parse_parametros(params.get("parametros"))


class SiesaSimulator:
    """The simulator's state and endpoints."""

    def __init__(self, conni_key: str, conni_token: str) -> None:
        self._conni_key = conni_key.encode()
        self._conni_token = conni_token.encode()
        self.companies: dict[int, Catalogue] = {}
        self.pages_served = 0
        self.stats = RequestStats()
        self.faults = Faults(SiesaFaultSettings)
        self._codigo_random = random.Random()  # noqa: S311 - not for security
        self.started = time.monotonic()
        # Per company: (seconds since start, status, filtered) of every consulta request,
        # so tests can check request budgets and Retry-After over time.
        self.request_log: dict[str, deque[tuple[float, int, bool]]] = {}

    def authorized(self, request: Request) -> bool:
        """True when ConniKey and ConniToken both match; ``Authorization`` is ignored."""
        key = request.headers.get("ConniKey", "").encode()
        token = request.headers.get("ConniToken", "").encode()
        key_ok = secrets.compare_digest(key, self._conni_key)
        return secrets.compare_digest(token, self._conni_token) and key_ok

    async def consulta(self, request: Request) -> Response:
        """``GET {base}/ejecutarconsultaestandar``."""
        if not self.authorized(request):
            return envelope_error("ConniKey o ConniToken inválidos", status_code=401)
        try:
            company, page, size, days = parse_query(request.query_params)
        except ConsultaError as exc:
            return envelope_error(str(exc))
        faults = self.faults.settings
        if isinstance(faults, SiesaFaultSettings) and faults.codigo_error_rate > 0:
            if self._codigo_random.random() < faults.codigo_error_rate:
                self.faults.counts["codigo"] = self.faults.counts.get("codigo", 0) + 1
                return envelope_error(faults.mensaje, codigo=faults.codigo)
        hostile = faults.hostile.get(company) if isinstance(faults, SiesaFaultSettings) else None
        if hostile == "html":
            return Response(MAINTENANCE_PAGE, media_type="text/html")
        if hostile == "repeat_page":
            page = 1
        catalogue = self.companies.get(company)
        rows = catalogue.select(days)[(page - 1) * size : page * size] if catalogue else []
        self.pages_served += 1
        data = wire_json({"codigo": 0, "mensaje": OK_MESSAGE, "detalle": {"Table": rows}})
        if hostile == "oversized" and isinstance(faults, SiesaFaultSettings):
            data += b" " * faults.oversized_bytes
        return Response(data, media_type="application/json")

    def _catalogue(self, request: Request) -> Catalogue:
        return self.companies.setdefault(int(request.path_params["id"]), Catalogue())

    async def upsert_items(self, request: Request) -> Response:
        """``POST /_admin/companies/{id}/items[?keep_dates=true]``."""
        keep_dates = request.query_params.get("keep_dates", "").lower() in ("1", "true", "yes")
        try:
            rows = check_rows(await read_json(request))
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        now = datetime.now().strftime(DATE_FORMAT)  # Siesa's dates are local times
        self._catalogue(request).upsert(rows, stamp=now, keep_dates=keep_dates)
        logger.info("company %s: upserted %d rows", request.path_params["id"], len(rows))
        return JSONResponse({"upserted": len(rows)})

    async def seed(self, request: Request) -> Response:
        """``POST /_admin/companies/{id}/seed`` ``{"count", "seed"}``."""
        try:
            body = await read_json(request)
        except BodyError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        count = body.get("count") if isinstance(body, dict) else None
        seed = body.get("seed", 0) if isinstance(body, dict) else None
        if not (_is_int(count) and _is_int(seed)):
            return JSONResponse({"error": 'expected {"count": int, "seed": int}'}, 400)
        if not 0 <= count <= MAX_SEED_COUNT:
            return JSONResponse({"error": f"count must be in 0..{MAX_SEED_COUNT}"}, 400)
        company = int(request.path_params["id"])
        self._catalogue(request).replace(generate_items(company, count, seed))
        logger.info("company %d: seeded %d rows (seed %d)", company, count, seed)
        return JSONResponse({"count": count})

    async def delete_item(self, request: Request) -> Response:
        """``DELETE /_admin/companies/{id}/items/{referencia}``."""
        catalogue = self.companies.get(int(request.path_params["id"]))
        if catalogue is None or not catalogue.delete(request.path_params["referencia"]):
            return JSONResponse({"error": "no such item"}, status_code=404)
        return Response(status_code=204)

    async def list_items(self, request: Request) -> Response:
        """``GET /_admin/companies/{id}/items``: the stored rows in rowid order."""
        catalogue = self.companies.get(int(request.path_params["id"]))
        return JSONResponse(catalogue.rows() if catalogue else [])

    async def stats_view(self, request: Request) -> Response:
        """``GET /_admin/stats``."""
        rows_by_company = {str(c): len(cat) for c, cat in sorted(self.companies.items())}
        return JSONResponse(
            {
                **self.stats.snapshot(),
                "rows_by_company": rows_by_company,
                "pages_served": self.pages_served,
                "consultas": {
                    company: [[round(t, 4), status, filtered] for t, status, filtered in log]
                    for company, log in sorted(self.request_log.items())
                },
            }
        )

    async def reset(self, request: Request) -> Response:
        """``POST /_admin/reset``: forget every company, counter and statistic."""
        self.companies.clear()
        self.pages_served = 0
        self.stats.reset()
        self.request_log.clear()
        self.faults.set(self.faults.settings_class())
        return JSONResponse({"reset": True})


def create_app(conni_key: str, conni_token: str, base_path: str = "/api/siesa/v3") -> Starlette:
    """The Siesa simulator as a Starlette app, with the given static credentials."""
    sim = SiesaSimulator(conni_key, conni_token)
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    company = "/_admin/companies/{id:int}"
    routes = [
        Route(f"{base}/ejecutarconsultaestandar", sim.consulta, methods=["GET"]),
        Route(f"{company}/items", sim.upsert_items, methods=["POST"]),
        Route(f"{company}/items", sim.list_items, methods=["GET"]),
        Route(f"{company}/items/{{referencia:path}}", sim.delete_item, methods=["DELETE"]),
        Route(f"{company}/seed", sim.seed, methods=["POST"]),
        Route("/_admin/stats", sim.stats_view, methods=["GET"]),
        Route("/_admin/reset", sim.reset, methods=["POST"]),
    ]
    app = simulator_app(sim, routes, sim.stats, sim.faults, siesa_error_answer)
    app.add_middleware(RequestLogMiddleware, simulator=sim)  # outermost: sees every answer
    return app


class RequestLogMiddleware:
    """Records every consulta request (injected answers included) in `request_log`."""

    def __init__(self, app: ASGIApp, simulator: SiesaSimulator) -> None:
        self.app = app
        self.sim = simulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not path.endswith("/ejecutarconsultaestandar"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        company = request.query_params.get("idCompania", "")
        filtered = bool(request.query_params.get("parametros", "").strip())
        at = time.monotonic() - self.sim.started
        answered = Answered(send)
        try:
            await self.app(scope, receive, answered)
        finally:
            log = self.sim.request_log.setdefault(company, deque(maxlen=MAX_LOGGED_REQUESTS))
            log.append((at, answered.status, filtered))
