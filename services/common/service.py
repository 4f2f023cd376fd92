"""Start-up and shutdown shared by every service's `main()`.

Settings and tenant files are read and checked before anything connects; a
`ConfigError` prints every problem and exits 2; a `FatalError` exits 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.common import health
from services.common.errors import ConfigError, FatalError
from services.common.logs import configure_logging
from services.common.runloop import Stopper
from services.common.settings import KafkaSettings, ServiceSettings

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
    stopper = Stopper().install()
    try:
        settings = load_settings(settings_class)
        configure_logging(settings.log_level)
        stop_health = health.serve(
            health.current(name),
            settings.health_host,
            settings.health_port,
            default_port=DEFAULT_HEALTH_PORTS.get(name, 0),
        )
        try:
            start(settings, stopper)
        finally:
            stop_health()
    except ConfigError as exc:
        print(f"{name}: cannot start:\n{exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    except FatalError as exc:
        log.exception("%s: stopped on a fatal error: %s", name, exc.message)
        sys.exit(1)
