"""Starting, waiting for and stopping the project's own processes, by PID.

Used by the Makefile targets (`up`, `down`, `demo`), the test harness and the
benchmarks, so a process is always started, recorded and stopped the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".run"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Wait for `condition` to hold, or raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or condition}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code < 500
    except httpx.HTTPError:
        return False


@dataclass
class Process:
    """A child process started by us, recorded in `<run_dir>/pids/<name>.pid`."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    pid_file: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        code = stop_pid(self.pid, timeout=timeout, popen=self.popen)
        self.pid_file.unlink(missing_ok=True)
        return code

    def kill(self) -> None:
        """SIGKILL at once (fault tests)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()
        self.pid_file.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    run_dir: Path = RUN_DIR,
    cwd: Path = ROOT,
) -> Process:
    """Start `argv` in its own session, its output in `<run_dir>/logs/<name>.log`."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "pids").mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "logs" / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file = run_dir / "pids" / f"{name}.pid"
    # The command line too, so a later `down` never signals a stranger that reused the PID.
    pid_file.write_text(f"{popen.pid}\n{' '.join(argv)}\n")
    return Process(name=name, popen=popen, log_path=log_path, pid_file=pid_file)


def python_module(module: str, *args: str) -> list[str]:
    """argv to run `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def stop_pid(
    pid: int, *, timeout: float = 20.0, popen: subprocess.Popen[bytes] | None = None
) -> int | None:
    """Stop one process we started, by PID: SIGTERM, then SIGKILL after `timeout`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return popen.wait() if popen else None
    if popen is not None:
        try:
            return popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            return popen.wait()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return None
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt, as Ctrl-C does, so a long run (bench, demo,
    soak) killed by PID still runs its `finally` blocks and stops what it started."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of process `pid` in MB, from /proc (Linux): VmRSS and
    VmHWM, the kernel's high-water mark of the resident set."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def stop_recorded(run_dir: Path = RUN_DIR, names: Sequence[str] | None = None) -> list[str]:
    """Stop the processes recorded under `<run_dir>/pids` (all, or those named)."""
    pid_dir = run_dir / "pids"
    stopped: list[str] = []
    if not pid_dir.is_dir():
        return stopped

    # Services first (they commit and leave their groups), simulators next, the broker last.
    def order(name: str) -> int:
        if name == "kafka" or name.startswith("kafka-"):  # a broker, or a cluster's node
            return 2
        return 1 if name.startswith("sim-") else 0

    pid_files = sorted(pid_dir.glob("*.pid"), key=lambda f: (order(f.stem), f.stem))
    for pid_file in pid_files:
        name = pid_file.stem
        if names is not None and name not in names:
            continue
        try:
            pid_line, _, cmdline = pid_file.read_text().partition("\n")
            pid = int(pid_line)
        except ValueError:
            pid_file.unlink(missing_ok=True)
            continue
        if _pid_alive(pid) and _cmdline(pid) == cmdline.strip():
            stop_pid(pid)
            stopped.append(name)
        pid_file.unlink(missing_ok=True)
    return stopped
