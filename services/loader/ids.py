"""The target's id of each product this loader writes, kept on the compacted
`loader.target-ids.v1` (key `<tenant>/<sku>`, value `TargetId`) so that an update costs
one call also after a restart or a rebalance.

The topic is keyed like the canonical topic and has as many partitions, so canonical
partition p's ids are on partition p here (the same librdkafka partitioner writes both):
when partitions are assigned, their ids are read back before any of their records is
handled; when they are revoked, their ids are forgotten. If the two topics' partition
counts differ, every partition is read back (more memory, same result).

An id is a hint, never a fact (the target may have lost its data and handed the same ids
to other products): it is passed to the target, which updates by it only where that can
change nothing but this product's record (services/targets/rest.py). An id stored for
another target instance (`<type> <base_url>`) is ignored. Restoring is best effort: a
failure costs calls (products are created first, then looked up), never correctness.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from services.common import health, topics
from services.common.errors import RetriableError
from services.common.records import OutRecord
from services.common.scan import partitions, reader, scan, watermarks
from services.common.serde import DecodeError, Serde
from services.common.settings import KafkaSettings
from services.common.tenants import split_key

log = logging.getLogger(__name__)

SCHEMA = "TargetId"
PROBLEM = "target-ids"


class TargetIds:
    def __init__(
        self, kafka: KafkaSettings | None, serde: Serde, identities: dict[str, str]
    ) -> None:
        """`identities`: each tenant's target instance (`TargetSettings.identity`).
        Without `kafka`, ids are kept in memory only."""
        self.kafka = kafka
        self.serde = serde
        self.identities = identities
        self.topic = kafka.topic(topics.TARGET_IDS) if kafka else ""
        self.persist = kafka is not None
        # canonical partition (None: all, read back unaligned) -> tenant -> sku -> id.
        # Nested rather than keyed by (tenant, sku): each tenant's name is held once, not
        # once per product, and a revoked partition goes whole: ~140 bytes per product
        # instead of ~320 (300,000 products: ~40 MB instead of ~100).
        self._ids: dict[int | None, dict[str, dict[str, str]]] = {}
        self.restored = 0
        self.ignored = 0

    def __len__(self) -> int:
        return sum(len(skus) for held in self._ids.values() for skus in held.values())

    def known(self, tenant: str, sku: str) -> str | None:
        for held in self._ids.values():  # (a product's id is kept under one partition)
            found = held.get(tenant, {}).get(sku)
            if found is not None:
                return found
        return None

    def forget(self, tenant: str) -> None:
        """Drop the tenant's ids (its target is another instance now)."""
        for held in self._ids.values():
            held.pop(tenant, None)

    def learned(
        self, tenant: str, sku: str, partition: int, target_id: str | None
    ) -> OutRecord | None:
        """Note the target's id of a product just written (None: the target holds no
        such product); the record that stores the change, if anything changed."""
        before = self.known(tenant, sku)
        self._drop(tenant, sku)
        if target_id is not None:
            self._keep(partition, tenant, sku, target_id)
        if target_id == before or not self.persist:
            return None
        key = f"{tenant}/{sku}".encode()
        if target_id is None:
            return OutRecord(self.topic, key, None)  # a tombstone: forget it
        value = {
            "tenant": tenant,
            "sku": sku,
            "target": self.identities[tenant],
            "target_id": target_id,
            "written_at": datetime.now(UTC),
        }
        return OutRecord(self.topic, key, self.serde.encode(SCHEMA, value))

    def _keep(self, partition: int | None, tenant: str, sku: str, target_id: str) -> None:
        self._ids.setdefault(partition, {}).setdefault(tenant, {})[sku] = target_id

    def _drop(self, tenant: str, sku: str) -> None:
        for held in self._ids.values():
            skus = held.get(tenant)
            if skus is not None:
                skus.pop(sku, None)

    # -- rebalances ---------------------------------------------------------------------

    def revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._ids.pop(tp.partition, None)

    def assigned(self, assigned: list[TopicPartition]) -> None:
        """Read back the ids of newly assigned canonical partitions. Never raises: a
        failure only costs calls."""
        if not self.persist or not assigned or self.kafka is None:
            return
        try:
            self._restore(self.kafka, assigned)
        except (RetriableError, KafkaException) as exc:
            log.warning("target ids not restored (products cost more calls): %s", exc)

    def _restore(self, kafka: KafkaSettings, assigned: list[TopicPartition]) -> None:
        consumer = reader(kafka)
        try:
            mine = sorted({tp.partition for tp in assigned})
            canonical = len(partitions(consumer, assigned[0].topic))
            if self.topic not in consumer.list_topics(timeout=30).topics:
                self._missing()
                return
            held = partitions(consumer, self.topic)
            aligned = len(held) == canonical
            if not aligned:
                log.warning(
                    "%s has %d partitions, %s %d: reading all of it back",
                    self.topic,
                    len(held),
                    assigned[0].topic,
                    canonical,
                )
            todo = mine if aligned else held
            end = {p: watermarks(consumer, self.topic, p)[1] for p in todo if p in held}
            before = self.restored
            for msg in scan(consumer, self.topic, end=end):
                self._take(msg.key(), msg.value(), msg.partition() if aligned else None)
        finally:
            consumer.close()
        log.info(
            "target ids: %d restored for partitions %s (%d known)",
            self.restored - before,
            mine,
            len(self),
        )

    def _take(self, key: bytes | None, value: bytes | None, partition: int | None) -> None:
        tenant, sku = split_key(key)
        if value is None:
            self._drop(tenant, sku)
            return
        try:
            stored: dict[str, Any] = self.serde.decode_as(SCHEMA, value)
        except DecodeError:
            self.ignored += 1
            return
        if (stored["tenant"], stored["sku"]) != (tenant, sku) or self.identities.get(
            tenant
        ) != stored["target"]:
            self.ignored += 1  # another target instance's, or not what its key says
            self._drop(tenant, sku)
            return
        self._drop(tenant, sku)
        self._keep(partition, tenant, sku, stored["target_id"])
        self.restored += 1

    def _missing(self) -> None:
        self.persist = False
        message = (
            f"topic {self.topic} does not exist: target ids are not kept (run "
            "`topics create`, safe to repeat, then restart the loader)"
        )
        log.error(message)
        health.current().report(PROBLEM, message)
