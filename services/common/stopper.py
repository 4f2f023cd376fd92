"""The process's stop flag: set by SIGTERM/SIGINT (or by code), read by every loop.

Every long-running part (the run loop, the extractor's pollers and command listener, a
request waiting for its budget) checks or waits on the same `Stopper`, so one signal
finishes the work in hand everywhere and nothing new starts.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


class Stopper:
    """A stop flag set by SIGTERM/SIGINT (or by code); `wait` sleeps until stopped."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def install(self) -> Stopper:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
        self._event.set()

    def finished(self) -> None:
        """The process is done and exiting: a further SIGTERM/SIGINT is ignored. (An
        orchestrator, or a person, may signal twice; the second one, landing while the
        interpreter shuts down and has put back the default handlers, would kill a
        process that stopped cleanly, turning its exit code 0 into -15.)"""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)

    def stop(self) -> None:
        self._event.set()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when woken by a stop."""
        return self._event.wait(seconds)
