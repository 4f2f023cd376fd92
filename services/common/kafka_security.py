"""Kafka security settings: the checks on `KafkaSettings` and the librdkafka properties
they become.

`check` runs when the settings are built: it reads the secrets given by file, and
collects every missing or contradictory setting at once, each line naming its
`KAFKA_*` variable (a service stops with exit 2 listing them). `security_config` turns
checked settings into librdkafka properties; `services.common.kafka.client_config`
adds them to every producer, consumer and admin client.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

if TYPE_CHECKING:
    from services.common.settings import KafkaSettings

SECRETS = ("sasl_password", "sasl_oauthbearer_client_secret", "ssl_key_password")
OIDC = (
    "sasl_oauthbearer_token_endpoint_url",
    "sasl_oauthbearer_client_id",
    "sasl_oauthbearer_client_secret",
)
PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_FIELDS = (
    "sasl_username",
    "sasl_password",
    "sasl_oauthbearer_token_endpoint_url",
    "sasl_oauthbearer_client_id",
    "sasl_oauthbearer_client_secret",
    "sasl_oauthbearer_scope",
    "sasl_oauthbearer_extensions",
    "sasl_oauthbearer_token_provider",
)
TLS_FIELDS = ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location", "ssl_key_password")

# librdkafka properties a dedicated setting owns: the passthrough may not set them.
OWNED = {
    "bootstrap.servers": "bootstrap_servers",
    "client.id": "client_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "sasl.oauthbearer.method": "sasl_oauthbearer_token_endpoint_url",
    "sasl.oauthbearer.token.endpoint.url": "sasl_oauthbearer_token_endpoint_url",
    "sasl.oauthbearer.client.id": "sasl_oauthbearer_client_id",
    "sasl.oauthbearer.client.secret": "sasl_oauthbearer_client_secret",
    "sasl.oauthbearer.scope": "sasl_oauthbearer_scope",
    "sasl.oauthbearer.extensions": "sasl_oauthbearer_extensions",
    "ssl.ca.location": "ssl_ca_location",
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
    "ssl.key.password": "ssl_key_password",
    "ssl.endpoint.identification.algorithm": "ssl_endpoint_identification",
}
# Properties the pipeline's delivery guarantees rest on: set by the code, never by hand.
FIXED = (
    "group.id",
    "transactional.id",
    "enable.idempotence",
    "acks",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "isolation.level",
    "enable.partition.eof",
)


def env(field: str) -> str:
    return f"KAFKA_{field.upper()}"


def check(kafka: KafkaSettings) -> dict[str, SecretStr]:
    """The secret settings, read from their files where given by file; ValueError with
    one line per problem (`setting KAFKA_X: why`) if any setting is missing, contradicts
    another or names a file that cannot be read."""
    problems: list[str] = []
    secrets = _secrets(kafka, problems)
    problems += _sasl_problems(kafka)
    problems += _tls_problems(kafka)
    problems += _passthrough_problems(kafka)
    rf, isr = kafka.replication_factor, kafka.min_insync_replicas
    if rf is not None and isr is not None and isr > rf:
        problems.append(
            f"setting {env('min_insync_replicas')}: {isr} is more than "
            f"{env('replication_factor')} ({rf}): no write could ever succeed"
        )
    if problems:
        raise ValueError("\n".join(problems))
    return secrets


def _secrets(kafka: KafkaSettings, problems: list[str]) -> dict[str, SecretStr]:
    found: dict[str, SecretStr] = {}
    for name in SECRETS:
        direct: SecretStr | None = getattr(kafka, name)
        path: Path | None = getattr(kafka, f"{name}_file")
        if direct is not None and path is not None:
            problems.append(f"setting {env(name)}: also given as {env(name)}_FILE; give one")
        elif path is not None:
            try:
                text = path.read_text().strip()
            except OSError as exc:
                problems.append(f"setting {env(name)}_FILE: cannot read {path}: {exc.strerror}")
                continue
            if not text:
                problems.append(f"setting {env(name)}_FILE: {path} is empty")
                continue
            found[name] = SecretStr(text)
        elif direct is not None:
            found[name] = direct
    return found


def _sasl_problems(kafka: KafkaSettings) -> list[str]:
    protocol, mechanism = kafka.security_protocol, kafka.sasl_mechanism
    given = [
        f
        for f in SASL_FIELDS
        if getattr(kafka, f) is not None or getattr(kafka, f"{f}_file", None) is not None
    ]
    if not protocol.startswith("SASL_"):
        return [
            f"setting {env(f)}: set, but {env('security_protocol')}={protocol} uses no SASL "
            f"(SASL_SSL does)"
            for f in (["sasl_mechanism"] if mechanism else []) + given
        ]
    if mechanism is None:
        return [f"setting {env('sasl_mechanism')}: required with {protocol}"]
    problems: list[str] = []
    if mechanism in PASSWORD_MECHANISMS:
        for field in ("sasl_username", "sasl_password"):
            if field not in given:
                problems.append(f"setting {env(field)}: required with {mechanism}")
        problems += [
            f"setting {env(f)}: set, but only OAUTHBEARER uses it (mechanism {mechanism})"
            for f in given
            if f.startswith("sasl_oauthbearer")
        ]
        return problems
    # OAUTHBEARER: OIDC client credentials, or a token provider; not both.
    problems += [
        f"setting {env(f)}: set, but OAUTHBEARER uses no username or password"
        for f in given
        if f in ("sasl_username", "sasl_password")
    ]
    oidc = [f for f in OIDC if f in given]
    provider = kafka.sasl_oauthbearer_token_provider
    if provider is not None:
        problems += [
            f"setting {env(f)}: set together with {env('sasl_oauthbearer_token_provider')}; "
            f"give OIDC client credentials or a token provider, not both"
            for f in oidc
        ]
        try:
            load_provider(provider)
        except ValueError as exc:
            problems.append(f"setting {env('sasl_oauthbearer_token_provider')}: {exc}")
    else:
        problems += [
            f"setting {env(f)}: required with OAUTHBEARER (OIDC client credentials; "
            f"or set {env('sasl_oauthbearer_token_provider')})"
            for f in OIDC
            if f not in given
        ]
    return problems


def _tls_problems(kafka: KafkaSettings) -> list[str]:
    protocol = kafka.security_protocol
    given = [f for f in TLS_FIELDS if getattr(kafka, f) is not None]
    given += [f for f in ("ssl_key_password_file",) if getattr(kafka, f) is not None]
    if "ssl_endpoint_identification" in kafka.model_fields_set:
        given.append("ssl_endpoint_identification")
    if protocol not in ("SSL", "SASL_SSL"):
        return [
            f"setting {env(f)}: set, but {env('security_protocol')}={protocol} uses no TLS "
            f"(SSL or SASL_SSL do)"
            for f in given
        ]
    problems = []
    cert, key = kafka.ssl_certificate_location, kafka.ssl_key_location
    if (cert is None) != (key is None):
        missing = "ssl_key_location" if key is None else "ssl_certificate_location"
        problems.append(f"setting {env(missing)}: a client certificate needs its key and both")
    if key is None and ({"ssl_key_password", "ssl_key_password_file"} & set(given)):
        problems.append(f"setting {env('ssl_key_password')}: set, but there is no key")
    for field in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
        path: Path | None = getattr(kafka, field)
        if field == "ssl_ca_location" and str(path) == "probe":
            continue  # librdkafka looks for the system's CA bundle itself
        if path is not None and not path.is_file():
            problems.append(f"setting {env(field)}: no file {path}")
    return problems


def _passthrough_problems(kafka: KafkaSettings) -> list[str]:
    problems = []
    for key in passthrough(kafka):
        variable = f"{env('librdkafka')}__{key.upper().replace('.', '_')}"
        if key in OWNED:
            problems.append(f"setting {variable}: set {env(OWNED[key])} instead")
        elif key in FIXED:
            problems.append(
                f"setting {variable}: {key} is set by the pipeline (its delivery guarantees "
                f"rest on it) and cannot be changed"
            )
    return problems


def passthrough(kafka: KafkaSettings) -> dict[str, str]:
    """`KAFKA_LIBRDKAFKA`'s properties with their librdkafka names (dots)."""
    return {key.lower().replace("_", "."): str(value) for key, value in kafka.librdkafka.items()}


def load_provider(spec: str) -> Callable[[str], Any]:
    """The token provider `module:function` names; ValueError says why it cannot be used."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r} is not `module:function`")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name}: {exc}") from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ValueError(f"{module_name} has no function {attribute}")  # noqa: TRY004 - a setting's value
    return function  # type: ignore[no-any-return]


def security_config(kafka: KafkaSettings) -> dict[str, Any]:
    """librdkafka's security properties for checked settings."""
    config: dict[str, Any] = {"security.protocol": kafka.security_protocol.lower()}
    mechanism = kafka.sasl_mechanism
    if mechanism is not None:
        config["sasl.mechanism"] = mechanism
    if mechanism in PASSWORD_MECHANISMS:
        config["sasl.username"] = kafka.sasl_username
        config["sasl.password"] = _reveal(kafka, "sasl_password")
    elif mechanism == "OAUTHBEARER" and kafka.sasl_oauthbearer_token_provider:
        config["oauth_cb"] = load_provider(kafka.sasl_oauthbearer_token_provider)
    elif mechanism == "OAUTHBEARER":
        config["sasl.oauthbearer.method"] = "oidc"
        config["sasl.oauthbearer.token.endpoint.url"] = kafka.sasl_oauthbearer_token_endpoint_url
        config["sasl.oauthbearer.client.id"] = kafka.sasl_oauthbearer_client_id
        config["sasl.oauthbearer.client.secret"] = _reveal(kafka, "sasl_oauthbearer_client_secret")
        if kafka.sasl_oauthbearer_scope:
            config["sasl.oauthbearer.scope"] = kafka.sasl_oauthbearer_scope
        if kafka.sasl_oauthbearer_extensions:
            config["sasl.oauthbearer.extensions"] = kafka.sasl_oauthbearer_extensions
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        for field in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            path = getattr(kafka, field)
            if path is not None:
                config[field.replace("_", ".")] = str(path)
        if kafka.secret("ssl_key_password") is not None:
            config["ssl.key.password"] = _reveal(kafka, "ssl_key_password")
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_endpoint_identification else "none"
        )
    return config


def _reveal(kafka: KafkaSettings, name: str) -> str:
    secret = kafka.secret(name)
    return secret.get_secret_value() if secret is not None else ""


def principal(kafka: KafkaSettings) -> str:
    """Who these settings authenticate as, as far as the client knows, for messages."""
    mechanism = kafka.sasl_mechanism
    if mechanism in PASSWORD_MECHANISMS:
        return f"User:{kafka.sasl_username}"
    if mechanism == "OAUTHBEARER":
        if kafka.sasl_oauthbearer_token_provider:
            return f"the identity of the tokens of {kafka.sasl_oauthbearer_token_provider}"
        return f"the OAuth client {kafka.sasl_oauthbearer_client_id}"
    if kafka.ssl_certificate_location is not None:
        return f"the TLS client certificate {kafka.ssl_certificate_location}"
    return "User:ANONYMOUS"
