"""The transformer's per-tenant counts in sync.state.v1 (writer ``transformer-<id>``),
produced in the same transaction as the batch they count."""

from __future__ import annotations

from collections import Counter
from typing import Any

from confluent_kafka import Message

from services.common.runloop import BatchHandler, BatchResult
from services.common.serde import Serde
from services.common.settings import KafkaSettings
from services.common.state import StateWriter
from services.common.tenants import tenant_of_key
from services.common.topics import STATE


class TenantProgress:
    def __init__(self, kafka: KafkaSettings, serde: Serde, writer: str) -> None:
        self.kafka = kafka
        self.states = StateWriter(writer, serde)

    def restore(self, stored: list[dict[str, Any]]) -> None:
        """Carry on from this writer's stored counts (a stable instance id restarted)."""
        self.states.restore(stored)

    def wrap(self, handler: BatchHandler) -> BatchHandler:
        """``handler`` plus one state record per tenant the batch touched. A batch redone
        after a failed transaction is counted again: counts can run slightly high."""
        state_topic = self.kafka.topic(STATE)

        def handle_batch(batch: list[Message]) -> BatchResult:
            result = handler(batch)
            out: Counter[str] = Counter(
                tenant_of_key(r.key) or "" for r in result.outputs if r.topic != state_topic
            )
            failed: Counter[str] = Counter(
                err.tenant or tenant_of_key(msg.key()) or "" for msg, err in result.failures
            )
            for tenant in (set(out) | set(failed)) - {""}:
                state = self.states[tenant]
                state["transformed"] += out[tenant]
                state["dead_lettered"] += failed[tenant]
            result.outputs.extend(self.states.records(self.kafka))
            return result

        return handle_batch
