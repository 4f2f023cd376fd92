"""Webhook receiver simulator: takes products POSTed as JSON (services/targets/webhook.py),
checks their HMAC-SHA256 signature, applies each idempotency key once, and keeps the
latest version of each product; plus the admin API the other target simulators have.

Authentication (``auth``), besides the signature every request needs:
- ``oauth2``: ``POST /oauth/token`` (client credentials, client authenticated by HTTP
  basic or in the form) issues tokens for ``Authorization: Bearer``; ``users`` are the
  clients;
- ``basic``: HTTP basic with one of ``users``;
- ``bearer`` / ``api_key``: a user's password as ``Authorization: Bearer`` /
  ``X-API-Key``;
- ``none``: the signature alone.

Answers: 201 a product it did not hold, 200 one it held; 404 the deletion of one it
never held (kept inactive otherwise: never deleted); 401 bad credentials or signature;
400 a body that is not a product event; the same answer again for a key seen before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators.stats import RequestStats
from simulators.target_admin import TargetAdmin
from simulators.target_faults import rejected, target_faults
from simulators.web import simulator_app

Auth = Literal["oauth2", "basic", "bearer", "api_key", "none"]
PATH = "/products"
OAUTH_PATH = "/oauth/token"
KEYS_KEPT = 200_000  # idempotency keys remembered, newest first


class Products:
    """The latest version of each product, by sku (its external id)."""

    def __init__(self) -> None:
        self._held: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def get(self, sku: str) -> dict[str, Any] | None:
        return self._held.get(sku)

    def put(self, product: dict[str, Any]) -> None:
        self._held[product["sku"]] = {**product, "external_id": product["sku"]}
        self._held[product["sku"]]["_stored_at"] = time.time()

    def all(self) -> list[dict[str, Any]]:
        return list(self._held.values())

    def clear(self) -> None:
        self._held.clear()


class WebhookSimulator(TargetAdmin):
    store_name = "products"

    def __init__(self, secret: str, users: dict[str, str], auth: Auth = "none") -> None:
        self.secret = secret.encode()
        self._users = dict(users)
        self.auth = auth
        self._tokens: dict[str, float] = {}  # issued OAuth2 token -> issued at (monotonic)
        self._answers: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()
        self.products = Products()
        self.stats = RequestStats()
        self.faults = target_faults()

    def _authenticated(self, request: Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        scheme, credentials = scheme.lower(), credentials.strip()
        if self.auth == "oauth2":
            issued = self._tokens.get(credentials) if scheme == "bearer" else None
            return issued is not None and not self.faults.token_expired(issued)
        if self.auth == "basic":
            user, _, password = _basic(credentials) if scheme == "basic" else ("", "", "")
            return self._password_ok(user, password)
        if self.auth == "bearer":
            return scheme == "bearer" and self._known_secret(credentials)
        if self.auth == "api_key":
            return self._known_secret(request.headers.get("X-API-Key", ""))
        return True

    def _known_secret(self, given: str) -> bool:
        return any(secrets.compare_digest(given, p) for p in self._users.values()) and bool(given)

    async def token(self, request: Request) -> Response:
        """``POST /oauth/token`` ``grant_type=client_credentials`` (RFC 6749 §4.4)."""
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client, _, secret = _basic(credentials.strip())
        else:
            client, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if not self._password_ok(client, secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = time.monotonic()
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    async def receive(self, request: Request) -> Response:
        """``POST /products``: one product event."""
        if not self._authenticated(request):
            return JSONResponse({"detail": "not authenticated"}, status_code=401)
        body = await request.body()
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Signature", ""), expected):
            return JSONResponse({"detail": "bad signature"}, status_code=401)
        key = request.headers.get("Idempotency-Key")
        if key and key in self._answers:
            status, answer = self._answers[key]
            return JSONResponse(answer, status_code=status, headers={"Idempotent-Replayed": "true"})
        try:
            event = json.loads(body)
            product, deleted = event["product"], event["event"] == "product.deleted"
            sku = product["sku"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"detail": "not a product event"}, status_code=400)
        if refusal := rejected(self.faults, sku):
            return JSONResponse({"detail": refusal[1]}, status_code=refusal[0])
        status, answer = self._apply(sku, product, deleted)
        if key:
            self._answers[key] = (status, answer)
            while len(self._answers) > KEYS_KEPT:
                self._answers.popitem(last=False)
        return JSONResponse(answer, status_code=status)

    def _apply(
        self, sku: str, product: dict[str, Any], deleted: bool
    ) -> tuple[int, dict[str, Any]]:
        held = self.products.get(sku)
        if deleted:
            if held is None:
                return 404, {"detail": f"no product {sku}"}
            self.products.put({**held, "is_active": False})
            return 200, {"sku": sku, "is_active": False}
        self.products.put(product)
        return (200 if held else 201), {"sku": sku}

    async def admin_products(self, request: Request) -> Response:
        """``GET /_admin/products``: every product held, with ``_stored_at``."""
        return JSONResponse(self.products.all())

    async def admin_reset(self, request: Request) -> Response:
        self._answers.clear()
        return await super().admin_reset(request)


def _basic(credentials: str) -> tuple[str, str, str]:
    try:
        return base64.b64decode(credentials).decode().partition(":")
    except ValueError:
        return "", "", ""


def create_app(secret: str, users: dict[str, str] | None = None, auth: Auth = "none") -> Starlette:
    """The webhook receiver as a Starlette app: ``secret`` checks signatures."""
    sim = WebhookSimulator(secret, users or {}, auth)
    routes = [
        Route(OAUTH_PATH, sim.token, methods=["POST"]),
        Route(PATH, sim.receive, methods=["POST"]),
        Route("/_admin/products", sim.admin_products, methods=["GET"]),
        Route("/_admin/stats", sim.admin_stats, methods=["GET"]),
        Route("/_admin/reset", sim.admin_reset, methods=["POST"]),
    ]
    return simulator_app(sim, routes, sim.stats, sim.faults)
