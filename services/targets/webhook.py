"""A generic webhook: each product is POSTed as JSON to one URL, one call per product.

The body is `{"event": "product.upserted" | "product.deleted", "tenant", "trace_id",
"sync_id", "product": {...}}` (the canonical product's fields). Headers:
- `X-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes with the tenant's
  secret (`settings.secret`), so the receiver knows the body is ours and whole;
- `Idempotency-Key: <hex>`: the SHA-256 of the body, the same for every retry and
  redelivery of one version of a product (the body carries its trace id), so a receiver
  that remembers keys applies each version once.

Any `auth` strategy may be added (default none: the signature authenticates). Answers:
2xx is done (201 counted as created, other 2xx as updated); a 404 to a deletion means
the receiver never had the product (absent); a 401 is the tenant's credentials or
secret; other 4xx refuse this record for good; 408/409/429/5xx are retried by the same
policy as every target. The receiver has no ids, so none is kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.secrets import Secret
from services.targets.auth import AuthConfig, NoAuth
from services.targets.base import Plugin, TargetRejected, TargetSettings, UpsertResult
from services.targets.session import TargetSession

HEADER = r"^[A-Za-z0-9-]+$"
PRODUCT_FIELDS = (
    "sku",
    "name",
    "display_name",
    "reference",
    "group_code",
    "barcode",
    "barcode_type",
    "unit",
    "is_active",
    "weight_kg",
    "volume_m3",
    "attributes",
)


class WebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = "/"  # where products are POSTed, on the target's base_url
    secret: Secret  # the HMAC-SHA256 key, one per tenant
    signature_header: str = Field(default="X-Signature", pattern=HEADER)
    idempotency_header: str = Field(default="Idempotency-Key", pattern=HEADER)


class WebhookSettings(TargetSettings):
    label: ClassVar[str] = "webhook"
    answers_json: ClassVar[bool] = False  # a receiver may answer anything with its 2xx

    type: Literal["webhook"]
    auth: AuthConfig = NoAuth(type="none")
    settings: WebhookOptions


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookAdapter:
    def __init__(self, tenant: str, config: WebhookSettings, session: TargetSession) -> None:
        self.tenant = tenant
        self.options = config.settings
        self.session = session

    def close(self) -> None:
        self.session.close()

    def body(self, product: dict[str, Any]) -> bytes:
        deleted = product["op"] == "DELETE"
        event = {
            "event": "product.deleted" if deleted else "product.upserted",
            "tenant": product["tenant"],
            "trace_id": product.get("trace_id"),
            "sync_id": product.get("sync_id"),
            "product": {field: product.get(field) for field in PRODUCT_FIELDS},
        }
        return json.dumps(event, sort_keys=True, ensure_ascii=False).encode()

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        sku, deleted = product["sku"], product["op"] == "DELETE"
        body = self.body(product)
        headers = {
            "Content-Type": "application/json",
            self.options.signature_header: signature(self.options.secret.get().encode(), body),
            self.options.idempotency_header: hashlib.sha256(body).hexdigest(),
        }
        response = self.session.call("POST", self.options.path, headers=headers, content=body)
        if deleted and response.status_code == 404:
            return UpsertResult(sku, "absent", None)
        if not response.is_success:
            raise TargetRejected(
                f"tenant {self.tenant}: item {sku}: the webhook refused it: "
                f"HTTP {response.status_code}: {response.text[:500]}",
                tenant=self.tenant,
            )
        if deleted:
            return UpsertResult(sku, "inactivated", None)
        return UpsertResult(sku, "created" if response.status_code == 201 else "updated", None)


PLUGIN = Plugin(WebhookSettings, WebhookAdapter)
