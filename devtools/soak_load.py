"""The soak's tenants and the load it puts on their Siesa catalogues: edits, new items,
deleted items, and edits of the items their targets refuse on purpose."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devtools.stack import Stack
from simulators.catalogue import with_check_digit


@dataclass
class Tenant:
    """One tenant of the soak and what the load did to its Siesa catalogue."""

    id: str
    target: str  # kong | wms
    company: int
    rejecting: int  # how many of its items the target refuses for good
    rejected: list[str] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # live, by external id
    deleted: set[str] = field(default_factory=set)
    edits: int = 0
    new: int = 0
    rejected_edits: int = 0

    def url(self, stack: Stack) -> str:
        return stack.kong_url if self.target == "kong" else stack.wms_url

    def held(self, stack: Stack) -> list[dict[str, Any]]:
        return stack.held(self.target)

    def held_count(self, stack: Stack) -> int:
        return int(
            stack.sim_stats(self.url(stack))["skus" if self.target == "kong" else "products"]
        )


@dataclass
class Load:
    """Changes to the tenants' catalogues in the Siesa simulator, remembered per tenant."""

    stack: Stack

    def edit(self, tenant: Tenant, count: int, tick: int) -> None:
        live = [r for r in sorted(tenant.rows) if r not in tenant.rejected]
        rows = []
        for i in range(count):
            ref = live[(tick * 7919 + i * 104729) % len(live)]
            rows.append(changed(tenant.rows[ref], tenant.edits + i))
        tenant.edits += len(rows)
        self._upsert(tenant, rows)

    def edit_rejected(self, tenant: Tenant) -> None:
        rows = [changed(tenant.rows[ref], tenant.rejected_edits) for ref in tenant.rejected]
        tenant.rejected_edits += len(rows)
        self._upsert(tenant, rows)

    def add_item(self, tenant: Tenant) -> None:
        template = next(iter(tenant.rows.values()))
        tenant.new += 1
        ref = f"SOAK-{tenant.company}-{tenant.new:05d}"
        row = {k: v for k, v in template.items() if k not in ("f120_rowid",)}
        row.update(f120_referencia=ref, f120_id_item=900_000 + tenant.new)
        row["f120_descripcion"] = f"ARTICULO NUEVO DEL SOAK {tenant.new}"
        # A valid EAN-13 (an invalid check digit is not an EAN: Kong keeps it elsewhere).
        row["f120_codigo_barras"] = with_check_digit(f"77{tenant.company:05d}{tenant.new:05d}")
        self._upsert(tenant, [row])

    def delete_item(self, tenant: Tenant, tick: int) -> None:
        # Only seeded items: a new item deleted before any poll saw it was never held.
        seeded = [
            r for r in sorted(tenant.rows) if r.startswith("SKU-") and r not in tenant.rejected
        ]
        ref = seeded[(tick * 6151) % len(seeded)]
        self.stack.delete_item(tenant.company, ref)
        del tenant.rows[ref]
        tenant.deleted.add(ref)

    def _upsert(self, tenant: Tenant, rows: list[dict[str, Any]]) -> None:
        self.stack.upsert_items(tenant.company, rows)
        for row in rows:
            tenant.rows[row["f120_referencia"].strip()] = row


def changed(row: dict[str, Any], n: int) -> dict[str, Any]:
    """`row` edited for the `n`-th time: a new name, now and then its state and weight."""
    row = dict(row)
    row["f120_descripcion"] = f"{row['f120_descripcion'].split(' SOAK')[0][:150]} SOAK{n}"
    if n % 5 == 0:
        row["f120_ind_estado"] = 1 - row["f120_ind_estado"]
    if n % 3 == 0:
        row["f120_peso"] = round(float(row["f120_peso"] or 0) + 0.25, 3)
    return row
