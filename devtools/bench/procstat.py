"""What a benchmark reads about a running process from /proc (Linux): its thread count,
its CPU time, and a sampler that keeps each process's peak thread count and RSS while a
long benchmark runs (the kernel keeps the RSS peak itself, VmHWM; not the threads')."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from devtools import procs

log = logging.getLogger("bench.procstat")

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> int:
    """How many threads process `pid` has now (``Threads:`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Threads":
            return int(value)
    raise ValueError(f"/proc/{pid}/status has no Threads line")


def cpu_seconds(pid: int) -> float:
    """CPU seconds process `pid` has used so far, user + system, all its threads
    (fields 14 and 15 of /proc/<pid>/stat, after the command name in parentheses)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@dataclass
class Peaks:
    """The highest thread count seen, and the latest sample, of one process."""

    threads: int = 0
    last_threads: int = 0
    last_rss_mb: float = 0.0


@dataclass
class Sampler:
    """Samples the threads and RSS of processes (name -> pid) every `interval` seconds
    in a daemon thread, from `start()` to `stop()`. A process that ended is skipped."""

    pids: dict[str, int]
    interval: float = 1.0
    peaks: dict[str, Peaks] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.peaks = {name: Peaks() for name in self.pids}
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.sample()

    def sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                count = threads(pid)
                rss, _ = procs.memory_mb(pid)
            except (OSError, ValueError, KeyError):
                continue  # it ended; its last sample stands
            peak = self.peaks[name]
            peak.threads = max(peak.threads, count)
            peak.last_threads, peak.last_rss_mb = count, rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):  # a sampling period, not a wait for a condition
            self.sample()
