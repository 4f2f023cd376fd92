"""`config/tenants.yaml`: secrets are references, every problem is named at once."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.errors import ConfigError
from services.common.tenants import enabled, load_tenants, split_key, tenant_of_key
from tests import ROOT
from tests.unit.fakes import set_secrets, tenant_config

KEY = "0123456789abcdef0123456789abcdef"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0LXRva2Vu"  # noqa: S105 - a test credential
PASSWORD = "pa55-w0rd-never-shown"  # noqa: S105 - a test credential
BOTH = ("source", "target")  # resolve every secret of a tenant


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    set_secrets(monkeypatch, "T", KEY, TOKEN, "integrator", PASSWORD)


def write(tmp_path: Path, *tenants: Any) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump({"tenants": list(tenants)}))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_tenants(path, resolve=BOTH)
    return caught.value.problems


def test_a_valid_file_resolves_env_and_file_secrets(tmp_path: Path) -> None:
    secret_file = tmp_path / "kong-password"
    secret_file.write_text(PASSWORD + "\n")
    path = write(tmp_path, tenant_config(target__password={"file": str(secret_file)}))

    tenants = load_tenants(path, resolve=BOTH)

    acme = tenants["acme"]
    assert acme.source.conni_key.get() == KEY
    assert acme.source.conni_token.get() == TOKEN
    assert acme.target.auth.password.get() == PASSWORD  # file content, newline trimmed
    assert acme.source.page_size == 100
    assert acme.source.consulta == "API_v2_Items"
    assert acme.mapping == "siesa-items"
    assert acme.target.settings.model_dump(include={"type_id", "customer_id"}) == {
        "type_id": 1,
        "customer_id": 100,
    }


def test_secrets_never_show_in_reprs(tmp_path: Path) -> None:
    acme = load_tenants(write(tmp_path, tenant_config()), resolve=BOTH)["acme"]

    shown = repr(acme) + str(acme) + acme.model_dump_json()
    assert KEY not in shown
    assert TOKEN not in shown
    assert PASSWORD not in shown


def test_a_relative_secret_file_is_found_next_to_the_tenants_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "kong-password").write_text(PASSWORD)
    path = write(tmp_path, tenant_config(target__password={"file": "secrets/kong-password"}))
    monkeypatch.chdir("/")

    acme = load_tenants(path, resolve=BOTH)["acme"]

    assert acme.target.auth.password.get() == PASSWORD


def test_the_shipped_demo_file_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACME_SIESA_CONNI_KEY", "ACME_SIESA_CONNI_TOKEN", "ACME_KONG_USERNAME"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("ACME_KONG_PASSWORD", "y")
    for name in ("SIESA_CONNI_KEY", "SIESA_CONNI_TOKEN", "WMS_USERNAME", "WMS_PASSWORD"):
        monkeypatch.setenv(f"BODEGA_{name}", "z")

    tenants = load_tenants(ROOT / "config" / "tenants.yaml")

    assert [t.id for t in enabled(tenants)] == ["acme", "bodega"]
    assert [t.target.type for t in enabled(tenants)] == ["kong", "wms"]


def test_every_problem_of_every_tenant_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        tenant_config("alpha", source__page_size=500),
        tenant_config("beta", target__password=PASSWORD, source__company="not-a-number"),
        tenant_config("gamma", source__conni_key={"env": "T_NOT_SET_ANYWHERE"}),
    )

    problems = problems_of(path)

    assert len(problems) == 4
    assert all(p.startswith(f"{path}: tenant ") for p in problems)
    joined = "\n".join(problems)
    assert "tenant alpha: source.page_size:" in joined
    assert "tenant beta: target.password:" in joined
    assert "tenant beta: source.company:" in joined
    assert "tenant gamma: source.conni_key:" in joined
    assert "T_NOT_SET_ANYWHERE is not set" in joined


def test_a_secret_written_in_the_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, tenant_config(target__password=PASSWORD))

    problems = problems_of(path)

    assert len(problems) == 1
    assert "tenant acme: target.password:" in problems[0]
    assert "reference" in problems[0]
    assert PASSWORD not in problems[0]


@pytest.mark.parametrize(
    "reference",
    [
        {"env": "T_KONG_PASSWORD", "file": "/run/secrets/x"},
        {},
        {"evn": PASSWORD},
    ],
    ids=["both", "neither", "typo"],
)
def test_a_malformed_reference_is_refused_without_echoing_values(
    tmp_path: Path, reference: dict[str, str]
) -> None:
    path = write(tmp_path, tenant_config(target__password=reference))

    problems = problems_of(path)

    assert problems
    assert all("tenant acme: target.password" in p for p in problems)
    assert all(PASSWORD not in p for p in problems)


def test_an_unreadable_secret_file_names_tenant_and_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "secret"
    path = write(tmp_path, tenant_config(source__conni_token={"file": str(missing)}))

    (problem,) = problems_of(path)

    assert "tenant acme: source.conni_token:" in problem
    assert "cannot read secret file" in problem


def test_a_duplicate_id_and_an_unnamed_entry_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, tenant_config("acme"), tenant_config("acme"), "just a string")

    problems = problems_of(path)

    assert f"{path}: tenant acme: id: defined twice" in problems
    assert any("tenant #3:" in p for p in problems)


def test_unknown_keys_and_bad_ids_are_refused(tmp_path: Path) -> None:
    bad = tenant_config("Bad Id!")
    bad["colour"] = "blue"
    path = write(tmp_path, bad)

    problems = problems_of(path)

    assert any("tenant Bad Id!: id:" in p for p in problems)
    assert any("tenant Bad Id!: colour:" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "expected a mapping with a 'tenants' list"),
        ("tenants: {}\n", "expected a mapping with a 'tenants' list"),
        ("tenants: [\n", "not valid YAML"),
    ],
)
def test_a_file_of_the_wrong_shape_says_so(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(text)

    (problem,) = problems_of(path)

    assert problem.startswith(str(path))
    assert expected in problem


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    (problem,) = problems_of(tmp_path / "absent.yaml")

    assert "cannot read tenants file" in problem


def test_enabled_keeps_only_enabled_tenants(tmp_path: Path) -> None:
    path = write(tmp_path, tenant_config("on"), tenant_config("off", enabled=False))

    assert [t.id for t in enabled(load_tenants(path))] == ["on"]


@pytest.mark.parametrize(
    ("key", "tenant_id"),
    [(b"acme/CAM-OXF-001", "acme"), (b"acme/a/b", "acme"), (b"no-slash", None), (None, None)],
)
def test_tenant_of_key(key: bytes | None, tenant_id: str | None) -> None:
    assert tenant_of_key(key) == tenant_id


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        (b"acme/CAM-OXF-001", ("acme", "CAM-OXF-001")),
        (b"acme/a/b", ("acme", "a/b")),
        (b"no-slash", ("no-slash", "")),
        (None, ("", "")),
    ],
)
def test_split_key(key: bytes | None, parts: tuple[str, str]) -> None:
    assert split_key(key) == parts


def test_a_literal_value_mapping_is_not_a_reference(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    text = yaml.safe_dump({"tenants": [tenant_config()]})
    path.write_text(
        text.replace("password:\n      env: T_KONG_PASSWORD", f"password:\n      value: {PASSWORD}")
    )
    assert f"value: {PASSWORD}" in path.read_text()  # the file really holds the secret

    problems = problems_of(path)

    assert any("tenant acme: target.password" in p for p in problems)


def test_the_yaml_written_by_hand_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "tenants.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            tenants:
              - id: hand
                source:
                  type: siesa
                  base_url: http://siesa.test
                  company: 8020
                  conni_key: {env: T_CONNI_KEY}
                  conni_token: {env: T_CONNI_TOKEN}
                target:
                  type: kong
                  base_url: http://kong.test
                  username: {env: T_KONG_USER}
                  password: {env: T_KONG_PASSWORD}
                  settings: {type_id: 1, customer_id: 100}
            """
        )
    )

    hand = load_tenants(path, resolve=BOTH)["hand"]

    assert hand.source.company == 8020
    assert hand.target.auth.username.get() == "integrator"
