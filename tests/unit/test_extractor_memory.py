"""The fingerprint store: what it answers, and what it costs per item (tracemalloc over
100,000 items keyed like Siesa's), the figure memory.py's doc states."""

from __future__ import annotations

import hashlib
import logging
import tracemalloc

from services.extractor.memory import Fingerprints, digest_of

log = logging.getLogger(__name__)

ITEMS = 100_000


def fp(n: int) -> str:
    return hashlib.blake2b(str(n).encode(), digest_size=16).hexdigest()


def test_fingerprints_answer_what_was_stored_and_take_garbage_for_no_fingerprint() -> None:
    store = Fingerprints({"A": fp(1)})
    store["B"] = fp(2)
    store["C"] = "not hex"  # never written by the extractor: re-emit that row, not lose it

    assert store["A"] == fp(1)
    assert store.get("B") == fp(2)
    assert store.get("C") not in (None, fp(3))
    assert store.get("Z") is None
    assert set(store) == {"A", "B", "C"}
    assert store.pop("A") == fp(1)
    assert "A" not in store
    assert store == {"B": fp(2), "C": ""}
    assert digest_of(fp(2).encode()) == bytes.fromhex(fp(2))


def bytes_per_item(build: type[dict[str, str]] | type[Fingerprints]) -> float:
    keys = [f"SKU-7-{n:06d}" for n in range(ITEMS)]
    fps = [fp(n) for n in range(ITEMS)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = build()
        for key, value in zip(keys, fps, strict=True):
            # As a scan stores them: a key and a fingerprint made for this row.
            store["".join(key)] = "".join(value)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(store) == ITEMS
    return (after - before) / ITEMS


def test_the_store_holds_a_fingerprint_in_under_160_bytes_per_item() -> None:
    plain = bytes_per_item(dict)
    packed = bytes_per_item(Fingerprints)
    log.info("fingerprints: %.0f bytes/item (a dict of hex strings: %.0f)", packed, plain)
    assert packed < 160
    # The 16 bytes instead of the 32 hex digits: 148 vs 180 bytes under 3.11, 140 vs
    # 164 under 3.12 (its allocator rounds differently), so a ratio, not a difference.
    assert packed < 0.9 * plain
