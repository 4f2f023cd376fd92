"""Kong (RFID backend, Django REST style): its settings, endpoints and field mapping; the
upsert itself is the shared REST one (`rest.py`). A vanished item is inactivated, never
deleted (external-apis.md).

Updates by a remembered id are conditional: `PATCH /inventory/skus/{id}/?external_id=X
&customer_id=C` answers 404 unless SKU `id` is still X's. Django REST framework's generic
views filter the object of a detail route with the same filter backends as the list
("Filtering and object lookups" in its filtering guide), and Kong's list filters on
`external_id` and `customer_id`. *Unverified* for the real Kong: if it ignores them,
set `conditional_update: false` and every update looks the SKU up first (two calls).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, StrictInt

from services.targets.auth import LoginDefaults
from services.targets.base import Plugin, TargetSettings, UpsertResult
from services.targets.rest import Call, RestUpsert
from services.targets.session import TargetSession

BARCODE_FIELD = {"EAN13": "ean", "EAN8": "ean", "UPC_A": "upc"}
SKUS = "/inventory/skus/"


class KongOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type_id: StrictInt
    customer_id: StrictInt
    # How the product's group goes to Kong: `group_external_id` (the group code as is),
    # `group_id` (the code as Kong's numeric group id, when it is one) or `none`.
    group_field: Literal["group_external_id", "group_id", "none"] = "group_external_id"
    # Whether Kong honours the list filters on a detail route (see above).
    conditional_update: bool = True


class KongSettings(TargetSettings):
    login: ClassVar[LoginDefaults | None] = LoginDefaults(
        path="/auth/token/login/", answer_field="auth_token", scheme="Token"
    )
    label: ClassVar[str] = "Kong"

    type: Literal["kong"]
    settings: KongOptions


class KongAdapter:
    def __init__(self, tenant: str, config: KongSettings, session: TargetSession) -> None:
        self.tenant = tenant
        self.options = config.settings
        self.session = session
        self.rest = RestUpsert(tenant, session, self)

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        return self.rest.upsert(product, known_id)

    def close(self) -> None:
        self.session.close()

    # -- the field mapping ------------------------------------------------------------

    def payload(self, product: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "external_id": product["sku"],
            "name": product["name"],
            "display_name": product["display_name"] or product["name"],
            "reference": product["reference"] or product["sku"],
            "type_id": self.options.type_id,
            "customer_id": self.options.customer_id,
            "is_active": product["is_active"],
        }
        group, group_field = product["group_code"], self.options.group_field
        if group is not None and group_field == "group_external_id":
            body["group_external_id"] = group
        elif group is not None and group_field == "group_id" and group.isdigit():
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

    def inactive(self, sku: str) -> dict[str, Any]:
        return {"external_id": sku, "is_active": False}

    # -- the endpoints ----------------------------------------------------------------

    @property
    def safe_update(self) -> bool:
        return self.options.conditional_update

    def _mine(self, sku: str) -> dict[str, str]:
        return {"external_id": sku, "customer_id": str(self.options.customer_id)}

    def create(self) -> Call:
        return Call("POST", SKUS)

    def lookup(self, sku: str) -> Call:
        return Call("GET", SKUS, self._mine(sku))

    def found(self, answer: Any, sku: str) -> str | None:
        for sku_found in answer.get("results", []) if isinstance(answer, dict) else []:
            if sku_found.get("external_id") == sku:
                return str(sku_found["id"])
        return None

    def update(self, target_id: str, sku: str) -> Call:
        condition = self._mine(sku) if self.options.conditional_update else None
        return Call("PATCH", f"{SKUS}{target_id}/", condition)

    def created_id(self, answer: Any) -> str:
        return str(answer["id"])

    def duplicate(self, response: httpx.Response) -> bool:
        return response.status_code == 400 and "already exists" in response.text


PLUGIN = Plugin(KongSettings, KongAdapter)
