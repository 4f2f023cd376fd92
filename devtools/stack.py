"""The whole pipeline as real processes: simulators, services, on a given broker.

One `Stack` knows its ports, credentials, topic prefix and tenants file, starts each
part as its own process (recorded by PID under its run folder) and stops them all.
`make up`/`make demo` and the e2e tests use it alike.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from devtools import procs
from services.common.service import DEFAULT_HEALTH_PORTS

SERVICES = ("extractor", "transformer", "loader")


def _jwt_like() -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return ".".join(
        [
            part({"alg": "HS256", "typ": "JWT"}),
            part({"sub": "siesa-sync"}),
            secrets.token_urlsafe(32),
        ]
    )


def env_prefix(tenant: str) -> str:
    """Tenant `acme-co` reads its credentials from `ACME_CO_*` variables."""
    return tenant.upper().replace("-", "_")


@dataclass
class Credentials:
    """Fresh credentials for one stack: given to the simulators and the services alike."""

    conni_key: str = field(default_factory=lambda: secrets.token_hex(16))
    conni_token: str = field(default_factory=_jwt_like)
    kong_user: str = "siesa-sync"
    kong_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    wms_user: str = "siesa-sync-wms"
    wms_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    webhook_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))

    def tenant_env(self, tenant: str) -> dict[str, str]:
        prefix = env_prefix(tenant)
        return {
            f"{prefix}_SIESA_CONNI_KEY": self.conni_key,
            f"{prefix}_SIESA_CONNI_TOKEN": self.conni_token,
            f"{prefix}_KONG_USERNAME": self.kong_user,
            f"{prefix}_KONG_PASSWORD": self.kong_password,
            f"{prefix}_WMS_USERNAME": self.wms_user,
            f"{prefix}_WMS_PASSWORD": self.wms_password,
            f"{prefix}_WEBHOOK_SECRET": self.webhook_secret,
        }


@dataclass
class Stack:
    bootstrap: str
    run_dir: Path = procs.RUN_DIR
    siesa_port: int = 8081
    kong_port: int = 8082
    topic_prefix: str = ""
    wms_port: int = 8083
    webhook_port: int = 8084
    credentials: Credentials = field(default_factory=Credentials)
    tenants: list[dict[str, Any]] = field(default_factory=list)
    processes: dict[str, procs.Process] = field(default_factory=dict)
    # Where each service serves /healthz, /readyz, /metrics (free ports, so stacks of
    # parallel tests never collide); empty = the services' defaults (9101-9103).
    health_ports: dict[str, int] = field(default_factory=dict)
    free_health_ports: bool = True
    # How each process was started (CLI args, env), so `restart` can start it again.
    launches: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)
    # Extra environment for every service, e.g. {"TRANSFORMER_MAPPINGS_DIR": ...}.
    service_env: dict[str, str] = field(default_factory=dict)
    # Each role's own Kafka settings on a secured cluster (its principal, credentials):
    # "extractor", "transformer", "loader", and "cli" for the operator's commands.
    kafka_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def siesa_url(self) -> str:
        return f"http://127.0.0.1:{self.siesa_port}"

    @property
    def kong_url(self) -> str:
        return f"http://127.0.0.1:{self.kong_port}"

    @property
    def wms_url(self) -> str:
        return f"http://127.0.0.1:{self.wms_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}"

    @property
    def tenants_file(self) -> Path:
        return self.run_dir / "tenants.yaml"

    def kong_tenant(
        self, tenant: str, company: int, *, poll_interval_s: float = 1.0, **target: Any
    ) -> dict[str, Any]:
        """A tenant reading `company` from the Siesa simulator into the Kong simulator."""
        env = env_prefix(tenant)
        return {
            "id": tenant,
            "mapping": "siesa-items",
            "source": {
                "type": "siesa",
                "base_url": f"{self.siesa_url}/api/siesa/v3",
                "company": company,
                "poll_interval_s": poll_interval_s,
                "conni_key": {"env": f"{env}_SIESA_CONNI_KEY"},
                "conni_token": {"env": f"{env}_SIESA_CONNI_TOKEN"},
            },
            "target": {
                "type": "kong",
                "base_url": self.kong_url,
                "auth": {
                    "type": "login",
                    "username": {"env": f"{env}_KONG_USERNAME"},
                    "password": {"env": f"{env}_KONG_PASSWORD"},
                },
                "settings": {"type_id": 1, "customer_id": 100},
                **target,
            },
        }

    def wms_tenant(
        self, tenant: str, company: int, *, poll_interval_s: float = 1.0, **target: Any
    ) -> dict[str, Any]:
        """A tenant reading `company` from the Siesa simulator into the WMS simulator."""
        config = self.kong_tenant(tenant, company, poll_interval_s=poll_interval_s)
        env = env_prefix(tenant)
        config["target"] = {
            "type": "wms",
            "base_url": self.wms_url,
            "auth": {
                "type": "login",
                "username": {"env": f"{env}_WMS_USERNAME"},
                "password": {"env": f"{env}_WMS_PASSWORD"},
            },
            **target,
        }
        return config

    def webhook_tenant(
        self, tenant: str, company: int, *, poll_interval_s: float = 1.0, **target: Any
    ) -> dict[str, Any]:
        """A tenant reading `company` from the Siesa simulator into the webhook receiver."""
        config = self.kong_tenant(tenant, company, poll_interval_s=poll_interval_s)
        config["target"] = {
            "type": "webhook",
            "base_url": self.webhook_url,
            "settings": {
                "path": "/products",
                "secret": {"env": f"{env_prefix(tenant)}_WEBHOOK_SECRET"},
            },
            **target,
        }
        return config

    def env(self, role: str = "") -> dict[str, str]:
        """What every service process gets: broker, topics, tenants, credentials; and
        `role`'s own Kafka settings, if any."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "PYTHONUNBUFFERED": "1",
        }
        for service in SERVICES:
            env[f"{service.upper()}_TENANTS_FILE"] = str(self.tenants_file)
        for tenant in self.tenants:
            env.update(self.credentials.tenant_env(tenant["id"]))
        env.update(self.service_env)
        env.update(self.kafka_env.get(role, {}))
        return env

    def write_tenants(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tenants_file.write_text(yaml.safe_dump({"tenants": self.tenants}, sort_keys=False))
        return self.tenants_file

    # -- processes ----------------------------------------------------------------

    def start_simulators(self, timeout: float = 30.0) -> None:
        """Siesa and Kong, and the WMS and webhook receiver when a tenant writes to them;
        started together, then waited for."""
        used = {t["target"]["type"] for t in self.tenants}
        names = ["siesa", "kong", *(n for n in ("wms", "webhook") if n in used)]
        for name in names:
            self._start(f"sim-{name}", *self._simulator(name))
        for name in names:
            self._wait_http(f"sim-{name}", f"{self.sim_url(name)}/_admin/stats", timeout)

    def start_simulator(self, name: str, timeout: float = 30.0) -> None:
        """One simulator: `siesa` (extractor tests need no target), `kong`, `wms`, `webhook`."""
        self._start(f"sim-{name}", *self._simulator(name))
        self._wait_http(f"sim-{name}", f"{self.sim_url(name)}/_admin/stats", timeout)

    def start_wms_simulator(self, timeout: float = 30.0) -> None:
        self.start_simulator("wms", timeout)

    def start_siesa_simulator(self, timeout: float = 30.0) -> None:
        self.start_simulator("siesa", timeout)

    def sim_url(self, name: str) -> str:
        port = {"siesa": self.siesa_port, "kong": self.kong_port, "wms": self.wms_port}
        return f"http://127.0.0.1:{port.get(name, self.webhook_port)}"

    def _simulator(self, name: str) -> tuple[list[str], dict[str, str]]:
        creds = self.credentials
        env = {
            "siesa": {
                "SIESA_SIM_CONNI_KEY": creds.conni_key,
                "SIESA_SIM_CONNI_TOKEN": creds.conni_token,
            },
            "kong": {"KONG_SIM_USERS": f"{creds.kong_user}:{creds.kong_password}"},
            "wms": {"WMS_SIM_USERS": f"{creds.wms_user}:{creds.wms_password}"},
            "webhook": {"WEBHOOK_SIM_SECRET": creds.webhook_secret},
        }[name]
        return ["sim", name, "--port", str(self.sim_url(name).rsplit(":", 1)[1])], env

    def start_loader(self, name: str = "loader", **settings: str) -> None:
        """One more loader process (`LOADER_<KEY>` env from `settings`), e.g.
        `start_loader("loader-2", INSTANCE_ID="2")`."""
        self.write_tenants()
        env = {
            **self.env("loader"),
            **{f"LOADER_{k.upper()}": v for k, v in settings.items()},
        }
        self._start(name, ["run", "loader"], env)

    def start_extractor(self, name: str = "extractor", **settings: str) -> None:
        """One more extractor instance (`EXTRACTOR_<KEY>` env from `settings`), on a
        health port of its own, e.g. `start_extractor("extractor-2", INSTANCE_ID="e2")`."""
        self.write_tenants()
        self.health_ports[name] = procs.free_port()
        env = {
            **self.env("extractor"),
            "EXTRACTOR_HEALTH_PORT": str(self.health_ports[name]),
            **{f"EXTRACTOR_{k.upper()}": v for k, v in settings.items()},
        }
        self._start(name, ["run", "extractor"], env)

    def start_services(self, names: tuple[str, ...] = SERVICES) -> None:
        self.write_tenants()
        for name in names:
            env = self.env(name)
            if self.free_health_ports:
                self.health_ports[name] = procs.free_port()
                env[f"{name.upper()}_HEALTH_PORT"] = str(self.health_ports[name])
            if name != "extractor":
                # A stable transactional id and state writer: a restarted transformer
                # fences its killed predecessor's open transaction at once, instead of
                # downstream readers waiting for that transaction to time out.
                env.setdefault(f"{name.upper()}_INSTANCE_ID", name)
            self._start(name, ["run", name], env)

    def start_console(self, users_file: Path, port: int, timeout: float = 30.0) -> str:
        """`siesa-sync console` on ``port`` for this stack's topics and tenants, reading
        the services' /metrics; its users from ``users_file``. Returns its base URL."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "PYTHONUNBUFFERED": "1",
            "CONSOLE_PORT": str(port),
            "CONSOLE_USERS_FILE": str(users_file),
            "CONSOLE_TENANTS_FILE": str(self.tenants_file),
            "CONSOLE_METRICS_URLS": ",".join(f"{self.health_url(n)}/metrics" for n in SERVICES),
            "CONSOLE_REFRESH_S": "2",
            "CONSOLE_METRICS_INTERVAL_S": "2",
            **{k: v for k, v in self.service_env.items() if k.startswith("CONSOLE_")},
        }
        self._start("console", ["console"], env)
        url = f"http://127.0.0.1:{port}"
        self._wait_http("console", f"{url}/login", timeout)
        return url

    def health_url(self, name: str) -> str:
        """The base URL of service `name`'s health and metrics endpoints."""
        port = self.health_ports.get(name, DEFAULT_HEALTH_PORTS[name])
        return f"http://127.0.0.1:{port}"

    def create_topics(self) -> str:
        return self.run_cli(["topics", "create"])

    def run_cli(self, args: list[str]) -> str:
        done = subprocess.run(
            [*procs.python_module("services.cli"), *args],
            env={**os.environ, **self.env("cli")},
            capture_output=True,
            text=True,
            check=False,
            cwd=procs.ROOT,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"siesa-sync {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def stop(self, name: str) -> int | None:
        process = self.processes.pop(name, None)
        return process.stop() if process else None

    def kill(self, name: str) -> None:
        """`kill -9` process `name` (fault tests); `restart` starts it again."""
        self.processes.pop(name).kill()

    def restart(self, name: str) -> None:
        """Start process `name` again, as it was started the first time."""
        cli_args, env = self.launches[name]
        self._start(name, cli_args, env)

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {name} ({process.log_path}) ---\n{process.log_tail(lines)}"
            for name, process in self.processes.items()
        )

    def check_alive(self) -> None:
        """Raise with the log tail of any process that died on its own."""
        for name, process in self.processes.items():
            if not process.alive():
                raise RuntimeError(
                    f"{name} exited ({process.popen.returncode}):\n{process.log_tail()}"
                )

    def _start(self, name: str, cli_args: list[str], env: dict[str, str]) -> None:
        self.launches[name] = (cli_args, env)
        self.processes[name] = procs.start(
            name,
            procs.python_module("services.cli", *cli_args),
            env=env,
            run_dir=self.run_dir,
        )

    def _wait_http(self, name: str, url: str, timeout: float) -> None:
        def up() -> bool:
            self.check_alive()
            return procs.http_ok(url)

        procs.wait_until(up, timeout=timeout, what=f"{name} at {url}")

    # -- simulator admin --------------------------------------------------------------

    def seed(self, company: int, count: int, seed: int = 42) -> None:
        response = httpx.post(
            f"{self.siesa_url}/_admin/companies/{company}/seed",
            json={"count": count, "seed": seed},
            timeout=60,
        )
        response.raise_for_status()

    def upsert_items(
        self, company: int, rows: list[dict[str, Any]], *, keep_dates: bool = False
    ) -> None:
        response = httpx.post(
            f"{self.siesa_url}/_admin/companies/{company}/items",
            params={"keep_dates": "true"} if keep_dates else None,
            json=rows,
            timeout=60,
        )
        response.raise_for_status()

    def delete_item(self, company: int, referencia: str) -> None:
        response = httpx.delete(
            f"{self.siesa_url}/_admin/companies/{company}/items/{referencia}", timeout=60
        )
        response.raise_for_status()

    def siesa_faults(self, faults: dict[str, Any]) -> None:
        """Replace the Siesa simulator's injected faults (``{}`` clears them)."""
        httpx.post(f"{self.siesa_url}/_admin/faults", json=faults, timeout=10).raise_for_status()

    def siesa_stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.siesa_url}/_admin/stats", timeout=60)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def siesa_items(self, company: int) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.siesa_url}/_admin/companies/{company}/items", timeout=60)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()
        return items

    def held(self, target: str) -> list[dict[str, Any]]:
        """What target simulator `kong`, `wms` or `webhook` stores now."""
        url, path = {
            "kong": (self.kong_url, "skus"),
            "wms": (self.wms_url, "products"),
            "webhook": (self.webhook_url, "products"),
        }[target]
        response = httpx.get(f"{url}/_admin/{path}", timeout=60)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()
        return items

    def kong_skus(self) -> list[dict[str, Any]]:
        return self.held("kong")

    def wms_products(self) -> list[dict[str, Any]]:
        return self.held("wms")

    def set_faults(self, url: str, **faults: Any) -> dict[str, Any]:
        """`POST {url}/_admin/faults` (a simulator's base URL): replaces its faults."""
        response = httpx.post(f"{url}/_admin/faults", json=faults, timeout=30)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def sim_stats(self, url: str) -> dict[str, Any]:
        response = httpx.get(f"{url}/_admin/stats", timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats
