"""The transformer follows its tenants live, changes taken between batches: a new
tenant's records are transformed, a changed mapping is used, a removed tenant's records
are dead-lettered as of an unknown tenant, a mapping that does not compile is named."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from services.common.serde import default_serde
from services.common.tenant_book import CatchUp
from services.common.tenants import Tenant, parse_tenants
from services.transformer.compiler import Shapes, compile_mapping
from services.transformer.service import Transformer
from services.transformer.tenants import LiveTenants
from tests import ROOT
from tests.unit.fakes import tenant_config
from tests.unit.test_transformer_service import message, raw_item

SERDE = default_serde()
MAPPINGS = ROOT / "mappings"
DEFAULT = compile_mapping(MAPPINGS / "siesa-items.yaml")


def tenants(*entries: dict[str, Any]) -> dict[str, Tenant]:
    return parse_tenants(list(entries), "sync.tenants.v1", base_dir=Path())


def live(mappings_dir: Path = MAPPINGS, **kwargs: Any) -> LiveTenants:
    result = LiveTenants(
        Transformer(serde=SERDE, mappings={}, out_topic="canon"),
        tenants={},
        compiled={"siesa-items": DEFAULT},
        mappings_dir=mappings_dir,
        shapes=Shapes.from_serde(SERDE),
        max_bytes=1_000_000,
        **kwargs,
    )
    result.changed(tenants(tenant_config("acme")))
    return result


def outcome(handler: LiveTenants, tenant: str) -> str:
    result = handler.handle_batch([message(raw_item(tenant))])
    if result.outputs:
        return f"transformed with {dict(result.outputs[0].headers or [])['mapping.name'].decode()}"
    (_, error), *_ = result.failures
    return error.error_class


def test_a_new_tenant_is_transformed_from_the_next_batch() -> None:
    handler = live()
    assert outcome(handler, "acme") == "transformed with siesa-items"
    assert outcome(handler, "beta") == "unknown_tenant"

    handler.changed(tenants(tenant_config("acme"), tenant_config("beta")))

    assert outcome(handler, "beta") == "transformed with siesa-items"


def test_a_removed_tenant_is_dead_lettered_as_unknown() -> None:
    handler = live()
    handler.changed(tenants(tenant_config("beta")))

    assert outcome(handler, "acme") == "unknown_tenant"
    assert outcome(handler, "beta") == "transformed with siesa-items"


def test_a_changed_mapping_name_is_compiled_and_used(tmp_path: Path) -> None:
    (tmp_path / "siesa-items.yaml").write_text((MAPPINGS / "siesa-items.yaml").read_text())
    (tmp_path / "other.yaml").write_text(
        "name: other\nversion: '1'\nextends: siesa-items\nfields: {}\n"
    )
    handler = live(tmp_path)

    handler.changed(tenants(tenant_config("acme", mapping="other")))

    assert outcome(handler, "acme") == "transformed with other"


def test_a_mapping_that_does_not_compile_keeps_the_tenant_as_it_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = live()
    assert outcome(handler, "acme") == "transformed with siesa-items"
    with caplog.at_level(logging.ERROR):
        handler.changed(
            tenants(
                tenant_config("acme", mapping="no-such-mapping"),
                tenant_config("beta", mapping="../../etc/passwd"),
                tenant_config("gamma"),
            )
        )
        assert outcome(handler, "acme") == "transformed with siesa-items"  # as it was
    assert outcome(handler, "beta") == "unknown_tenant"  # new, and its mapping is no file
    assert outcome(handler, "gamma") == "transformed with siesa-items"  # the others go on
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "tenant acme: mapping" in messages
    assert "tenant beta: mapping" in messages


def test_an_unknown_tenant_makes_the_book_catch_up_first() -> None:
    asked: list[float] = []
    handler: LiveTenants

    def catch_up(timeout: float) -> bool:
        asked.append(timeout)
        handler.changed(tenants(tenant_config("acme"), tenant_config("beta")))
        return True

    handler = live(catch_up=CatchUp(catch_up))

    assert outcome(handler, "beta") == "transformed with siesa-items"
    assert len(asked) == 1
    assert outcome(handler, "acme") == "transformed with siesa-items"
    assert len(asked) == 1  # only for a tenant not known


def test_catching_up_is_rate_limited() -> None:
    now = [100.0]
    asked: list[float] = []
    handler = live(catch_up=CatchUp(lambda t: asked.append(t) or True, clock=lambda: now[0]))

    for _ in range(3):
        assert outcome(handler, "gone") == "unknown_tenant"
    now[0] += 5.0
    assert outcome(handler, "gone") == "unknown_tenant"

    assert len(asked) == 2
