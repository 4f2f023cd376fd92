"""WMS simulator: token login and the products API (behind an API gateway) plus an admin
API.

Every non-admin route but the login needs ``Authorization: <scheme> <token>`` (scheme
``Bearer`` unless configured) of a token this process issued. Products live in a
`ProductStore`. Errors are ``{"message": ...}`` (422 adds ``errors`` per field).
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.stats import RequestStats
from simulators.target_admin import BAD_STORED_SINCE, TargetAdmin, stored_since
from simulators.target_faults import rejected, target_answer, target_faults
from simulators.web import BodyError, read_json, simulator_app
from simulators.wms_products import Invalid, ProductStore, public, summary, validate

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
UNAUTHORIZED = {"message": "Unauthorized"}
NOT_FOUND = {"message": "Product not found"}


def wms_error(status: int, headers: dict[str, str], reason: str) -> Response:
    """Injected faults answer like the gateway: ``{"message": reason}``."""
    return JSONResponse({"message": reason}, status_code=status, headers=headers)


def _jwt(username: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    header = part({"alg": "HS256", "typ": "JWT"})
    claims = part({"username": username, "iat": int(time.time())})
    return f"{header}.{claims}.{secrets.token_urlsafe(32)}"


class WmsSimulator(TargetAdmin):
    """The simulator's state (users, issued tokens, products, stats) and endpoints."""

    store_name = "products"

    def __init__(self, users: dict[str, str], auth_scheme: str = "Bearer") -> None:
        self._users = dict(users)
        self.auth_scheme = auth_scheme
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (username, issued at)
        self.products = ProductStore()
        self.stats = RequestStats()
        self.faults = target_faults()

    def _user(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        issued = self._tokens.get(token.strip())
        if (
            scheme.lower() != self.auth_scheme.lower()
            or issued is None
            or self.faults.token_expired(issued[1])
        ):
            return None
        return issued[0]

    async def login(self, request: Request) -> Response:
        """``POST /auth`` ``{"username", "password"}`` → 200 ``{"token", "attributes_user"}``."""
        try:
            body = await read_json(request)
        except BodyError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        if not self._password_ok(username, password):
            logger.info("login refused")
            return JSONResponse({"message": "Incorrect username or password."}, status_code=401)
        assert isinstance(username, str)  # noqa: S101 - checked above
        token = _jwt(username)
        self._tokens[token] = (username, time.monotonic())
        return JSONResponse({"token": token, "attributes_user": [{"username": username}]})

    async def products_collection(self, request: Request) -> Response:
        """``GET|POST /products``."""
        user = self._user(request)
        if user is None:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        if request.method == "GET":
            return self._list(request)
        fields = await self._write(request, partial=False)
        if isinstance(fields, Response):
            return fields
        try:
            product = self.products.create(fields, user)
        except KeyError:
            return self._duplicate(fields["external_id"])
        return JSONResponse(public(product))

    def _duplicate(self, external_id: str) -> Response:
        message = f"product with external_id {external_id} already exists"
        return JSONResponse({"message": message}, status_code=400)

    def _list(self, request: Request) -> Response:
        params = request.query_params
        try:
            limit = min(int(params.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        except ValueError:
            return JSONResponse({"message": "limit must be a number"}, status_code=400)
        if limit < 1:
            return JSONResponse({"message": "limit must be positive"}, status_code=400)
        if "external_id__eq" in params:
            found = self.products.by_external_id(params["external_id__eq"])
            matches = [found] if found else []
        else:
            matches = self.products.all()
        statuses = params["status__in"].split(",") if "status__in" in params else None
        search = params.get("search", "").lower()
        matches = [
            p
            for p in matches
            if ("barcode__eq" not in params or p["barcode"] == params["barcode__eq"])
            and ("status__eq" not in params or p["status"] == params["status__eq"])
            and (statuses is None or p["status"] in statuses)
            and (not search or search in p["name"].lower())
        ]
        after = params.get("last_evaluated_key_id")
        if after:
            ids = [p["id"] for p in matches]
            matches = matches[ids.index(after) + 1 :] if after in ids else []
        page = matches[:limit]
        more = len(matches) > limit
        return JSONResponse(
            {
                "results": [summary(p) for p in page],
                "count": len(page),
                "warnings": [],
                "limit": limit,
                "last_evaluated_key_id": page[-1]["id"] if more else None,
            }
        )

    async def _write(self, request: Request, *, partial: bool) -> dict[str, Any] | Response:
        """A write's validated fields, or the answer refusing it (400, 422, a fault)."""
        try:
            fields = validate(await read_json(request), partial=partial)
        except BodyError as exc:
            return JSONResponse({"message": str(exc)}, status_code=400)
        except Invalid as exc:
            return JSONResponse({"message": "Validation error", "errors": exc.errors}, 422)
        refusal = rejected(self.faults, fields["external_id"])
        if refusal:
            return JSONResponse({"message": refusal[1]}, status_code=refusal[0])
        return fields

    async def product_detail(self, request: Request) -> Response:
        """``GET|PATCH /products/{id}``; a PATCH body must carry ``external_id``."""
        user = self._user(request)
        if user is None:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        product = self.products.get(request.path_params["id"])
        if product is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        if request.method == "GET":
            return JSONResponse(public(product))
        fields = await self._write(request, partial=True)
        if isinstance(fields, Response):
            return fields
        try:
            product = self.products.update(product, fields, user)
        except KeyError:
            return self._duplicate(fields["external_id"])
        return JSONResponse(public(product))

    async def admin_products(self, request: Request) -> Response:
        """``GET /_admin/products[?stored_since=T]``: every stored product (those stored
        at or after T), with ``_stored_at``."""
        products = stored_since(request, self.products.all())
        if products is None:
            return JSONResponse(BAD_STORED_SINCE, status_code=400)
        return JSONResponse(products)


def create_app(users: dict[str, str], auth_scheme: str = "Bearer") -> Starlette:
    """The WMS simulator as a Starlette app; ``users`` maps username to password."""
    sim = WmsSimulator(users, auth_scheme)
    routes = [
        Route("/auth", sim.login, methods=["POST"]),
        Route("/products", sim.products_collection, methods=["GET", "POST"]),
        Route("/products/{id}", sim.product_detail, methods=["GET", "PATCH"]),
        Route("/_admin/products", sim.admin_products, methods=["GET"]),
        Route("/_admin/stats", sim.admin_stats, methods=["GET"]),
        Route("/_admin/reset", sim.admin_reset, methods=["POST"]),
    ]
    return simulator_app(sim, routes, sim.stats, sim.faults, target_answer(wms_error))
