"""glibc's malloc arenas, capped for every service.

glibc gives threads that allocate at once arenas of their own, up to 8 per core, and an
arena's freed memory mostly stays with it. The loader's pool makes its HTTP calls on 64
threads: in the scale bench (1,000 tenants) its 15 arenas held 61 MB of its 234 MB,
growing as the calls went on. The GIL lets one thread allocate at a time anyway, so a
couple of arenas cost nothing in speed. `MALLOC_ARENA_MAX`, when set, wins (glibc read it
at start-up); on a C library without `mallopt` (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap the arenas at `arenas` (call before threads start); whether it was done."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, done)
    return done
