"""The extractor's row path on arbitrary rows (issue 13): whatever a source sends as a
row (any JSON value types, any Unicode including lone surrogates and control
characters, sizes up to a few MB), the row ends as exactly one RawItem or one dead
letter that fits the DLQ, never as an unexpected error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.serde import default_serde
from services.common.settings import KafkaSettings
from services.common.tenants import Tenant
from services.common.text import decode_json, json_bytes
from services.extractor.emit import Batch, Emitter
from services.extractor.memory import TenantMemory
from services.sources.siesa.source import SiesaSource
from tests.unit.fakes import set_secrets, tenant_config

SERDE = default_serde()
KAFKA = KafkaSettings()
MAX_BYTES = 200_000  # small, so that big rows meet the cut
KEY_FIELD = "f120_referencia"

# Any code point; ASCII (control characters included) often.
chars = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.characters(max_codepoint=0x7F, exclude_categories=()),
)
short_text = st.text(chars, max_size=12)
# Now and then a long one: a few characters repeated up to ~3 MB.
long_text = st.builds(
    lambda s, n: s * n, st.text(chars, min_size=1, max_size=3), st.integers(1, 10**6)
)
# Text holding a lone surrogate for sure: what bytes that are not UTF-8 become.
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, exclude_categories=())
broken_text = st.builds(lambda a, s, b: a + s + b, short_text, surrogates, short_text)
text = st.one_of(short_text, short_text, broken_text, long_text)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(2**70), 2**70), st.floats(), text
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(short_text, inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.one_of(
    short_text, broken_text, st.sampled_from(["SKU-1", " SKU-2  ", "", "   ", "../x", "[/]"])
)
rows = st.builds(
    lambda extra, key, has_key: {**extra, **({KEY_FIELD: key} if has_key else {})},
    st.dictionaries(st.one_of(short_text, short_text, broken_text), values, max_size=8),
    st.one_of(keys, keys, values),
    st.sampled_from([True, True, True, False]),
)


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    with pytest.MonkeyPatch.context() as patch:
        set_secrets(patch, "P", "k", "t", "u", "p")
        return Tenant.model_validate(tenant_config("acme", env="P"))


def emitter(tenant: Tenant) -> Emitter:
    source = SiesaSource(tenant.source, tenant=tenant.id)
    return Emitter(
        tenant=tenant.id,
        source=source,
        source_type="siesa",
        serde=SERDE,
        kafka=KAFKA,
        memory=TenantMemory(tenant.id),
        sync_id="sync-1",
        max_field_length=4000,
        reemit=False,
        max_bytes=MAX_BYTES,
    )


def one_outcome(tenant: Tenant, raw: dict[str, Any]) -> None:
    batch = Batch()
    emitter(tenant).row(raw, batch, [])

    (record,) = batch.outputs
    if record.topic == KAFKA.topic("siesa.items.raw.v1"):
        item = SERDE.decode_as("RawItem", record.value)
        assert item["op"] == "UPSERT"
        assert item["key"] == item["row"][KEY_FIELD].strip()
        assert batch.rejected == 0
    else:
        assert record.topic == KAFKA.topic("products.dlq.v1")
        headers = dict(record.headers)
        assert headers["error.class"] == "invalid_row", headers["error.message"]
        assert headers["tenant"] == "acme"
        size = len(record.key or b"") + len(record.value or b"")
        size += sum(len(k.encode()) + len(v or "") for k, v in record.headers)
        assert size <= MAX_BYTES
        assert batch.rejected == 1


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=rows)
def test_any_row_ends_as_one_raw_item_or_one_dead_letter(
    tenant: Tenant, raw: dict[str, Any]
) -> None:
    one_outcome(tenant, raw)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=rows, noise=st.binary(max_size=8))
def test_any_row_read_from_bytes_that_are_not_utf8_ends_the_same_way(
    tenant: Tenant, raw: dict[str, Any], noise: bytes
) -> None:
    # The row as a source sends it, with any bytes (UTF-8 or not) inside one value.
    data = json_bytes({**raw, "f120_descripcion": "@@NOISE@@"})
    data = data.replace(b"@@NOISE@@", noise.replace(b'"', b"").replace(b"\\", b""))
    parsed = decode_json(data)
    one_outcome(tenant, parsed)
