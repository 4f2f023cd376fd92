"""Kong (RFID backend, Django REST style): token login, look up by external_id, then
PATCH or POST; a vanished item is inactivated, never deleted (external-apis.md)."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from services.common.errors import ConfigError
from services.common.tenants import Target
from services.loader.adapters.base import TargetRejected, UpsertResult
from services.loader.session import Login, TargetSession

log = logging.getLogger(__name__)

BARCODE_FIELD = {"EAN13": "ean", "EAN8": "ean", "UPC_A": "upc"}


LOGIN = Login(label="Kong", path="/auth/token/login/", answer_field="auth_token", scheme="Token")


class KongAdapter:
    def __init__(self, tenant: str, target: Target) -> None:
        self.tenant = tenant
        self.target = target
        self.type_id, self.customer_id = _required_ints(tenant, target.settings)
        self.group_field = _group_field(tenant, target.settings)
        self.session = TargetSession(tenant, target, LOGIN)
        self._ids: dict[str, int] = {}  # external_id → Kong id

    def close(self) -> None:
        self.session.close()

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
        group = product["group_code"]
        if group is not None and self.group_field == "group_external_id":
            body["group_external_id"] = group
        elif group is not None and self.group_field == "group_id" and group.isdigit():
            body["group_id"] = int(group)
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

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.session.call(method, path, **kwargs)

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


GROUP_FIELDS = ("group_external_id", "group_id", "none")


def _group_field(tenant: str, settings: dict[str, Any]) -> str:
    """How the product's group goes to Kong: `group_external_id` (default, the group
    code as is), `group_id` (the code as Kong's numeric group id) or `none`."""
    value = settings.get("group_field", "group_external_id")
    if value not in GROUP_FIELDS:
        raise ConfigError(
            f"tenant {tenant}: target.settings.group_field: one of {', '.join(GROUP_FIELDS)}"
        )
    return str(value)
