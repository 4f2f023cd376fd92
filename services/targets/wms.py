"""WMS (microservices behind an API gateway): its settings, endpoints and field mapping;
the upsert itself is the shared REST one (`rest.py`). A vanished item becomes
`status: INACTIVE`, never deleted.

The property keys `weigth` and `hight` are misspelled in the real API: kept as they are
(external-apis.md). A duplicate POST is assumed to answer 400/422 with "already exists"
(*unverified*); the product is then looked up and patched. WMS ids are 32 random hex
digits, never handed out twice, so a remembered id names its product or nothing (404):
updates by it are safe without a condition.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from services.targets.auth import LoginDefaults
from services.targets.base import Plugin, TargetSettings, UpsertResult
from services.targets.rest import Call, RestUpsert
from services.targets.session import TargetSession

BARCODE_TYPE = {"EAN13": "EAN", "EAN8": "EAN", "UPC_A": "UPC"}
# Canonical fields kept in `properties`, under the WMS's own (misspelled) keys.
PROPERTY_KEYS = {"weight_kg": "weigth", "volume_m3": "volume"}
DUPLICATE_STATUSES = (400, 422)


class WmsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reception_type: str = Field(default="GENERAL", min_length=1)
    # The group_type of the product's group.
    group_type: Literal["category", "group", "type", "classification"] = "group"


class WmsSettings(TargetSettings):
    login: ClassVar[LoginDefaults | None] = LoginDefaults(
        path="/auth", answer_field="token", scheme="Bearer"
    )
    label: ClassVar[str] = "WMS"

    type: Literal["wms"]
    settings: WmsOptions = WmsOptions()


class WmsAdapter:
    def __init__(self, tenant: str, config: WmsSettings, session: TargetSession) -> None:
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
            "reference_id": product["reference"] or product["sku"],
            "reception_type": self.options.reception_type,
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
                    "group_type": self.options.group_type,
                }
            ]
        return body

    def inactive(self, sku: str) -> dict[str, Any]:
        return {"external_id": sku, "status": "INACTIVE"}

    # -- the endpoints ----------------------------------------------------------------

    safe_update = True  # ids are random: never handed out twice

    def create(self) -> Call:
        return Call("POST", "/products")

    def lookup(self, sku: str) -> Call:
        return Call("GET", "/products", {"external_id__eq": sku})

    def found(self, answer: Any, sku: str) -> str | None:
        for product in answer.get("results", []) if isinstance(answer, dict) else []:
            if product.get("external_id") == sku:
                return str(product["id"])
        return None

    def update(self, target_id: str, sku: str) -> Call:
        return Call("PATCH", f"/products/{target_id}")

    def created_id(self, answer: Any) -> str:
        return str(answer["id"])

    def duplicate(self, response: httpx.Response) -> bool:
        return response.status_code in DUPLICATE_STATUSES and "already exists" in response.text


PLUGIN = Plugin(WmsSettings, WmsAdapter)
