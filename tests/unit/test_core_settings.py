"""Service settings: env prefixes, nesting of the shared `KAFKA_*` block, errors named."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from services.common.errors import ConfigError
from services.common.service import load_settings
from services.common.settings import KafkaSettings
from services.extractor.settings import ExtractorSettings
from services.loader.settings import LoaderSettings
from services.transformer.settings import TransformerSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "EXTRACTOR_", "TRANSFORMER_", "LOADER_")):
            monkeypatch.delenv(name)


def test_kafka_defaults_match_the_design() -> None:
    kafka = KafkaSettings()

    assert kafka.bootstrap_servers == "127.0.0.1:9092"
    assert kafka.partitions == 6
    assert kafka.topic("products.dlq.v1") == "products.dlq.v1"


def test_kafka_settings_come_from_kafka_env_and_prefix_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker:19092")
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "t1.")
    monkeypatch.setenv("KAFKA_PARTITIONS", "12")

    kafka = ExtractorSettings().kafka

    assert kafka.bootstrap_servers == "broker:19092"
    assert kafka.partitions == 12
    assert kafka.topic("siesa.items.raw.v1") == "t1.siesa.items.raw.v1"


@pytest.mark.parametrize(
    ("cls", "env", "attribute", "value"),
    [
        (ExtractorSettings, "EXTRACTOR_MAX_FIELD_LENGTH", "max_field_length", 123),
        (TransformerSettings, "TRANSFORMER_BATCH_SIZE", "batch_size", 7),
        (LoaderSettings, "LOADER_MAX_IN_FLIGHT", "max_in_flight", 3),
    ],
)
def test_each_service_reads_its_own_prefix_only(
    monkeypatch: pytest.MonkeyPatch, cls: type, env: str, attribute: str, value: int
) -> None:
    monkeypatch.setenv(env, str(value))
    bare = env.split("_", 1)[1]
    monkeypatch.setenv(bare, "999")  # without the prefix: must be ignored

    assert getattr(cls(), attribute) == value


def test_settings_are_frozen() -> None:
    settings = LoaderSettings()

    with pytest.raises(ValidationError):
        settings.batch_size = 1


def test_load_settings_names_every_bad_variable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOADER_BATCH_SIZE", "0")
    monkeypatch.setenv("LOADER_MAX_IN_FLIGHT", "lots")

    with pytest.raises(ConfigError) as caught:
        load_settings(LoaderSettings)

    problems = caught.value.problems
    assert len(problems) == 2
    assert any(p.startswith("setting LOADER_BATCH_SIZE:") for p in problems)
    assert any(p.startswith("setting LOADER_MAX_IN_FLIGHT:") for p in problems)


def test_a_bad_kafka_variable_is_named_with_its_own_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_PARTITIONS", "0")

    with pytest.raises(ConfigError) as caught:
        load_settings(ExtractorSettings)

    assert caught.value.problems[0].startswith("setting KAFKA_PARTITIONS:")
