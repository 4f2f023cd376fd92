"""What can drift gets a check: the README's settings table against the settings classes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from services.common.settings import KafkaSettings
from services.console.settings import ConsoleSettings
from services.extractor.settings import ExtractorSettings
from services.loader.settings import LoaderSettings
from services.transformer.settings import TransformerSettings

README = Path(__file__).parents[2] / "README.md"


@pytest.mark.parametrize(
    "settings",
    [KafkaSettings, ExtractorSettings, TransformerSettings, LoaderSettings, ConsoleSettings],
)
def test_readme_lists_every_setting(settings: type[BaseSettings]) -> None:
    prefix = str(settings.model_config["env_prefix"])
    row = next(
        (line for line in README.read_text().splitlines() if line.startswith(f"| `{prefix}`")),
        None,
    )
    assert row is not None, f"README.md has no settings row for {prefix}"
    documented = set(re.findall(r"`([A-Z_]+)`", row.split("|")[2]))
    real = {name.upper() for name in settings.model_fields if name != "kafka"}
    assert documented == real
