"""Kong simulator: token login and the SKU API (Django REST style) plus an admin API.

Every non-admin route but the login needs ``Authorization: Token <auth_token>`` of a
token this process issued; ``Bearer`` is not accepted. SKUs live in a `SkuStore`.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.faults import json_error
from simulators.kong_skus import (
    REQUIRED_MESSAGE,
    SkuStore,
    ValidationError,
    public,
    validate,
)
from simulators.stats import RequestStats
from simulators.target_admin import BAD_STORED_SINCE, TargetAdmin, stored_since
from simulators.target_faults import rejected, target_answer, target_faults
from simulators.web import BodyError, read_json, simulator_app

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
LOGIN_FAILED = {"non_field_errors": ["Unable to log in with provided credentials."]}
INVALID_TOKEN = {"detail": "Invalid token."}
NOT_FOUND = {"detail": "Not found."}
INVALID_PAGE = {"detail": "Invalid page."}


def _positive_int(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def _matches(sku: dict[str, Any], external_id: str | None, customer_id: str | None) -> bool:
    """Whether ``sku`` passes the list filters given (an unparsable customer_id: no)."""
    if external_id and sku["external_id"] != external_id:
        return False
    return not customer_id or str(sku["customer_id"]) == customer_id.strip()


class KongSimulator(TargetAdmin):
    """The simulator's state (users, issued tokens, SKUs, stats) and endpoints."""

    store_name = "skus"

    def __init__(self, users: dict[str, str]) -> None:
        self._users = dict(users)
        self._tokens: dict[str, float] = {}  # token -> issued at (monotonic)
        self.skus = SkuStore()
        self.stats = RequestStats()
        self.faults = target_faults()

    def _authenticated(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        issued_at = self._tokens.get(token.strip())
        return (
            scheme.lower() == "token"
            and issued_at is not None
            and not self.faults.token_expired(issued_at)
        )

    async def _body(self, request: Request) -> Any:
        """The JSON body; a missing one counts as ``{}`` like DRF's form parsing."""
        body = await read_json(request)
        return {} if body is None else body

    async def login(self, request: Request) -> Response:
        """``POST /auth/token/login/`` ``{"username", "password"}`` → 201 ``{"auth_token"}``."""
        try:
            body = await self._body(request)
        except BodyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse(LOGIN_FAILED, status_code=400)
        missing = {f: [REQUIRED_MESSAGE] for f in ("username", "password") if f not in body}
        if missing:
            return JSONResponse(missing, status_code=400)
        username, password = body["username"], body["password"]
        if not self._password_ok(username, password):
            logger.info("login refused")
            return JSONResponse(LOGIN_FAILED, status_code=400)
        token = secrets.token_hex(20)
        self._tokens[token] = time.monotonic()
        return JSONResponse({"auth_token": token}, status_code=201)

    async def skus_collection(self, request: Request) -> Response:
        """``GET|POST /inventory/skus/``."""
        if not self._authenticated(request):
            return JSONResponse(INVALID_TOKEN, status_code=401)
        if request.method == "GET":
            return self._list(request)
        try:
            fields = validate(await self._body(request), partial=False)
            if refusal := rejected(self.faults, fields["external_id"]):
                return JSONResponse({"external_id": [refusal[1]]}, status_code=refusal[0])
            sku = self.skus.create(fields)
        except BodyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        except ValidationError as exc:
            return JSONResponse(exc.errors, status_code=400)
        return JSONResponse(public(sku), status_code=201)

    def _list(self, request: Request) -> Response:
        params = request.query_params
        customer_id: int | None = None
        if params.get("customer_id"):
            try:
                customer_id = int(params["customer_id"])
            except ValueError:
                return JSONResponse({"customer_id": ["Enter a number."]}, status_code=400)
        matches = self.skus.find(params.get("external_id") or None, customer_id)
        size = min(_positive_int(params.get("page_size")) or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        page = _positive_int(params.get("page", "1"))
        pages = max(1, math.ceil(len(matches) / size))
        if page is None or page > pages:
            return JSONResponse(INVALID_PAGE, status_code=404)
        previous = None
        if page == 2:
            previous = str(request.url.remove_query_params("page"))
        elif page > 2:
            previous = str(request.url.include_query_params(page=page - 1))
        following = str(request.url.include_query_params(page=page + 1)) if page < pages else None
        results = [public(sku) for sku in matches[(page - 1) * size : page * size]]
        return JSONResponse(
            {"count": len(matches), "next": following, "previous": previous, "results": results}
        )

    async def sku_detail(self, request: Request) -> Response:
        """``GET|PUT|PATCH /inventory/skus/{id}/``. Like DRF's generic views, the list's
        filters (``external_id``, ``customer_id``) apply to the object too: a SKU that
        does not match them is not found, so ``PATCH .../5/?external_id=X`` is
        conditional on SKU 5 still being X's."""
        if not self._authenticated(request):
            return JSONResponse(INVALID_TOKEN, status_code=401)
        sku = self.skus.get(int(request.path_params["id"]))
        params = request.query_params
        if sku is None or not _matches(sku, params.get("external_id"), params.get("customer_id")):
            return JSONResponse(NOT_FOUND, status_code=404)
        if request.method == "GET":
            return JSONResponse(public(sku))
        try:
            fields = validate(await self._body(request), partial=request.method == "PATCH")
            if refusal := rejected(self.faults, fields.get("external_id", sku["external_id"])):
                return JSONResponse({"external_id": [refusal[1]]}, status_code=refusal[0])
            sku = self.skus.update(sku, fields)
        except BodyError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
        except ValidationError as exc:
            return JSONResponse(exc.errors, status_code=400)
        return JSONResponse(public(sku))

    async def admin_skus(self, request: Request) -> Response:
        """``GET /_admin/skus[?stored_since=T]``: every stored SKU by id (those stored
        at or after T), with ``_stored_at``."""
        skus = stored_since(request, self.skus.all())
        if skus is None:
            return JSONResponse(BAD_STORED_SINCE, status_code=400)
        return JSONResponse(skus)


def create_app(users: dict[str, str]) -> Starlette:
    """The Kong simulator as a Starlette app; ``users`` maps username to password."""
    sim = KongSimulator(users)
    routes = [
        Route("/auth/token/login/", sim.login, methods=["POST"]),
        Route("/inventory/skus/", sim.skus_collection, methods=["GET", "POST"]),
        Route("/inventory/skus/{id:int}/", sim.sku_detail, methods=["GET", "PUT", "PATCH"]),
        Route("/_admin/skus", sim.admin_skus, methods=["GET"]),
        Route("/_admin/stats", sim.admin_stats, methods=["GET"]),
        Route("/_admin/reset", sim.admin_reset, methods=["POST"]),
    ]
    return simulator_app(sim, routes, sim.stats, sim.faults, target_answer(json_error))
