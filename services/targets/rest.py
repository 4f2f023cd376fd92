"""The upsert every REST target shares, so an adapter holds only its endpoints and its
field mapping (`RestApi`).

One call per product:
- a product the loader has never written (no remembered id) is created first; when the
  target says it exists already, it is looked up and updated;
- a product with a remembered id is updated by that id, in one call, but only when the
  target guarantees that such an update can change nothing but that product's record
  (`RestApi.safe_update`: the update is conditional on the record still being that
  product's, or the target never hands out an id twice). A 404 then means "not this
  product's (any more)": the product is created. Otherwise the remembered id is only a
  hint: the product is looked up first.
- DELETE inactivates (never deletes), and never creates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from services.targets.base import TargetRejected, UpsertResult
from services.targets.session import TargetSession


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    params: dict[str, str] | None = None


class RestApi(Protocol):
    """A REST target's endpoints and field mapping."""

    @property
    def safe_update(self) -> bool:
        """Whether `update(id, sku)` can only ever change `sku`'s record: then a
        remembered id is used as is."""
        ...

    def payload(self, product: dict[str, Any]) -> dict[str, Any]:
        """The target's body for a canonical product."""
        ...

    def inactive(self, sku: str) -> dict[str, Any]:
        """The body of an update that inactivates `sku`."""
        ...

    def create(self) -> Call: ...

    def lookup(self, sku: str) -> Call: ...

    def found(self, answer: Any, sku: str) -> str | None:
        """`sku`'s id in a look-up's answer, None if it is not there."""
        ...

    def update(self, target_id: str, sku: str) -> Call: ...

    def created_id(self, answer: Any) -> str: ...

    def duplicate(self, response: httpx.Response) -> bool:
        """Whether a create's answer says the product exists already."""
        ...


class RestUpsert:
    def __init__(self, tenant: str, session: TargetSession, api: RestApi) -> None:
        self.tenant = tenant
        self.session = session
        self.api = api

    def upsert(self, product: dict[str, Any], known_id: str | None = None) -> UpsertResult:
        sku = product["sku"]
        if product["op"] == "DELETE":
            return self._inactivate(sku, known_id)
        body = self.api.payload(product)
        if known_id is not None:
            target_id = known_id if self.api.safe_update else self._lookup(sku)
            if target_id is not None and self._update(target_id, sku, body):
                return UpsertResult(sku, "updated", target_id)
        return self._create(sku, body)

    def _create(self, sku: str, body: dict[str, Any]) -> UpsertResult:
        create = self.api.create()
        response = self._call(create, json=body)
        if self.api.duplicate(response):
            # It exists: written before its id was kept, by another loader, or replayed.
            target_id = self._lookup(sku)
            if target_id is not None and self._update(target_id, sku, body):
                return UpsertResult(sku, "updated", target_id)
        self._reject_unless_ok(response, sku, "create")
        return UpsertResult(sku, "created", self.api.created_id(response.json()))

    def _inactivate(self, sku: str, known_id: str | None) -> UpsertResult:
        body = self.api.inactive(sku)
        if known_id is not None and self.api.safe_update and self._update(known_id, sku, body):
            return UpsertResult(sku, "inactivated", known_id)
        target_id = self._lookup(sku)
        if target_id is None or not self._update(target_id, sku, body):
            return UpsertResult(sku, "absent", None)
        return UpsertResult(sku, "inactivated", target_id)

    def _lookup(self, sku: str) -> str | None:
        response = self._call(self.api.lookup(sku))
        self._reject_unless_ok(response, sku, "look up")
        return self.api.found(response.json(), sku)

    def _update(self, target_id: str, sku: str, body: dict[str, Any]) -> bool:
        """Update the record; False when the target has no record `target_id` that is
        this product's (404)."""
        response = self._call(self.api.update(target_id, sku), json=body)
        if response.status_code == 404:
            return False
        self._reject_unless_ok(response, sku, "update")
        return True

    def _call(self, call: Call, **kwargs: Any) -> httpx.Response:
        return self.session.call(call.method, call.path, params=call.params, **kwargs)

    def _reject_unless_ok(self, response: httpx.Response, sku: str, action: str) -> None:
        if response.is_success:
            return
        raise TargetRejected(
            f"tenant {self.tenant}: item {sku}: {self.session.label} refused to {action} it: "
            f"HTTP {response.status_code}: {response.text[:500]}",
            tenant=self.tenant,
        )
