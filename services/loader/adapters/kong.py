"""Kong (RFID backend, Django REST style): token login, look up by external_id, then
PATCH or POST; a vanished item is inactivated, never deleted (external-apis.md)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx

from services.common.errors import ConfigError, RetriableError
from services.common.http import as_retriable, raise_for_transient, with_retries
from services.common.tenants import Target
from services.loader.adapters.base import TargetRejected, UpsertResult

log = logging.getLogger(__name__)

BARCODE_FIELD = {"EAN13": "ean", "EAN8": "ean", "UPC_A": "upc"}


class KongAdapter:
    def __init__(self, tenant: str, target: Target) -> None:
        self.tenant = tenant
        self.target = target
        self.type_id, self.customer_id = _required_ints(tenant, target.settings)
        self._http = httpx.Client(
            base_url=target.base_url.rstrip("/"),
            timeout=target.timeout_s,
            limits=httpx.Limits(max_connections=target.concurrency * 2),
        )
        self._token: str | None = None
        self._token_lock = threading.Lock()
        self._ids: dict[str, int] = {}  # external_id → Kong id

    def close(self) -> None:
        self._http.close()

    # -- the upsert ---------------------------------------------------------------

    def upsert(self, product: dict[str, Any]) -> UpsertResult:
        sku = product["sku"]
        if product["op"] == "DELETE":
            kong_id = self._lookup(sku)
            if kong_id is None:
                return UpsertResult(sku, "absent", None)
            if not self._patch(kong_id, {"external_id": sku, "is_active": False}):
                return UpsertResult(sku, "absent", None)
            return UpsertResult(sku, "inactivated", str(kong_id))
        payload = self.payload(product)
        kong_id = self._ids.get(sku) or self._lookup(sku)
        if kong_id is not None and self._patch(kong_id, payload):
            return UpsertResult(sku, "updated", str(kong_id))
        response = self._call("POST", "/inventory/skus/", json=payload)
        if response.status_code == 400 and "already exists" in response.text:
            kong_id = self._lookup(sku)  # created meanwhile (e.g. a replayed batch)
            if kong_id is not None and self._patch(kong_id, payload):
                return UpsertResult(sku, "updated", str(kong_id))
        self._reject_unless_ok(response, sku, "create")
        kong_id = int(response.json()["id"])
        self._ids[sku] = kong_id
        return UpsertResult(sku, "created", str(kong_id))

    def payload(self, product: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "external_id": product["sku"],
            "name": product["name"],
            "display_name": product["display_name"] or product["name"],
            "reference": product["reference"] or product["sku"],
            "type_id": self.type_id,
            "customer_id": self.customer_id,
            "is_active": product["is_active"],
        }
        if product["group_code"] is not None:
            body["group_external_id"] = product["group_code"]
        barcode_field = BARCODE_FIELD.get(product["barcode_type"] or "")
        if product["barcode"] and barcode_field:
            body[barcode_field] = product["barcode"]
        properties = dict(product["attributes"])
        for name in ("unit", "weight_kg", "volume_m3"):
            if product[name] is not None:
                properties[name] = product[name]
        if product["barcode"] and not barcode_field:
            properties["barcode"] = product["barcode"]
        if properties:
            body["properties"] = properties
        return body

    # -- calls --------------------------------------------------------------------

    def _lookup(self, sku: str) -> int | None:
        response = self._call(
            "GET",
            "/inventory/skus/",
            params={"external_id": sku, "customer_id": str(self.customer_id)},
        )
        self._reject_unless_ok(response, sku, "look up")
        for found in response.json().get("results", []):
            if found.get("external_id") == sku:
                self._ids[sku] = int(found["id"])
                return int(found["id"])
        self._ids.pop(sku, None)
        return None

    def _patch(self, kong_id: int, payload: dict[str, Any]) -> bool:
        """PATCH the SKU; False when Kong no longer has it (404)."""
        response = self._call("PATCH", f"/inventory/skus/{kong_id}/", json=payload)
        if response.status_code == 404:
            self._ids.pop(payload["external_id"], None)
            return False
        self._reject_unless_ok(response, payload["external_id"], "update")
        return True

    @with_retries(attempts=6)
    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        what = f"tenant {self.tenant}: Kong {method} {path.split('?')[0]}"
        token: str | None = None
        for _attempt in (1, 2):
            token = self._token_for(refused=token)
            try:
                response = self._http.request(
                    method, path, headers={"Authorization": f"Token {token}"}, **kwargs
                )
            except httpx.TransportError as exc:
                raise as_retriable(exc, what) from None
            if response.status_code != 401:
                break
        else:
            # Refused even with a fresh token: the tenant's access, not this record.
            raise RetriableError(f"{what}: HTTP 401 after logging in again", tenant=self.tenant)
        raise_for_transient(response, what)
        return response

    def _token_for(self, *, refused: str | None) -> str:
        """The current token, logging in when there is none or when `refused` (a token
        Kong just answered 401 to) is still the current one: many threads meeting the
        same expired token log in once."""
        with self._token_lock:
            if self._token is None or self._token == refused:
                self._token = self._login()
            return self._token

    def _login(self) -> str:
        what = f"tenant {self.tenant}: Kong login"
        try:
            response = self._http.post(
                "/auth/token/login/",
                json={
                    "username": self.target.username.get(),
                    "password": self.target.password.get(),
                },
            )
        except httpx.TransportError as exc:
            raise as_retriable(exc, what) from None
        raise_for_transient(response, what)
        if response.status_code not in (200, 201):
            # Not this record's fault: the batch waits and is tried again.
            raise RetriableError(
                f"{what}: HTTP {response.status_code}: credentials refused", tenant=self.tenant
            )
        return str(response.json()["auth_token"])

    def _reject_unless_ok(self, response: httpx.Response, sku: str, action: str) -> None:
        if response.is_success:
            return
        raise TargetRejected(
            f"tenant {self.tenant}: item {sku}: Kong refused to {action} it: "
            f"HTTP {response.status_code}: {response.text[:500]}",
            tenant=self.tenant,
        )


def _required_ints(tenant: str, settings: dict[str, Any]) -> tuple[int, int]:
    problems = []
    values: list[int] = []
    for name in ("type_id", "customer_id"):
        value = settings.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            values.append(value)
        else:
            problems.append(f"tenant {tenant}: target.settings.{name}: required, a whole number")
    if problems:
        raise ConfigError(problems)
    return values[0], values[1]
