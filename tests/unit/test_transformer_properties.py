"""Property: whatever a Siesa row holds (missing keys, wrong types, huge strings,
unicode), the transformer never crashes, and each row ends either as one canonical
product or as one dead letter whose reason names the field."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.common.runloop import UnexpectedError, per_record
from services.common.serde import default_serde
from services.extractor.rows import fingerprint
from services.sources.siesa.rows import normalize
from services.transformer.compiler import compile_mapping
from services.transformer.service import Transformer
from tests import ROOT
from tests.unit.fakes import FakeMessage

SERDE = default_serde()
MAPPINGS = {
    "default": compile_mapping(ROOT / "mappings" / "siesa-items.yaml"),
    # every rule kind: patterns, lookups, dates, integers, expressions, passthrough
    "golden": compile_mapping(ROOT / "tests" / "fixtures" / "mappings" / "golden-base.yaml"),
}
HANDLE = per_record(Transformer(serde=SERDE, mappings=MAPPINGS, out_topic="canon").handle)

# Values of the kinds a Siesa row can carry, right or wrong for the column.
scalars = st.one_of(
    st.none(),
    st.text(),  # any unicode
    st.text(alphabet="0123456789.,-+eE ", max_size=30),  # number-like
    st.sampled_from(["1", "0", "S", "N", "SI", "NO", "true", "false", "UND", "UN", "   "]),
    st.sampled_from(["20241201", "20241301", "20241201153045", "2024-12-01T10:00:00+05:00"]),
    st.sampled_from(["7701234000011", "96385074", "036000291452", "0000000000000"]),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(10_000, 300_000)),  # huge
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),  # wrong types: normalized to JSON text, as the extractor does
    st.dictionaries(st.text(max_size=5), scalars, max_size=2),
)


def mostly(plausible: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value for the column two times in three, else anything."""
    return st.one_of(plausible, plausible, values)


numbers = st.one_of(
    st.floats(min_value=0, max_value=1e6),
    st.sampled_from(["1.234,56", "0,5", "1,234.5", "12", None]),
)
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "f120_referencia": st.from_regex(r"[A-Z0-9][A-Z0-9-]{0,20}", fullmatch=True),
    "f120_descripcion": st.text(min_size=1).filter(str.strip),
    "f120_descripcion_comercial": st.one_of(st.none(), st.text()),
    "f120_id_grupo": st.one_of(st.integers(0, 99), st.none()),
    "f120_codigo_barras": st.one_of(st.none(), st.from_regex(r"\d{8}|\d{12,13}", fullmatch=True)),
    "f120_unidad_medida": st.sampled_from(["UND", "UN", "MT", "KG", "und "]),
    "f120_ind_estado": st.sampled_from([1, 0, "S", "N", "SI", "NO", "true", None]),
    "f120_peso": numbers,
    "f120_peso_g": numbers,
    "f120_volumen": numbers,
    "f120_fecha_actualizacion": st.sampled_from(["20261120093000", "2026-11-20", None]),
    "f120_fecha_creacion": st.sampled_from(["20240101", "2024-02-29T23:59:59", None]),
    "f120_cant_empaque": st.one_of(st.integers(0, 10_000), st.none()),
    "f120_ind_importado": st.sampled_from(["S", "N", None]),
    "custom:color": st.text(max_size=10),
}
required = ("f120_referencia", "f120_descripcion")
rows = st.builds(
    lambda known, extra: {**extra, **known},
    st.fixed_dictionaries(
        {c: mostly(PLAUSIBLE[c]) for c in required},
        optional={c: mostly(s) for c, s in PLAUSIBLE.items() if c not in required},
    ),
    st.dictionaries(st.text(min_size=1, max_size=20), values, max_size=5),  # unknown columns
)


def raw_item(tenant: str, source: dict[str, Any]) -> dict[str, Any]:
    row = normalize(source)
    return {
        "tenant": tenant,
        "source_system": "siesa",
        "origin": {"company": "8585", "consulta": "API_v2_Items"},
        "key": (row.get("f120_referencia") or "?")[:100],
        "row": row,
        "fingerprint": fingerprint(row),
        "op": "UPSERT",
        "sync_id": "s",
        "extracted_at": 0,
        "trace_id": "t",
    }


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(tenant=st.sampled_from(sorted(MAPPINGS)), source=rows)
def test_every_row_ends_as_one_product_or_one_dead_letter_with_a_reason(
    tenant: str, source: dict[str, Any]
) -> None:
    item = raw_item(tenant, source)
    msg = FakeMessage(_key=f"{tenant}/{item['key']}".encode(), _value=SERDE.encode("RawItem", item))

    result = HANDLE([msg])  # type: ignore[list-item]

    assert len(result.outputs) + len(result.failures) == 1
    if result.outputs:
        event("product")
        (out,) = result.outputs
        product = SERDE.decode_as("CanonicalProduct", out.value)
        assert product["sku"].strip()
        assert product["name"].strip()
        assert out.key == f"{tenant}/{product['sku']}".encode()
        assert product["mapping_name"] == MAPPINGS[tenant].name
        if tenant == "default":
            assert product["name"] == item["row"]["f120_descripcion"].strip()
    else:
        ((_, error),) = result.failures
        event(f"dead letter: {error.message.split(' field ')[-1].split(':')[0]}")
        assert not isinstance(error, UnexpectedError), error.message
        assert error.message.startswith(f"tenant {tenant}: "), error.message
        assert " field " in error.message, error.message
        assert len(error.message) < 2000  # a huge value is quoted cut short
        json.dumps(error.message)  # printable as a DLQ header
