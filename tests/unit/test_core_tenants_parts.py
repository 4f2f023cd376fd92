"""The tenants file's plugin parts: `source:` chosen by `type`, files of the first release
(`siesa:`) still read, and secrets resolved only for the parts a service uses."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.errors import ConfigError
from services.common.secrets import UnresolvedSecret
from services.common.tenants import load_tenants
from services.sources.siesa.settings import SiesaSettings
from tests import ROOT
from tests.unit.fakes import set_secrets, tenant_config

KEY = "0123456789abcdef0123456789abcdef"
PASSWORD = "pa55-w0rd-never-shown"  # noqa: S105 - a test credential


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch, "T", KEY, "token", "integrator", PASSWORD)


def write(tmp_path: Path, *tenants: Any) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))
    return path


def problems_of(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_tenants(path, **kwargs)
    return caught.value.problems


def legacy(config: dict[str, Any]) -> dict[str, Any]:
    """`config` as the first release wrote it: `siesa:` at the top, no `type`."""
    source = {k: v for k, v in config["source"].items() if k != "type"}
    return {**{k: v for k, v in config.items() if k != "source"}, "siesa": source}


def test_the_source_is_the_settings_model_of_its_type() -> None:
    tenants = load_tenants(ROOT / "config" / "tenants.yaml")

    assert all(isinstance(t.source, SiesaSettings) for t in tenants.values())
    assert tenants["acme"].source.effective_mode == "hybrid"
    assert tenants["bodega"].source.effective_mode == "diff"


def test_a_file_of_the_first_release_reads_the_same_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        old = load_tenants(ROOT / "tests" / "fixtures" / "tenants-v1.yaml")
        load_tenants(ROOT / "tests" / "fixtures" / "tenants-v1.yaml")

    new = load_tenants(ROOT / "config" / "tenants.yaml")
    assert {k: t.model_dump() for k, t in old.items()} == {
        k: t.model_dump() for k, t in new.items()
    }
    warnings = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert len(warnings) <= 1  # once per process: an earlier test may have had it
    if warnings:
        assert "`siesa:`" in warnings[0]
        assert "source: {type: siesa" in warnings[0]


def test_errors_in_an_old_file_name_the_fields_as_it_writes_them(tmp_path: Path) -> None:
    path = write(tmp_path, legacy(tenant_config(source__page_size=500)))

    (problem,) = problems_of(path)

    assert "tenant acme: siesa.page_size:" in problem


def test_an_unknown_or_missing_source_type_names_the_known_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        tenant_config("alpha", source__type="sap"),
        {**tenant_config("beta"), "source": {"base_url": "http://x"}},
    )

    problems = "\n".join(problems_of(path))

    assert "tenant alpha: source.type: source type 'sap' is not one of siesa" in problems
    assert "tenant beta: source.type: source type missing (one of siesa)" in problems


def test_a_settings_error_names_the_field_without_the_type(tmp_path: Path) -> None:
    path = write(tmp_path, tenant_config(source__lookback_days=-1))

    (problem,) = problems_of(path)

    assert "tenant acme: source.lookback_days:" in problem


def test_a_tenant_without_a_mapping_gets_its_source_types(tmp_path: Path) -> None:
    config = tenant_config()
    config.pop("mapping", None)

    assert load_tenants(write(tmp_path, config))["acme"].mapping == "siesa-items"


def test_only_the_parts_asked_for_are_resolved(tmp_path: Path) -> None:
    path = write(tmp_path, tenant_config())

    extractor = load_tenants(path, resolve=("source",))["acme"]
    transformer = load_tenants(path)["acme"]

    assert extractor.source.conni_key.get() == KEY
    with pytest.raises(UnresolvedSecret) as caught:
        extractor.target.auth.password.get()
    assert "T_KONG_PASSWORD" in caught.value.message  # the reference, never a value
    assert PASSWORD not in caught.value.message
    with pytest.raises(UnresolvedSecret):
        transformer.source.conni_key.get()


def test_a_missing_secret_of_a_part_not_used_is_no_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_KONG_PASSWORD")
    path = write(tmp_path, tenant_config())

    assert load_tenants(path, resolve=("source",))["acme"].source.conni_key.get() == KEY
    (problem,) = problems_of(path, resolve=("target",))
    assert "tenant acme: target.password:" in problem
    assert "environment variable T_KONG_PASSWORD is not set" in problem


def test_an_unknown_part_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such tenant parts"):
        load_tenants(write(tmp_path, tenant_config()), resolve=("mapping",))
