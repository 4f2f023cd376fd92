"""Golden file: the fixture Siesa page through `rows.normalize` and the default mapping.

`tests/fixtures/expected-canonical.json` holds the CanonicalProducts that the page
`tests/fixtures/siesa-items-page.json` must become (per-run fields `sync_id` and
`trace_id` left out). To regenerate it after an intended change, run the one command

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_transformer_golden.py

then review the diff (`git diff tests/fixtures/expected-canonical.json`) by eye against
tests/fixtures/expected-kong.json before committing it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from starlette.testclient import TestClient

from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.tenants import Tenant
from services.extractor import rows
from services.extractor.memory import TenantMemory
from services.extractor.scan import Scanner
from services.sources.siesa import rows as siesa_rows
from services.sources.siesa.source import SiesaSource
from services.transformer.compiler import compile_mapping
from services.transformer.service import Transformer
from simulators.siesa import create_app
from tests import ROOT
from tests.unit.fakes import (
    FakeMessage,
    FakeTransactionalProducer,
    on_app,
    set_secrets,
    tenant_config,
)

FIXTURES = ROOT / "tests" / "fixtures"
GOLDEN = FIXTURES / "expected-canonical.json"
PAGE = json.loads((FIXTURES / "siesa-items-page.json").read_text())
ROWS: list[dict[str, Any]] = PAGE["detalle"]["Table"]
TENANT = "golden"
COMPANY = 8585
KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "jwt-token"  # noqa: S105 - a test credential
PER_RUN = ("sync_id", "trace_id")
SERDE = default_serde()
MAPPING = compile_mapping(ROOT / "mappings" / "siesa-items.yaml")


def without_per_run_fields(product: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in product.items() if k not in PER_RUN}


def raw_item(raw: dict[str, Any]) -> dict[str, Any]:
    """The RawItem the extractor's poller emits for one Siesa row."""
    row = siesa_rows.normalize(raw)
    key = rows.row_key(
        row,
        siesa_rows.key(row),
        key_name=siesa_rows.KEY_FIELD,
        tenant=TENANT,
        max_field_length=4000,
    )
    return {
        "tenant": TENANT,
        "source_system": "siesa",
        "origin": {"company": str(COMPANY), "consulta": "API_v2_Items"},
        "key": key,
        "row": row,
        "fingerprint": rows.fingerprint(row),
        "op": "UPSERT",
        "sync_id": "per-run",
        "extracted_at": 0,
        "trace_id": "per-run",
    }


def canonical_page() -> list[dict[str, Any]]:
    return [without_per_run_fields(Transformer.canonical(raw_item(raw), MAPPING)) for raw in ROWS]


def golden_text(products: list[dict[str, Any]]) -> str:
    document = {
        "_comment": "CanonicalProducts for siesa-items-page.json through rows.normalize and "
        "mappings/siesa-items.yaml, sync_id/trace_id left out. Regenerate: "
        "UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_transformer_golden.py",
        "products": products,
    }
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def golden() -> list[dict[str, Any]]:
    products: list[dict[str, Any]] = json.loads(GOLDEN.read_text())["products"]
    return products


def test_the_fixture_page_maps_to_the_golden_file() -> None:
    """Compares the mapped page with the golden file; with UPDATE_GOLDEN=1 in the
    environment it first rewrites the file (the one command to regenerate it:
    `UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_transformer_golden.py`)."""
    products = canonical_page()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(golden_text(products))

    assert GOLDEN.read_text() == golden_text(products)  # the bytes too: sorted, indent 2
    assert products == golden()


def test_the_golden_file_says_what_the_targets_expect() -> None:
    """Facts checked by eye against expected-kong.json / expected-wms.json, kept here so
    that a careless regeneration can't bless a wrong mapping."""
    by_sku = {p["sku"]: p for p in golden()}
    kong = {
        s["external_id"]: s
        for s in json.loads((FIXTURES / "expected-kong.json").read_text())["skus"]
    }

    assert sorted(by_sku) == sorted(kong)
    for sku, expected in kong.items():
        product = by_sku[sku]
        assert product["name"] == expected["name"]
        assert (product["display_name"] or product["name"]) == expected["display_name"]
        assert product["group_code"] == expected["group_external_id"]
        assert product["is_active"] is expected["is_active"]
        assert product["barcode"] == expected.get("ean", expected.get("upc"))
    assert by_sku["CAM-OXF-001"]["barcode_type"] == "EAN13"
    assert by_sku["TUB-PVC-2030"]["barcode_type"] == "UPC_A"
    assert by_sku["TUB-PVC-2030"]["display_name"] == "TUBO PVC 20x30 #2 - SELECT"
    assert by_sku["PAN-DRL-032"]["display_name"] == "PANTALON DRILL CAQUI T32"
    assert by_sku["PAN-DRL-032"]["is_active"] is False
    assert by_sku["PAN-DRL-032"]["barcode_type"] is None
    assert by_sku["SHP-ACD-400"]["reference"] == "SHP-ACD-400"
    assert by_sku["SHP-ACD-400"]["unit"] == "UNIT"
    assert by_sku["TUB-PVC-2030"]["unit"] == "MT"
    assert all(p["tenant"] == TENANT and p["op"] == "UPSERT" for p in by_sku.values())
    assert all(not set(PER_RUN) & set(p) for p in by_sku.values())


# -- the same page through the real pieces: simulator → client → poller → transformer --


@pytest.fixture
def tenant(monkeypatch: pytest.MonkeyPatch) -> Tenant:
    set_secrets(monkeypatch, "G", KEY, TOKEN, "integrator", "pw")
    return Tenant.model_validate(tenant_config(TENANT, env="G", source__company=COMPANY))


def test_the_page_served_by_siesa_reaches_the_same_canonical_products(tenant: Tenant) -> None:
    app = create_app(KEY, TOKEN)
    with TestClient(app) as admin:
        loaded = admin.post(f"/_admin/companies/{COMPANY}/items?keep_dates=true", json=ROWS)
        assert loaded.status_code == 200
    producer = FakeTransactionalProducer()
    scanner = Scanner(
        tenant=tenant,
        source=SiesaSource(tenant.source, tenant=TENANT, http=on_app(app)),
        producer=producer,  # type: ignore[arg-type]
        serde=SERDE,
        kafka=KafkaSettings(),
        memory=TenantMemory(TENANT),
    )
    transformer = Transformer(serde=SERDE, mappings={TENANT: MAPPING}, out_topic="canon")

    scanner.scan("diff")

    (committed,) = producer.transactions
    raw_topic = KafkaSettings().topic("siesa.items.raw.v1")
    transaction = [(t, key, value) for t, key, value, _headers in committed if t == raw_topic]
    assert [(topic, key) for topic, key, _ in transaction] == [
        (raw_topic, f"{TENANT}/{sku}".encode())
        for sku in ("CAM-OXF-001", "PAN-DRL-032", "SHP-ACD-400", "TUB-PVC-2030")
    ]
    products = []
    for _topic, key, value in transaction:
        (out,) = transformer.handle(FakeMessage(_key=key, _value=value))  # type: ignore[arg-type]
        assert out.key == key
        products.append(without_per_run_fields(SERDE.decode_as("CanonicalProduct", out.value)))
    assert products == golden()
