"""Records written before RawItem v2 (tests/fixtures/records-v1.json, encoded by the
first release's own code) still decode, and map to the products today's records do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.common.packaged import data_dir
from services.common.serde import HEADER_SIZE, Serde, default_serde
from services.extractor import rows
from services.sources.siesa import rows as siesa_rows
from services.transformer.compiler import compile_mapping
from services.transformer.service import Transformer
from tests import ROOT
from tests.unit.fakes import FakeMessage

FIXTURES = ROOT / "tests" / "fixtures"
RECORDS = json.loads((FIXTURES / "records-v1.json").read_text())
PAGE = json.loads((FIXTURES / "siesa-items-page.json").read_text())["detalle"]["Table"]
SERDE = default_serde()
# The first release's schemas, as the current ones of a serde of their own.
V1 = Serde(data_dir("schemas") / "history").current
# Per run, or a hash that may change: never compared.
PER_RUN = ("sync_id", "trace_id", "source_fingerprint")
MAPPINGS = {
    "default": compile_mapping(ROOT / "mappings" / "siesa-items.yaml"),
    # reads `@company` into attributes.company (and every conversion kind)
    "company": compile_mapping(FIXTURES / "mappings" / "golden-base.yaml"),
}


def today(row: dict[str, Any]) -> bytes:
    """The RawItem the extractor writes today for `row` (tenant golden, company 8585)."""
    text = siesa_rows.normalize(row)
    key = siesa_rows.key(text)
    assert key is not None
    item = rows.raw_item(
        tenant="golden",
        source="siesa",
        origin={"company": "8585", "consulta": "API_v2_Items"},
        key=key,
        row=text,
        fingerprint=rows.fingerprint(text),
        op="UPSERT",
        sync_id="today",
        trace_id="0" * 32,
        extracted_at=0,
    )
    return SERDE.encode("RawItem", item)


def product(mapping: str, value: bytes) -> dict[str, Any]:
    transformer = Transformer(SERDE, {"golden": MAPPINGS[mapping]}, "canonical")
    item = SERDE.decode_as("RawItem", value)
    key = f"{item['tenant']}/{item['key']}".encode()  # as the extractor keys it
    (out,) = transformer.handle(FakeMessage(_key=key, _value=value))  # type: ignore[arg-type]
    decoded = SERDE.decode_as("CanonicalProduct", out.value)
    return {k: v for k, v in decoded.items() if k not in PER_RUN}


def test_the_fixtures_are_written_with_the_first_schema_not_todays() -> None:
    for record in RECORDS["raw"]:
        written = bytes.fromhex(record["hex"])[2:HEADER_SIZE]
        assert written == V1["RawItem"].fingerprint
        assert written != SERDE.current["RawItem"].fingerprint


@pytest.mark.parametrize("index", range(len(PAGE)))
def test_an_old_raw_item_decodes_with_its_source_coordinates(index: int) -> None:
    record = RECORDS["raw"][index]

    item = SERDE.decode_as("RawItem", bytes.fromhex(record["hex"]))

    assert f"{item['tenant']}/{item['key']}" == record["key"]
    assert (item["company"], item["consulta"]) == ("8585", "API_v2_Items")  # v1's own fields
    assert item["origin"] == {}  # v2's, at its default
    assert item["row"] == siesa_rows.normalize(PAGE[index])


@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
@pytest.mark.parametrize("index", range(len(PAGE)))
def test_an_old_raw_item_maps_to_the_product_a_new_one_does(mapping: str, index: int) -> None:
    old = bytes.fromhex(RECORDS["raw"][index]["hex"])

    assert product(mapping, old) == product(mapping, today(PAGE[index]))


def test_the_company_of_an_old_record_still_reaches_its_attribute() -> None:
    old = product("company", bytes.fromhex(RECORDS["raw"][0]["hex"]))

    assert old["attributes"]["company"] == "8585"


@pytest.mark.parametrize("index", range(len(RECORDS["canonical"])))
def test_an_old_canonical_product_decodes_as_todays_transformer_makes_it(index: int) -> None:
    record = RECORDS["canonical"][index]

    old = SERDE.decode_as("CanonicalProduct", bytes.fromhex(record["hex"]))

    assert f"{old['tenant']}/{old['sku']}" == record["key"]
    new = product("default", today(RECORDS["rows"][index]))
    assert {k: v for k, v in old.items() if k not in PER_RUN} == new
