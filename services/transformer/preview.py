"""A dry run of a mapping: raw items in, the canonical products and the rejections out,
exactly as the service would make them (same mapping step, same Avro encoding), without
Kafka. Used by `siesa-sync mappings preview` and by the golden tests."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.common.errors import SkippableError
from services.common.serde import Serde, default_serde
from services.transformer.mapping import Mapping
from services.transformer.service import Transformer


@dataclass
class Outcome:
    products: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, str]] = field(default_factory=list)  # key, error_class, reason


def preview(
    items: Iterable[dict[str, Any]], mapping: Mapping, serde: Serde | None = None
) -> Outcome:
    """Each RawItem (as a dict) through `mapping`: a product, or a rejection with the
    reason the DLQ would get."""
    serde = serde or default_serde()
    outcome = Outcome()
    for raw in items:
        try:
            product = Transformer.canonical(raw, mapping)
            # What goes on the topic: the record as the current schema reads it back.
            encoded = serde.encode("CanonicalProduct", product)
            outcome.products.append(serde.decode_as("CanonicalProduct", encoded))
        except SkippableError as exc:
            outcome.rejections.append(
                {"key": raw["key"], "error_class": exc.error_class, "reason": exc.message}
            )
    return outcome
