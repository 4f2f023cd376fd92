"""Which dead letters a redrive or a listing takes: every given filter must match (the
console's stage, time window and selection by coordinates included)."""

from __future__ import annotations

from datetime import UTC, datetime

from services.ops.dlq import DeadLetter, Filters


def letter(partition: int, offset: int, tenant: str, stage: str, failed_at: str) -> DeadLetter:
    headers = {"tenant": tenant, "error.stage": stage, "error.class": "x", "failed_at": failed_at}
    return DeadLetter(partition, offset, b"k", b"v", headers)


LETTERS = [
    letter(0, 1, "acme", "load", "2026-12-01T10:00:00+00:00"),
    letter(0, 2, "acme", "transform", "2026-12-01T11:00:00+00:00"),
    letter(1, 1, "beta", "load", "2026-12-01T12:00:00+00:00"),
]


def chosen(filters: Filters) -> list[str]:
    return [d.marker.decode() for d in LETTERS if filters.match(d)]


def test_each_given_filter_must_match() -> None:
    ten, noon = datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert chosen(Filters()) == ["0/1", "0/2", "1/1"]
    assert chosen(Filters(stage="load")) == ["0/1", "1/1"]
    assert chosen(Filters(since=ten, until=noon)) == ["0/1", "0/2"]  # until is exclusive
    assert chosen(Filters(tenant="acme", only=frozenset({"0/2", "1/1"}))) == ["0/2"]
    assert chosen(Filters(only=frozenset())) == []


def test_a_filter_describes_itself_for_the_audit_trail() -> None:
    filters = Filters(tenant="acme", stage="load", only=frozenset({"0/2", "0/1"}))
    assert filters.describe() == {"tenant": "acme", "stage": "load", "only": ["0/1", "0/2"]}
