"""The package finds what it ships from the package itself, says its version, and a
check that finds nothing to check fails; the lock files pin what pyproject.toml asks.

(The installed wheel itself, outside the checkout: tests/e2e/test_install.py.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import confluent_kafka
import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement

from services.cli import main
from services.common.errors import ConfigError
from services.common.packaged import data_dir
from services.common.serde import Serde
from services.common.settings import ServiceSettings
from services.transformer.settings import TransformerSettings
from tests import ROOT

LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", re.M)


def test_shipped_folders_are_found_from_the_package_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert {p.name for p in data_dir("schemas").glob("*.avsc")} >= {
        "RawItem.avsc",
        "CanonicalProduct.avsc",
    }
    assert list((data_dir("schemas") / "history").glob("*.avsc"))
    assert (data_dir("mappings") / "siesa-items.yaml").is_file()
    assert (data_dir("mappings") / "mapping.schema.json").is_file()
    assert ServiceSettings().tenants_file == data_dir("config") / "tenants.yaml"
    assert ServiceSettings().tenants_file.is_file()
    assert TransformerSettings().mappings_dir == data_dir("mappings")


def test_a_folder_that_is_not_shipped_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no nothing-here/ shipped"):
        data_dir("nothing-here")


def test_version_names_the_package_python_and_librdkafka() -> None:
    result = CliRunner().invoke(main, ["--version"])

    assert result.exit_code == 0
    assert re.fullmatch(
        rf"siesa-sync \d+\.\d+\.\d+\S* \(Python 3\.\d+\.\d+, librdkafka "
        rf"{re.escape(confluent_kafka.libversion()[0])}\)\n",
        result.output,
    ), result.output


def test_mappings_check_with_no_mapping_files_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["mappings", "check", "--dir", str(tmp_path)])

    assert result.exit_code == 2
    assert f"{tmp_path}: no mapping files" in result.output


def test_a_schema_folder_without_schemas_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Avro schemas"):
        Serde(tmp_path)


def _pins(lock: Path) -> dict[str, str]:
    return {name.lower(): version for name, version in PIN.findall(lock.read_text())}


def _project() -> dict[str, list[str]]:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    return {"runtime": project["dependencies"], **project["optional-dependencies"]}


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("runtime.txt", ["runtime"]), ("sim.txt", ["runtime", "sim"]), ("dev.txt", ["dev"])],
)
def test_each_lock_pins_every_dependency_within_its_range(lock: str, groups: list[str]) -> None:
    pins = _pins(LOCKS / lock)
    project = _project()
    for group in groups:
        for spec in project[group]:
            requirement = Requirement(spec)
            if requirement.name == "siesa-sync":
                continue  # the project's own extras, locked through their own entries
            name = requirement.name.lower()
            assert name in pins, f"{lock}: {name} is not pinned"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock}: {name}=={pins[name]} is outside {requirement.specifier}"
            )


def test_the_locks_agree_hash_every_pin_and_name_no_index() -> None:
    dev = _pins(LOCKS / "dev.txt")
    for lock in sorted(LOCKS.glob("*.txt")):
        text = lock.read_text()
        for name, version in _pins(lock).items():
            assert dev.get(name) == version, (
                f"{lock.name}: {name}=={version}, dev.txt {dev.get(name)}"
            )
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
        for entry in entries:
            assert "--hash=sha256:" in entry, f"{lock.name}: no hash for {entry.split()[0]}"
        assert not re.search(r"--(extra-)?index-url|--find-links|://", text), lock.name
    assert not (ROOT / "uv.lock").exists(), "uv.lock names the index it resolved from"
    assert not {"starlette", "uvicorn", "uvloop", "httptools"} & set(_pins(LOCKS / "runtime.txt"))
