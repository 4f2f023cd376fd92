"""The stop flag's signals, in a process of its own: a SIGTERM stops the work in hand;
once the process is finished, another one no longer kills it (exit code 0 stands)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import os, signal
from services.common.stopper import Stopper
stopper = Stopper().install()
os.kill(os.getpid(), signal.SIGTERM)
assert stopper.wait(5), "the first SIGTERM stops"
stopper.finished()
# What the interpreter's shutdown does: a handler that is a Python function is put back
# to the default (which kills on SIGTERM); a signal ignored stays ignored.
if callable(signal.getsignal(signal.SIGTERM)):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
os.kill(os.getpid(), signal.SIGTERM)
print("exited cleanly")
"""


def test_a_second_sigterm_after_a_clean_stop_does_not_kill_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exited cleanly"
