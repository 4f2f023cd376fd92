"""The malloc arenas cap (services/common/arenas.py), in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "from services.common.arenas import limit_arenas; print(limit_arenas())"


def probe(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_capped_on_glibc_unless_malloc_arena_max_says_otherwise() -> None:
    glibc = "glibc" in os.confstr("CS_GNU_LIBC_VERSION") if sys.platform == "linux" else False
    assert probe() == ("True" if glibc else "False")
    assert probe(MALLOC_ARENA_MAX="4") == "False"  # the user's own setting stands
