"""WMS (microservices behind an API gateway): token login, look up by
`external_id__eq`, then `PATCH /products/{id}` (the body carries `external_id`) or
`POST /products`; a vanished item becomes `status: INACTIVE`, never deleted.

The property keys `weigth` and `hight` are misspelled in the real API: kept as they are
(external-apis.md). A duplicate POST is assumed to answer 400/422 with "already exists"
(*unverified*); the adapter then looks the product up and patches it.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from services.common.errors import ConfigError
from services.common.tenants import Target
from services.loader.adapters.base import TargetRejected, UpsertResult
from services.loader.session import Login, TargetSession

log = logging.getLogger(__name__)

LOGIN = Login(label="WMS", path="/auth", answer_field="token", scheme="Bearer")
BARCODE_TYPE = {"EAN13": "EAN", "EAN8": "EAN", "UPC_A": "UPC"}
GROUP_TYPES = ("category", "group", "type", "classification")
# Canonical fields kept in `properties`, under the WMS's own (misspelled) keys.
PROPERTY_KEYS = {"weight_kg": "weigth", "volume_m3": "volume"}
DUPLICATE_STATUSES = (400, 422)


class WmsAdapter:
    def __init__(self, tenant: str, target: Target) -> None:
        self.tenant = tenant
        self.target = target
        self.reception_type, self.group_type = _settings(tenant, target.settings)
        self.session = TargetSession(tenant, target, LOGIN)
        self._ids: dict[str, str] = {}  # external_id → WMS id

    def close(self) -> None:
        self.session.close()

    # -- the upsert ---------------------------------------------------------------

    def upsert(self, product: dict[str, Any]) -> UpsertResult:
        sku = product["sku"]
        if product["op"] == "DELETE":
            wms_id = self._lookup(sku)
            if wms_id is None or not self._patch(
                wms_id, {"external_id": sku, "status": "INACTIVE"}
            ):
                return UpsertResult(sku, "absent", None)
            return UpsertResult(sku, "inactivated", wms_id)
        payload = self.payload(product)
        wms_id = self._ids.get(sku) or self._lookup(sku)
        if wms_id is not None and self._patch(wms_id, payload):
            return UpsertResult(sku, "updated", wms_id)
        response = self.session.call("POST", "/products", json=payload)
        if response.status_code in DUPLICATE_STATUSES and "already exists" in response.text:
            wms_id = self._lookup(sku)  # created meanwhile (e.g. a replayed batch)
            if wms_id is not None and self._patch(wms_id, payload):
                return UpsertResult(sku, "updated", wms_id)
        self._reject_unless_ok(response, sku, "create")
        wms_id = str(response.json()["id"])
        self._ids[sku] = wms_id
        return UpsertResult(sku, "created", wms_id)

    def payload(self, product: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "external_id": product["sku"],
            "name": product["name"],
            "display_name": product["display_name"] or product["name"],
            "reference_id": product["reference"] or product["sku"],
            "reception_type": self.reception_type,
            "status": "ACTIVE" if product["is_active"] else "INACTIVE",
        }
        if product["unit"]:
            body["inventory_unit"] = product["unit"]
        if product["barcode"]:
            body["barcode"] = product["barcode"]
            barcode_type = BARCODE_TYPE.get(product["barcode_type"] or "")
            if barcode_type:
                body["barcode_type"] = barcode_type
        properties: dict[str, Any] = dict(product["attributes"])
        for name, key in PROPERTY_KEYS.items():
            if product[name] is not None:
                properties[key] = product[name]
        if properties:
            body["properties"] = properties
        if product["group_code"] is not None:
            body["groups"] = [
                {
                    "group_external_id": product["group_code"],
                    "group_name": product["group_code"],
                    "group_parent_id": None,
                    "group_type": self.group_type,
                }
            ]
        return body

    # -- calls --------------------------------------------------------------------

    def _lookup(self, sku: str) -> str | None:
        response = self.session.call("GET", "/products", params={"external_id__eq": sku})
        self._reject_unless_ok(response, sku, "look up")
        for found in response.json().get("results", []):
            if found.get("external_id") == sku:
                self._ids[sku] = str(found["id"])
                return str(found["id"])
        self._ids.pop(sku, None)
        return None

    def _patch(self, wms_id: str, payload: dict[str, Any]) -> bool:
        """PATCH the product; False when the WMS no longer has it (404)."""
        response = self.session.call("PATCH", f"/products/{wms_id}", json=payload)
        if response.status_code == 404:
            self._ids.pop(payload["external_id"], None)
            return False
        self._reject_unless_ok(response, payload["external_id"], "update")
        return True

    def _reject_unless_ok(self, response: httpx.Response, sku: str, action: str) -> None:
        if response.is_success:
            return
        raise TargetRejected(
            f"tenant {self.tenant}: item {sku}: WMS refused to {action} it: "
            f"HTTP {response.status_code}: {response.text[:500]}",
            tenant=self.tenant,
        )


def _settings(tenant: str, settings: dict[str, Any]) -> tuple[str, str]:
    problems = []
    reception_type = settings.get("reception_type", "GENERAL")
    if not isinstance(reception_type, str) or not reception_type:
        problems.append(f"tenant {tenant}: target.settings.reception_type: a non-empty string")
    group_type = settings.get("group_type", "group")
    if group_type not in GROUP_TYPES:
        problems.append(
            f"tenant {tenant}: target.settings.group_type: one of {', '.join(GROUP_TYPES)}"
        )
    if problems:
        raise ConfigError(problems)
    return str(reception_type), str(group_type)
