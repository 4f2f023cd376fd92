"""Kong SKUs as the simulator keeps them: DRF-style validation and the in-memory store."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

Sku = dict[str, Any]
Errors = dict[str, list[str]]

REQUIRED = ("external_id", "name", "type_id", "customer_id")
NULLABLE = (
    "display_name",
    "reference",
    "group_id",
    "group_external_id",
    "ean",
    "upc",
    "isbn",
    "properties",
    "params",
    "photo",
)
DEFAULTS: dict[str, Any] = {field: None for field in NULLABLE} | {"is_active": True, "filter": 1}
READ_ONLY = ("id", "gtin_code", "company_prefix", "serial_count", "created", "modified")
STORED_AT = "_stored_at"  # admin-only: time.time() of the last create/update

REQUIRED_MESSAGE = "This field is required."
DUPLICATE_MESSAGE = "sku with this external id already exists."
_TRUE = {"t", "y", "yes", "true", "on", "1"}
_FALSE = {"f", "n", "no", "false", "off", "0"}
_DECIMAL_ZEROS = re.compile(r"\.0*\s*$")


class ValidationError(ValueError):
    """A DRF-style 400: ``errors`` maps each field (or ``non_field_errors``) to messages."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(f"invalid SKU: {sorted(errors)}")
        self.errors = errors


class FieldError(ValueError):
    """One field's value is invalid; the message is DRF's."""


def _string(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError("Not a valid string.")
    return str(value)


def _required_string(value: Any) -> str:
    text = _string(value)
    if not text.strip():
        raise FieldError("This field may not be blank.")
    return text


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError("A valid integer is required.")
    try:
        return int(_DECIMAL_ZEROS.sub("", str(value)))
    except ValueError as exc:
        raise FieldError("A valid integer is required.") from exc


def _filter(value: Any) -> int:
    number = _integer(value)
    if number < 0:
        raise FieldError("Ensure this value is greater than or equal to 0.")
    if number > 7:
        raise FieldError("Ensure this value is less than or equal to 7.")
    return number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower() if isinstance(value, str | int) else ""
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise FieldError("Must be a valid boolean.")


def _dictionary(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(f'Expected a dictionary of items but got type "{type(value).__name__}".')
    return value


def _any(value: Any) -> Any:
    return value


FIELDS: dict[str, Callable[[Any], Any]] = {
    "external_id": _required_string,
    "name": _required_string,
    "display_name": _string,
    "reference": _string,
    "type_id": _integer,
    "group_id": _integer,
    "group_external_id": _string,
    "customer_id": _integer,
    "is_active": _boolean,
    "filter": _filter,
    "ean": _string,
    "upc": _string,
    "isbn": _string,
    "properties": _dictionary,
    "params": _any,
    "photo": _string,
}


def validate(data: Any, partial: bool) -> dict[str, Any]:
    """The writable fields of ``data``, converted; unknown and read-only fields dropped.

    ``partial`` (PATCH) skips the required-field check. Raises `ValidationError`
    with every problem at once.
    """
    if not isinstance(data, dict):
        message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
        raise ValidationError({"non_field_errors": [message]})
    clean: dict[str, Any] = {}
    errors: Errors = {}
    for field, convert in FIELDS.items():
        if field not in data:
            if not partial and field in REQUIRED:
                errors[field] = [REQUIRED_MESSAGE]
        elif data[field] is None:
            if field in NULLABLE:
                clean[field] = None
            else:
                errors[field] = ["This field may not be null."]
        else:
            try:
                clean[field] = convert(data[field])
            except FieldError as exc:
                errors[field] = [str(exc)]
    if errors:
        raise ValidationError(errors)
    return clean


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _gtin(sku: Sku) -> str | None:
    code = sku.get("ean") or sku.get("upc")
    return code.zfill(14) if isinstance(code, str) and code.isdigit() else None


def public(sku: Sku) -> Sku:
    """The SKU as the API shows it (without the admin-only `STORED_AT`)."""
    return {key: value for key, value in sku.items() if key != STORED_AT}


class SkuStore:
    """SKUs by id (ascending), unique by external_id. Mutations never await."""

    def __init__(self) -> None:
        self._skus: dict[int, Sku] = {}
        self._ids: dict[str, int] = {}
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._skus)

    def get(self, sku_id: int) -> Sku | None:
        """The stored SKU with this id."""
        return self._skus.get(sku_id)

    def all(self) -> list[Sku]:
        """Every stored SKU, by id."""
        return list(self._skus.values())

    def find(self, external_id: str | None = None, customer_id: int | None = None) -> list[Sku]:
        """The SKUs matching every given filter, by id."""
        if external_id is not None:
            sku_id = self._ids.get(external_id)
            candidates = [self._skus[sku_id]] if sku_id is not None else []
        else:
            candidates = self.all()
        return [s for s in candidates if customer_id is None or s["customer_id"] == customer_id]

    def create(self, fields: dict[str, Any]) -> Sku:
        """Store a new SKU from validated ``fields`` (all required ones present)."""
        self._check_unique(fields["external_id"], None)
        created = _now_iso()
        sku: Sku = {"id": self._next_id, **DEFAULTS, **fields}
        sku.update(serial_count=0, company_prefix=None, created=created)
        self._next_id += 1
        self._stamp(sku, created)
        self._skus[sku["id"]] = sku
        self._ids[sku["external_id"]] = sku["id"]
        return sku

    def update(self, sku: Sku, fields: dict[str, Any]) -> Sku:
        """Apply validated ``fields`` to a stored SKU (PUT and PATCH alike)."""
        new_external_id: str = fields.get("external_id") or sku["external_id"]
        self._check_unique(new_external_id, sku["id"])
        del self._ids[sku["external_id"]]
        sku.update(fields)
        self._ids[new_external_id] = sku["id"]
        self._stamp(sku, _now_iso())
        return sku

    def clear(self) -> None:
        """Forget every SKU; ids start again at 1."""
        self._skus.clear()
        self._ids.clear()
        self._next_id = 1

    def _check_unique(self, external_id: str, own_id: int | None) -> None:
        if self._ids.get(external_id, own_id) != own_id:
            raise ValidationError({"external_id": [DUPLICATE_MESSAGE]})

    @staticmethod
    def _stamp(sku: Sku, modified: str) -> None:
        sku["gtin_code"] = _gtin(sku)
        sku["modified"] = modified
        sku[STORED_AT] = time.time()
