"""The system packages the tests need beside the venv: Debian's `chromium` (the
console's browser test) and `promtool` (from the `prometheus` package: the alert rules'
checks). `make setup` runs this: it installs what is missing with apt-get when it can
(root on Debian), and otherwise says what to install and stops.

(On a host running systemd, Debian's `prometheus` package also enables a Prometheus
server; `systemctl disable --now prometheus` if it is not wanted. Only promtool is used.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# binary -> the Debian package that brings it
NEEDED = {"chromium": "chromium", "promtool": "prometheus"}


def missing() -> list[str]:
    return [package for binary, package in NEEDED.items() if shutil.which(binary) is None]


def main() -> None:
    packages = missing()
    if not packages:
        return
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        sys.exit(
            f"make setup: the tests need {', '.join(packages)} (Debian packages), which are "
            f"not installed and cannot be installed from here (needs root and apt-get). "
            f"Install them, e.g. `sudo {' '.join(command[:3])} {' '.join(packages)}`, "
            "then run make setup again."
        )
    print(f"installing {', '.join(packages)} with apt-get...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(command, check=True, env=env)
    still = missing()
    if still:
        sys.exit(f"make setup: apt-get ran but {', '.join(still)} is still missing")


if __name__ == "__main__":
    main()
