"""The transformer's step: one `RawItem` in, one `CanonicalProduct` out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Message

from services.common import tracing
from services.common.boundary import check_tenant
from services.common.errors import SkippableError, UnknownTenant
from services.common.metrics import EXTRACTED_AT_HEADER
from services.common.records import OutRecord, trace_headers
from services.common.serde import Serde
from services.transformer.mapping import Mapping


def epoch_ms(moment: datetime | int) -> int:
    """A decoded timestamp-millis (a datetime) as milliseconds since the epoch."""
    return moment if isinstance(moment, int) else int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Transformer:
    serde: Serde
    mappings: dict[str, Mapping]  # by tenant id
    out_topic: str

    def handle(self, msg: Message) -> list[OutRecord]:
        raw = self.serde.decode_as("RawItem", msg.value())
        tenant = raw["tenant"]
        check_tenant(msg.key(), tenant)
        mapping = self.mappings.get(tenant)
        if mapping is None:
            raise UnknownTenant(f"tenant {tenant}: not configured here", tenant=tenant)
        product = self.canonical(raw, mapping)
        # The product's trace goes on: its trace id, a span of its own for this step.
        trace = tracing.received(msg, raw["trace_id"]).child()
        product["trace_id"] = trace.trace_id
        headers = [
            *trace_headers(tenant, trace.trace_id, raw["sync_id"]),
            (tracing.TRACEPARENT, trace.traceparent.encode()),
            ("mapping.name", mapping.name.encode()),
            ("mapping.version", mapping.version.encode()),
            # When the change was seen, for the loader's freshness metric.
            (EXTRACTED_AT_HEADER, str(epoch_ms(raw["extracted_at"])).encode()),
        ]
        return [
            OutRecord(
                topic=self.out_topic,
                key=f"{tenant}/{product['sku']}".encode(),
                value=self.serde.encode("CanonicalProduct", product),
                headers=headers,
            )
        ]

    @staticmethod
    def canonical(raw: dict[str, Any], mapping: Mapping) -> dict[str, Any]:
        tenant = raw["tenant"]
        row = raw["row"]
        # What a mapping reads as `@name`: where the source read the row (`origin`), and
        # the RawItem's own text fields (a record of RawItem v1 still has `company` and
        # `consulta` of its own: the serde returns fields the schema dropped).
        meta = {
            **(raw.get("origin") or {}),
            **{name: value for name, value in raw.items() if isinstance(value, str)},
        }
        try:
            if raw["op"] == "DELETE":
                # A vanished item: only its key is known. Its sku goes through the same
                # rule as in an UPSERT, so both land on the same key and target record.
                sku = mapping.apply_field("sku", row, item=raw["key"], meta=meta)
                fields: dict[str, Any] = {"sku": sku, "name": sku, "is_active": False}
            else:
                fields = mapping.apply(row, item=raw["key"], meta=meta)
        except SkippableError as exc:
            exc.tenant = tenant
            exc.message = (
                f"tenant {tenant}: {exc.message} [mapping {mapping.name}@{mapping.version}]"
            )
            raise
        return {
            "display_name": None,
            "reference": None,
            "group_code": None,
            "barcode": None,
            "barcode_type": None,
            "unit": None,
            "is_active": True,
            "weight_kg": None,
            "volume_m3": None,
            "attributes": {},
            **fields,
            "tenant": tenant,
            "op": raw["op"],
            "mapping_name": mapping.name,
            "mapping_version": mapping.version,
            "sync_id": raw["sync_id"],
            "trace_id": raw["trace_id"],
            "source_fingerprint": raw["fingerprint"],
        }
