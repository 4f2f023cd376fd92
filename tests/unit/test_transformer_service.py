"""The transformer's step: a RawItem record in, a CanonicalProduct record out."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest

from services.common.errors import SkippableError, UnknownTenant
from services.common.runloop import per_record
from services.common.serde import DecodeError, default_serde
from services.extractor.rows import fingerprint
from services.sources.siesa.rows import normalize
from services.transformer.compiler import compile_mapping
from services.transformer.mapping import Mapping, MappingError
from services.transformer.service import Transformer
from tests import ROOT
from tests.unit.fakes import FakeMessage

SERDE = default_serde()
DEFAULT = compile_mapping(ROOT / "mappings" / "siesa-items.yaml")
consumed = partial(FakeMessage, _key=b"acme/x")
# The raw item's trace (W3C), and the extractor's span that wrote it.
TRACE_1 = "4bf92f3577b34da6a3ce929d0e0e4736"
EXTRACTED_1 = f"00-{TRACE_1}-00f067aa0ba902b7-00"


def raw_item(tenant: str = "acme", op: str = "UPSERT", **columns: Any) -> dict[str, Any]:
    row = normalize(
        {
            "f120_referencia": "SHP-ACD-400  ",
            "f120_descripcion": 'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML',
            "f120_descripcion_comercial": "Shampoo & Acondicionador Brillo",
            "f120_id_grupo": 20,
            "f120_codigo_barras": "7701234000028",
            "f120_unidad_medida": "UN   ",
            "f120_ind_estado": 1,
            "f120_peso": 0.45,
            "f120_volumen": 0.0004,
            **columns,
        }
    )
    return {
        "tenant": tenant,
        "source_system": "siesa",
        "origin": {"company": "8585", "consulta": "API_v2_Items"},
        "key": "SHP-ACD-400",
        "row": row if op == "UPSERT" else {"f120_referencia": "SHP-ACD-400"},
        "fingerprint": fingerprint(row) if op == "UPSERT" else "",
        "op": op,
        "sync_id": "sync-1",
        "extracted_at": 1_700_000_000_000,
        "trace_id": TRACE_1,
    }


def message(item: dict[str, Any], offset: int = 0) -> FakeMessage:
    """The record the extractor writes for `item`: keyed `<tenant>/<key>`."""
    key = f"{item['tenant']}/{item['key']}".encode()
    return consumed(
        _key=key,
        _value=SERDE.encode("RawItem", item),
        _offset=offset,
        _headers=[("trace_id", TRACE_1.encode()), ("traceparent", EXTRACTED_1.encode())],
    )


def transformer(mappings: dict[str, Mapping] | None = None) -> Transformer:
    return Transformer(serde=SERDE, mappings=mappings or {"acme": DEFAULT}, out_topic="canon")


def test_a_raw_item_becomes_one_canonical_product_keyed_by_tenant_and_sku() -> None:
    item = raw_item()

    (out,) = transformer().handle(message(item))  # type: ignore[arg-type]

    assert out.topic == "canon"
    assert out.key == b"acme/SHP-ACD-400"
    headers = dict(out.headers)
    # The product's trace goes on, in a new span: the transformer's.
    traceparent = headers.pop("traceparent").decode()
    assert traceparent.startswith(f"00-{TRACE_1}-")
    assert traceparent != EXTRACTED_1
    assert headers == {
        "tenant": b"acme",
        "trace_id": TRACE_1.encode(),
        "sync_id": b"sync-1",
        "mapping.name": b"siesa-items",
        "mapping.version": b"2",
        # When the extractor saw the change (epoch ms), for the freshness metric.
        "extracted_at": b"1700000000000",
    }
    assert SERDE.decode_as("CanonicalProduct", out.value) == {
        "tenant": "acme",
        "sku": "SHP-ACD-400",
        "name": 'SHAMPOO & ACONDICIONADOR "BRILLO" 400ML',
        "display_name": "Shampoo & Acondicionador Brillo",
        "reference": "SHP-ACD-400",
        "group_code": "20",
        "barcode": "7701234000028",
        "barcode_type": "EAN13",
        "unit": "UNIT",
        "is_active": True,
        "weight_kg": 0.45,
        "volume_m3": 0.0004,
        "attributes": {},
        "op": "UPSERT",
        "mapping_name": "siesa-items",
        "mapping_version": "2",
        "sync_id": "sync-1",
        "trace_id": TRACE_1,
        "source_fingerprint": item["fingerprint"],
    }


def test_a_delete_becomes_an_inactive_product_with_only_its_key() -> None:
    (out,) = transformer().handle(message(raw_item(op="DELETE")))  # type: ignore[arg-type]

    product = SERDE.decode_as("CanonicalProduct", out.value)
    assert out.key == b"acme/SHP-ACD-400"
    assert product["op"] == "DELETE"
    assert product["sku"] == "SHP-ACD-400"
    assert product["is_active"] is False
    assert product["barcode"] is None


def test_a_delete_gets_its_sku_through_the_same_rule_as_an_upsert(tmp_path: Path) -> None:
    lower = tmp_path / "lower.yaml"
    lower.write_text(
        "name: lower\nversion: '1'\nfields:\n"
        "  sku: {source: f120_referencia, text: [lower]}\n"
        "  name: {source: f120_descripcion}\n"
    )
    mappings = {"acme": compile_mapping(lower)}
    upsert = raw_item()
    delete = {**raw_item(op="DELETE"), "row": {"f120_referencia": "SHP-ACD-400"}}

    (created,) = transformer(mappings).handle(message(upsert))  # type: ignore[arg-type]
    (deleted,) = transformer(mappings).handle(message(delete))  # type: ignore[arg-type]

    assert created.key == deleted.key == b"acme/shp-acd-400"
    assert SERDE.decode_as("CanonicalProduct", deleted.value)["sku"] == "shp-acd-400"


def test_each_tenant_gets_its_own_mapping(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(
        "name: other\nversion: '7'\nfields:\n"
        "  sku: {source: f120_referencia, required: true}\n"
        "  name: {source: f120_descripcion_comercial}\n"
    )
    mappings = {"acme": DEFAULT, "beta": compile_mapping(other)}

    (out,) = transformer(mappings).handle(message(raw_item(tenant="beta")))  # type: ignore[arg-type]

    product = SERDE.decode_as("CanonicalProduct", out.value)
    assert out.key == b"beta/SHP-ACD-400"
    assert (product["mapping_name"], product["mapping_version"]) == ("other", "7")
    assert product["name"] == "Shampoo & Acondicionador Brillo"
    assert product["barcode"] is None  # not mapped by this tenant


def test_an_unknown_tenant_is_skippable_and_named() -> None:
    with pytest.raises(UnknownTenant) as caught:
        transformer().handle(message(raw_item(tenant="ghost")))  # type: ignore[arg-type]

    assert isinstance(caught.value, SkippableError)
    assert caught.value.tenant == "ghost"


def test_a_mapping_failure_names_the_tenant() -> None:
    with pytest.raises(MappingError) as caught:
        transformer().handle(message(raw_item(f120_descripcion="   ")))  # type: ignore[arg-type]

    assert caught.value.tenant == "acme"
    assert caught.value.message.startswith("tenant acme: item SHP-ACD-400: field name:")


def test_an_unreadable_record_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        transformer().handle(consumed(_value=b"{not avro}"))  # type: ignore[arg-type]


def test_poison_records_fail_alone_in_a_batch() -> None:
    batch = [
        message(raw_item(), 1),
        consumed(_value=b"garbage", _offset=2),
        message(raw_item(tenant="ghost"), 3),
        message(raw_item(f120_ind_estado="quizas"), 4),
        message(raw_item(op="DELETE"), 5),
    ]

    result = per_record(transformer().handle)(batch)  # type: ignore[arg-type]

    assert [out.key for out in result.outputs] == [b"acme/SHP-ACD-400", b"acme/SHP-ACD-400"]
    assert [(m.offset(), e.error_class) for m, e in result.failures] == [
        (2, "deserialization"),
        (3, "unknown_tenant"),
        (4, "mapping"),
    ]


def test_an_output_that_does_not_fit_the_schema_is_skippable(tmp_path: Path) -> None:
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        "fields:\n  sku: {source: f120_referencia}\n  name: {source: f120_descripcion}\n"
    )
    mappings = {"acme": compile_mapping(loose)}

    with pytest.raises(SkippableError):
        transformer(mappings).handle(message(raw_item(f120_referencia=None)))  # type: ignore[arg-type]
