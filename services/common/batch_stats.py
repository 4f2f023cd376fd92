"""What the run loop's batches did, for `/metrics` and alerts: records in, out and
dead-lettered per tenant (and the time of each tenant's last output); one alert when a
tenant's dead letters since start pass the threshold; the lag of each partition a batch
came from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from services.common import metrics
from services.common.alerts import Alerter
from services.common.errors import SyncError
from services.common.records import OutRecord
from services.common.tenants import tenant_of_key
from services.common.topics import STATE
from services.product import NAME


@dataclass
class BatchStats:
    stage: str
    alerter: Alerter | None = None
    alert_dlq_threshold: int = 100
    _dead_lettered: Counter[str] = field(default_factory=Counter)

    def count(
        self,
        batch: Sequence[Message],
        outputs: Sequence[OutRecord],
        failures: Sequence[tuple[Message, SyncError]],
    ) -> None:
        """Records in, out and dead-lettered per tenant."""
        counts: Counter[tuple[str | None, str]] = Counter()
        for msg in batch:
            counts[tenant_of_key(msg.key()), "in"] += 1
        for out in outputs:
            if not out.topic.endswith(STATE):  # state records are bookkeeping, not output
                counts[tenant_of_key(out.key), "out"] += 1
        for msg, err in failures:
            counts[err.tenant or tenant_of_key(msg.key()), "dead_lettered"] += 1
        for (tenant, outcome), n in counts.items():
            metrics.count_records(self.stage, tenant, outcome, n)
            if outcome == "dead_lettered" and tenant:
                self._alert_on_dead_letters(tenant, n)
            if outcome == "out" and tenant:
                metrics.mark_success(tenant, self.stage)

    def _alert_on_dead_letters(self, tenant: str, n: int) -> None:
        """One alert when a tenant's dead letters (since start) pass the threshold."""
        self._dead_lettered[tenant] += n
        if self.alerter is not None and self._dead_lettered[tenant] >= self.alert_dlq_threshold:
            self.alerter.fire(
                tenant,
                "dlq_growing",
                f"{self._dead_lettered[tenant]} records dead-lettered at the {self.stage} "
                f"stage since start (threshold {self.alert_dlq_threshold}); "
                f"see `{NAME} dlq list --tenant {tenant}`",
            )

    def lag(self, consumer: Consumer, positions: Sequence[TopicPartition]) -> None:
        """Lag per partition at the loop's `positions` after a batch (one past its last
        record, or the partition's end once reached), from the cached high watermarks."""
        for tp in positions:
            try:
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0:
                metrics.CONSUMER_LAG.labels(
                    stage=self.stage, topic=tp.topic, partition=str(tp.partition)
                ).set(max(0, high - tp.offset))
