"""`PartialWriter`: a record written a group of fields at a time is, byte for byte, the
record `Serde.encode` writes, and reads back the same."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.partial import PartialWriter
from services.common.serde import EncodeError, default_serde

SERDE = default_serde()
SHARED = {
    "tenant": "acme",
    "source_system": "siesa",
    "origin": {"company": "8585", "consulta": "API_v2_Items"},
    "sync_id": "s1",
}
GROUPS = [("row",), ("key", "fingerprint", "op", "extracted_at", "trace_id")]
text = st.text(max_size=40)


@given(
    row=st.dictionaries(text, st.none() | text, max_size=20),
    key=text,
    op=st.sampled_from(["UPSERT", "DELETE"]),
    at=st.integers(min_value=0, max_value=253_402_300_799_999),  # up to the year 9999
)
def test_the_parts_joined_are_the_whole_record(
    row: dict[str, str | None], key: str, op: str, at: int
) -> None:
    writer = PartialWriter(SERDE, "RawItem", SHARED, GROUPS)
    rest: dict[str, Any] = {
        "key": key,
        "fingerprint": "f" * 32,
        "op": op,
        "extracted_at": at,
        "trace_id": "t",
    }

    value = writer.join((writer.group(0, {"row": row}), writer.group(1, rest)))

    assert value == SERDE.encode("RawItem", {**SHARED, "row": row, **rest})
    decoded = SERDE.decode_as("RawItem", value)
    assert decoded["row"] == row
    assert decoded["key"] == key
    assert decoded["origin"] == SHARED["origin"]


def test_groups_must_cover_the_fields_in_schema_order() -> None:
    with pytest.raises(ValueError, match="in order"):
        PartialWriter(SERDE, "RawItem", SHARED, [GROUPS[1], GROUPS[0]])
    with pytest.raises(ValueError, match="in order"):
        PartialWriter(SERDE, "RawItem", SHARED, [GROUPS[0]])


def test_a_value_that_does_not_fit_is_an_encode_error() -> None:
    writer = PartialWriter(SERDE, "RawItem", SHARED, GROUPS)

    with pytest.raises(EncodeError, match="RawItem does not fit"):
        writer.group(0, {"row": {"a": 1}})
    with pytest.raises(ValueError, match="2 parts expected"):
        writer.join((b"",))
