"""WMS products as the simulator keeps them: validation and the in-memory store."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

Product = dict[str, Any]

STATUSES = ("ACTIVE", "INACTIVE")
BARCODE_TYPES = ("EAN", "UPC")
GROUP_TYPES = ("category", "group", "type", "classification")
STRINGS = (
    "name",
    "external_id",
    "display_name",
    "reference_id",
    "reception_type",
    "barcode",
    "sale_coin",
    "purchase_coin",
    "inventory_unit",
    "presentation",
    "product_image",
)
NUMBERS = ("sale_price", "purchase_price")
REQUIRED = ("name", "external_id")
DEFAULTS: Product = {
    "display_name": None,
    "reference_id": None,
    "reception_type": "GENERAL",
    "barcode": None,
    "barcode_type": None,
    "status": "ACTIVE",
    "sale_price": None,
    "purchase_price": None,
    "sale_coin": None,
    "purchase_coin": None,
    "inventory_unit": "UNIT",
    "presentation": None,
    "product_image": None,
    "properties": {},
    "groups": [],
}
SUMMARY = ("id", "variant_id", "name", "barcode", "status", "external_id")
STORED_AT = "_stored_at"  # admin-only: time.time() of the last create/update


class Invalid(ValueError):
    """A 422: ``errors`` maps each field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(f"invalid product: {sorted(errors)}")
        self.errors = errors


def _check_groups(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(g, dict) for g in value):
        return "must be a list of objects"
    for group in value:
        if not isinstance(group.get("group_external_id"), str):
            return "group_external_id is required"
        if group.get("group_type") not in GROUP_TYPES:
            return f"group_type must be one of {', '.join(GROUP_TYPES)}"
    return None


def _field_error(field: str, value: Any) -> str | None:
    if field in STRINGS:
        if not isinstance(value, str):
            return "must be a string"
        if field in REQUIRED and not value.strip():
            return "must not be empty"
    elif field in NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
    elif field == "status":
        if value not in STATUSES:
            return f"must be one of {', '.join(STATUSES)}"
    elif field == "barcode_type":
        if value not in BARCODE_TYPES:
            return f"must be one of {', '.join(BARCODE_TYPES)}"
    elif field == "properties":
        if not isinstance(value, dict):
            return "must be an object"
    elif field == "groups":
        return _check_groups(value)
    return None


def validate(data: Any, *, partial: bool) -> Product:
    """The known fields of ``data``; unknown ones are dropped. Null clears a field that is
    not required. Raises `Invalid` with every problem at once."""
    if not isinstance(data, dict):
        raise Invalid({"body": "must be a JSON object"})
    errors: dict[str, str] = {}
    required = ("external_id",) if partial else REQUIRED
    for field in required:
        if data.get(field) is None:
            errors[field] = "is required"
    clean: Product = {}
    for field in (*STRINGS, *NUMBERS, "status", "barcode_type", "properties", "groups"):
        if field not in data:
            continue
        value = data[field]
        if value is None:
            if field not in REQUIRED:
                clean[field] = DEFAULTS.get(field)
            continue
        problem = _field_error(field, value)
        if problem:
            errors[field] = problem
        else:
            clean[field] = value
    if errors:
        raise Invalid(errors)
    return clean


def _stamp(product: Product, username: str, *, created: bool) -> None:
    now = datetime.now(UTC)
    iso, epoch = now.isoformat().replace("+00:00", "Z"), int(now.timestamp())
    if created:
        product.update(created=iso, created_unix_epoch=epoch, created_by_username=username)
    product.update(modified=iso, modified_unix_epoch=epoch, modified_by_username=username)
    product["measure_unit"] = product.get("inventory_unit")
    product[STORED_AT] = time.time()


def public(product: Product) -> Product:
    return {key: value for key, value in product.items() if key != STORED_AT}


class ProductStore:
    """Products by id in creation order, unique by external_id. Mutations never await."""

    def __init__(self) -> None:
        self._products: dict[str, Product] = {}
        self._ids: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._products)

    def get(self, product_id: str) -> Product | None:
        return self._products.get(product_id)

    def all(self) -> list[Product]:
        return list(self._products.values())

    def by_external_id(self, external_id: str) -> Product | None:
        product_id = self._ids.get(external_id)
        return self._products[product_id] if product_id else None

    def create(self, fields: Product, username: str) -> Product:
        if fields["external_id"] in self._ids:
            raise KeyError(fields["external_id"])
        product: Product = {
            "id": secrets.token_hex(16),
            "variant_id": secrets.token_hex(16),
            **DEFAULTS,
            **fields,
        }
        _stamp(product, username, created=True)
        self._products[product["id"]] = product
        self._ids[product["external_id"]] = product["id"]
        return product

    def update(self, product: Product, fields: Product, username: str) -> Product:
        new_external_id = fields["external_id"]
        if self._ids.get(new_external_id, product["id"]) != product["id"]:
            raise KeyError(new_external_id)
        del self._ids[product["external_id"]]
        product.update(fields)
        self._ids[new_external_id] = product["id"]
        _stamp(product, username, created=False)
        return product

    def clear(self) -> None:
        self._products.clear()
        self._ids.clear()


def summary(product: Product) -> Product:
    return {key: product.get(key) for key in SUMMARY}
