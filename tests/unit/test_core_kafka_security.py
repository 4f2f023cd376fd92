"""Kafka security settings: each one reaches the producer, consumer and admin configs;
secrets never show; missing or contradictory settings stop start-up (exit 2) naming
the setting."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError

from services.cli import main as cli
from services.common import health, kafka_auth
from services.common.errors import ConfigError
from services.common.kafka import (
    client_config,
    client_error,
    consumer_config,
    make_admin,
    make_consumer,
    make_producer,
    producer_config,
)
from services.common.kafka_security import principal
from services.common.service import load_settings, run_service
from services.common.settings import KafkaSettings
from services.transformer.settings import TransformerSettings

PASSWORD = "s3cret-Pa55word-4-kafka"  # noqa: S105 - a test value
KEY_PASSWORD = "k3y-Pa55word-nobody-sees"  # noqa: S105 - a test value
CLIENT_SECRET = "oidc-client-secret-value"  # noqa: S105 - a test value


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "TRANSFORMER_")):
            monkeypatch.delenv(name)


def token(_config: str) -> tuple[str, float]:
    """A token provider (`KAFKA_SASL_OAUTHBEARER_TOKEN_PROVIDER`) for the tests."""
    return "a-token", 0.0


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    for path in files.values():
        path.write_text("-----BEGIN PLACEHOLDER-----\n")
    (tmp_path / "key.password").write_text(KEY_PASSWORD + "\n")
    (tmp_path / "sasl.password").write_text(PASSWORD + "\n")
    return files


def configs(kafka: KafkaSettings) -> dict[str, dict[str, Any]]:
    """What each kind of client is given (the admin client gets `client_config`)."""
    return {
        "producer": producer_config(kafka),
        "consumer": consumer_config(kafka, group_id="g"),
        "admin": client_config(kafka),
    }


def test_every_tls_and_sasl_setting_reaches_every_client(
    monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "KAFKA_CLIENT_ID": "sync",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "siesa-sync-loader",
        "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "sasl.password"),
        "KAFKA_SSL_CA_LOCATION": str(tls_files["ca"]),
        "KAFKA_SSL_CERTIFICATE_LOCATION": str(tls_files["cert"]),
        "KAFKA_SSL_KEY_LOCATION": str(tls_files["key"]),
        "KAFKA_SSL_KEY_PASSWORD_FILE": str(tmp_path / "key.password"),
        "KAFKA_SSL_ENDPOINT_IDENTIFICATION": "false",
        "KAFKA_LIBRDKAFKA__SOCKET_KEEPALIVE_ENABLE": "true",
        "KAFKA_LIBRDKAFKA": '{"metadata.max.age.ms": "60000"}',
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    kafka = load_settings(TransformerSettings).kafka.for_client("transformer-1")

    expected = {
        "bootstrap.servers": "b1:9093,b2:9093",
        "client.id": "sync-transformer-1",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "siesa-sync-loader",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(tls_files["ca"]),
        "ssl.certificate.location": str(tls_files["cert"]),
        "ssl.key.location": str(tls_files["key"]),
        "ssl.key.password": KEY_PASSWORD,
        "ssl.endpoint.identification.algorithm": "none",
        "socket.keepalive.enable": "true",
        "metadata.max.age.ms": "60000",
    }
    for kind, config in configs(kafka).items():
        assert {k: config.get(k) for k in expected} == expected, kind
        # The one error callback, which hands refusals to kafka_auth (test_core_reachability).
        assert config["error_cb"] is client_error, kind


def test_oidc_client_credentials_reach_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "OAUTHBEARER")
    monkeypatch.setenv("KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", "https://idp.example/token")
    monkeypatch.setenv("KAFKA_SASL_OAUTHBEARER_CLIENT_ID", "sync-app")
    monkeypatch.setenv("KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("KAFKA_SASL_OAUTHBEARER_SCOPE", "kafka")
    monkeypatch.setenv("KAFKA_SASL_OAUTHBEARER_EXTENSIONS", "logicalCluster=lkc-1")

    kafka = load_settings(KafkaSettings)

    expected = {
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.client.id": "sync-app",
        "sasl.oauthbearer.client.secret": CLIENT_SECRET,
        "sasl.oauthbearer.scope": "kafka",
        "sasl.oauthbearer.extensions": "logicalCluster=lkc-1",
    }
    for kind, config in configs(kafka).items():
        assert {k: config.get(k) for k in expected} == expected, kind
    # librdkafka takes every one of these property names (it refuses unknown ones).
    make_producer(kafka)
    make_consumer(kafka, group_id="g").close()
    make_admin(kafka)


def test_a_token_provider_becomes_the_clients_oauth_callback() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauthbearer_token_provider=f"{__name__}:token",
    )

    for config in configs(kafka).values():
        assert config["oauth_cb"] is token
        assert "sasl.oauthbearer.method" not in config


def test_scram_clients_are_built_by_librdkafka() -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="u",
        sasl_password=PASSWORD,
        librdkafka={"socket_keepalive_enable": "true"},
    )

    make_producer(kafka)
    make_consumer(kafka, group_id="g").close()
    make_admin(kafka)


def test_defaults_are_plaintext_with_idempotent_acks_all_producers() -> None:
    kafka = KafkaSettings()

    for config in configs(kafka).values():
        assert config["security.protocol"] == "plaintext"
        assert not any(k.startswith(("sasl.", "ssl.")) for k in config)
    producer = producer_config(kafka)
    assert (producer["acks"], producer["enable.idempotence"]) == ("all", True)


def test_secrets_are_masked_in_reprs_logs_and_errors(
    caplog: pytest.LogCaptureFixture, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=PASSWORD,
        ssl_certificate_location=tls_files["cert"],
        ssl_key_location=tls_files["key"],
        ssl_key_password_file=tmp_path / "key.password",
    )
    assert kafka.secret("ssl_key_password") is not None

    shown = [repr(kafka), str(kafka), kafka.model_dump_json(), repr(kafka.for_client("x"))]
    caplog.set_level(logging.INFO)
    logging.getLogger("test").info("settings: %s", kafka)
    refusals = kafka_auth.Refusals()
    refusals.principal = principal(kafka)
    shown.append(
        refusals.refused(
            KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "WRITE", "topic products"
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_settings_from(
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": "u",
                "KAFKA_SASL_PASSWORD": PASSWORD,
                "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "key.password"),
            }
        )
    shown += [str(caught.value), caplog.text]

    for text in shown:
        assert PASSWORD not in text
        assert KEY_PASSWORD not in text


def load_settings_from(env: dict[str, str]) -> KafkaSettings:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return load_settings(KafkaSettings)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, ["KAFKA_SASL_MECHANISM"]),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
            ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"],
        ),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, ["KAFKA_SASL_MECHANISM"]),
        ({"KAFKA_SASL_USERNAME": "u"}, ["KAFKA_SASL_USERNAME"]),
        ({"KAFKA_SSL_CA_LOCATION": "/etc/hostname"}, ["KAFKA_SSL_CA_LOCATION"]),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"},
            ["KAFKA_SSL_CA_LOCATION"],
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTIFICATE_LOCATION": "/etc/hostname"},
            ["KAFKA_SSL_KEY_LOCATION"],
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "KAFKA_SASL_USERNAME": "u",
                "KAFKA_SASL_PASSWORD_FILE": "/nonexistent/password",
            },
            ["KAFKA_SASL_PASSWORD_FILE"],
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "KAFKA_SASL_OAUTHBEARER_CLIENT_ID": "app",
            },
            [
                "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
                "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
            ],
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "KAFKA_SASL_OAUTHBEARER_TOKEN_PROVIDER": "no_such_module:token",
            },
            ["KAFKA_SASL_OAUTHBEARER_TOKEN_PROVIDER"],
        ),
        ({"KAFKA_LIBRDKAFKA__SASL_PASSWORD": "x"}, ["KAFKA_LIBRDKAFKA__SASL_PASSWORD"]),
        (
            {"KAFKA_LIBRDKAFKA__ENABLE_IDEMPOTENCE": "false"},
            ["KAFKA_LIBRDKAFKA__ENABLE_IDEMPOTENCE"],
        ),
        (
            {"KAFKA_REPLICATION_FACTOR": "2", "KAFKA_MIN_INSYNC_REPLICAS": "3"},
            ["KAFKA_MIN_INSYNC_REPLICAS"],
        ),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, ["KAFKA_SECURITY_PROTOCOL"]),
    ],
)
def test_bad_combinations_name_every_setting_at_fault(
    env: dict[str, str], named: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings_from(env)

    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == [f"setting {n}" for n in named]


def test_a_bad_kafka_setting_stops_a_service_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    started: list[object] = []

    with pytest.raises(SystemExit) as exited:
        run_service("transformer", TransformerSettings, lambda s, _stop: started.append(s))

    assert exited.value.code == 2
    assert started == []
    assert "setting KAFKA_SASL_MECHANISM: required with SASL_SSL" in capsys.readouterr().err


def test_a_bad_kafka_setting_stops_a_cli_command_with_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)

    for command in (["topics", "create"], ["status"], ["dlq", "list"], ["resync", "--tenant", "a"]):
        result = CliRunner().invoke(cli, command)

        assert result.exit_code == 2, command
        assert "setting KAFKA_SASL_USERNAME: required with SCRAM-SHA-512" in result.output
        assert PASSWORD not in result.output


def test_an_unknown_passthrough_property_is_a_config_error() -> None:
    kafka = KafkaSettings(librdkafka={"no_such_property": "1"})

    with pytest.raises(ConfigError, match=r"no\.such\.property"):
        make_producer(kafka)


def test_a_refusal_of_a_topic_by_its_kind_only_leaves_the_named_one_shown() -> None:
    """A transaction's deliveries name the refused topic; its failed commit then says
    only "topic": readiness and the log keep the topic's name (a CI run lost it)."""
    refusals, state = kafka_auth.Refusals(), health.current()
    refused = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    try:
        named = refusals.refused(refused, "WRITE", "topic products.canonical.v1")
        refusals.refused(refused, "WRITE", "topic")
        assert state.problems[kafka_auth.PROBLEM] == named
        # A kind alone is still said when nothing more precise is known.
        group = refusals.refused(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED), "READ", "group")
        assert state.problems[kafka_auth.PROBLEM] == group
    finally:
        refusals.succeeded()
    assert kafka_auth.PROBLEM not in state.problems
