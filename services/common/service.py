"""Start-up and shutdown shared by every service's `main()`.

Settings and tenant files are read and checked before anything connects; a
`ConfigError` prints every problem and exits 2; a `FatalError` exits 1. Then the
service waits for the broker (`connect`: not ready, saying why, until it answers and
takes its credentials: wrong ones are no exit, so no crash loop under an orchestrator).
A stop (SIGTERM, SIGINT) at any point of start-up exits 0 without a traceback, whatever
the call it interrupted raised.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import KafkaException
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.common import health, kafka_auth, metrics
from services.common.alerts import Alerter
from services.common.arenas import limit_arenas
from services.common.errors import ConfigError, FatalError, SyncError
from services.common.kafka import make_admin
from services.common.logs import configure_logging
from services.common.reachability import BrokerWatch, install
from services.common.settings import KafkaSettings, ServiceSettings
from services.common.stopper import Stopper

log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseSettings)
Svc = TypeVar("Svc", bound=ServiceSettings)

DEFAULT_HEALTH_PORTS = {"extractor": 9101, "transformer": 9102, "loader": 9103}


def load_settings(cls: type[S]) -> S:
    """Build a settings class from the environment; ConfigError names every bad field."""
    try:
        return cls()
    except ValidationError as exc:
        # A nested settings class (KafkaSettings) fails with its own title and prefix.
        owner = KafkaSettings if exc.title == KafkaSettings.__name__ else cls
        prefix = str(owner.model_config.get("env_prefix", ""))
        problems = []
        for err in exc.errors():
            if err["loc"]:
                name = "_".join(str(p) for p in err["loc"]).upper()
                problems.append(f"setting {prefix}{name}: {err['msg']}")
            else:  # a check across fields: one problem a line, each naming its setting
                problems += err["msg"].removeprefix("Value error, ").splitlines()
        raise ConfigError(problems) from None


def run_service(
    name: str, settings_class: type[Svc], start: Callable[[Svc, Stopper], None]
) -> None:
    """Read the settings, configure logging once, serve health and metrics, then run
    `start(settings, stopper)` with signal handling and exit codes set up."""
    limit_arenas()  # before any thread starts (services/common/arenas.py)
    stopper = Stopper().install()
    try:
        settings = load_settings(settings_class)
        configure_logging(settings.log_level)
        metrics.export_build_info()
        state = health.current(name)
        state.stall_after_s = settings.stall_timeout_s
        stop_health = health.serve(
            state,
            settings.health_host,
            settings.health_port,
            default_port=DEFAULT_HEALTH_PORTS.get(name, 0),
        )
        try:
            start(settings, stopper)
        except (SyncError, KafkaException) as exc:
            if not stopper.stopped or isinstance(exc, ConfigError | FatalError):
                raise
            # A stop interrupted a call to the broker at start-up: no failure.
            log.info("%s: stopped during start-up (%s)", name, exc)
        finally:
            stop_health()
    except ConfigError as exc:
        print(f"{name}: cannot start:\n{exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    except FatalError as exc:
        log.exception("%s: stopped on a fatal error: %s", name, exc.message)
        sys.exit(1)
    finally:
        stopper.finished()  # its exit code stands, however many signals come now


def connect(kafka: KafkaSettings, stopper: Stopper, alerter: Alerter | None = None) -> bool:
    """Wait until the broker answers and takes this service's credentials, not ready
    meanwhile and saying why (once, then at most once a minute: services/common/
    reachability.py, kafka_auth.py, which posts a refusal to `alerter`); then keep
    watching it (readiness follows it) until the stop. False when a stop came first:
    the service's start returns, and it exits 0."""
    refusals = kafka_auth.current()
    refusals.alerter = alerter or refusals.alerter
    admin = make_admin(kafka)

    def probe(timeout_s: float) -> None:
        try:
            admin.list_topics(timeout=timeout_s)
        finally:
            admin.poll(0)  # serve the errors and logs of the attempt (the why, deduplicated)

    watch = BrokerWatch(kafka.bootstrap_servers, probe, refusals=refusals)
    install(watch)
    if not watch.wait_until_reachable(stopper):
        log.info("stopped while waiting for the Kafka broker at %s", kafka.bootstrap_servers)
        return False
    watch.watch(stopper)
    return True
