"""The wheel, as a new user gets it: built from this checkout, installed (not editable)
into a fresh virtualenv with the locked runtime set, and run from another directory:
`--version`, `mappings check`, `topics create` on the test broker, and each service
until its /readyz answers 200. The runtime install holds no simulator dependency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from devtools import procs
from devtools.stack import SERVICES, Stack
from tests import ROOT

RUNTIME_LOCK = ROOT / "requirements" / "runtime.txt"
SIM_ONLY = {"starlette", "uvicorn", "uvloop", "httptools"}


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


def test_the_wheel_installs_and_runs_from_any_directory(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    uv = str(Path(sys.executable).parent / "uv")  # the locked uv of the checkout's venv
    tools_env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()

    build = [uv, "build", "--wheel", "--no-build-isolation", "--python", sys.executable]
    run([*build, "--out-dir", str(dist)], cwd=ROOT, env=tools_env)
    (wheel,) = dist.glob("siesa_sync-*.whl")
    run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], cwd=tmp_path, env=tools_env)
    python = str(venv / "bin" / "python")
    install = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", python]
    run([*install, "--require-hashes", "-r", str(RUNTIME_LOCK)], cwd=tmp_path, env=tools_env)
    run([*install, "--no-deps", str(wheel)], cwd=tmp_path, env=tools_env)

    # Another directory, and nothing of the checkout on the path.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "KAFKA_TOPIC_PREFIX": topic_prefix}
    cli = str(venv / "bin" / "siesa-sync")

    where = run([python, "-c", "import services; print(services.__file__)"], cwd=elsewhere)
    assert where.startswith(str(venv)), where
    assert run([cli, "--version"], cwd=elsewhere, env=env).startswith("siesa-sync 0.1.0 (Python")
    checked = run([cli, "mappings", "check"], cwd=elsewhere, env=env)
    assert "ok  siesa-items: siesa-items@" in checked
    created = run([cli, "topics", "create"], cwd=elsewhere, env=env)
    assert f"{topic_prefix}products.canonical.v1: created" in created

    stack = Stack(
        bootstrap=kafka_bootstrap,
        run_dir=tmp_path / "run",
        siesa_port=procs.free_port(),
        kong_port=procs.free_port(),
        topic_prefix=topic_prefix,
    )
    stack.tenants = [stack.kong_tenant("acme", 8585)]
    stack.write_tenants()
    started = {}
    try:
        for name in SERVICES:
            port = procs.free_port()
            service_env = {**env, **stack.env(), f"{name.upper()}_HEALTH_PORT": str(port)}
            service_env[f"{name.upper()}_INSTANCE_ID"] = name
            started[name] = (
                procs.start(
                    name, [cli, "run", name], env=service_env, run_dir=stack.run_dir, cwd=elsewhere
                ),
                f"http://127.0.0.1:{port}/readyz",
            )
        for name, (process, url) in started.items():

            def ready(p: procs.Process = process, u: str = url) -> bool:
                assert p.alive(), p.log_tail()
                return procs.http_ok(u) and httpx.get(u, timeout=2).status_code == 200

            procs.wait_until(ready, timeout=90, what=f"the installed {name} ready")
        metrics = httpx.get(started["loader"][1].replace("/readyz", "/metrics"), timeout=5).text
        assert 'siesa_sync_build_info{librdkafka="' in metrics
        assert 'version="0.1.0"' in metrics
    finally:
        for process, _url in started.values():  # all at once; then wait for each
            os.kill(process.pid, signal.SIGTERM)
        codes = {name: process.stop() for name, (process, _url) in started.items()}
    assert codes == dict.fromkeys(SERVICES, 0)

    # pip (the checkout's) looking into that venv, which has none of its own.
    pip = [sys.executable, "-m", "pip", "--python", python]
    installed = json.loads(run([*pip, "list", "--format=json"], cwd=elsewhere))
    names = {package["name"].lower() for package in installed}
    assert "siesa-sync" in names
    assert "confluent-kafka" in names
    assert not names & SIM_ONLY, names & SIM_ONLY
    shown = run([*pip, "show", "siesa-sync"], cwd=elsewhere)
    assert "Editable project location" not in shown

    sim = subprocess.run(
        [cli, "sim", "kong"], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
    )
    assert sim.returncode == 2
    assert "the simulators need the [sim] extra" in sim.stderr
