"""A hard time budget for a piece of Python code: a watchdog thread interrupts it.

`run(budget_s, fn, *args)` calls `fn(*args)` in the calling thread. A daemon thread
checks every `TICK_S` the calls in flight; when one has used its budget, it raises
`_Overrun` in that thread (`PyThreadState_SetAsyncExc`), which CPython delivers at the
thread's next bytecode boundary, whatever Python code it is running. `run` turns it
into `Overran`, an ordinary exception. So a call ends at most about two `TICK_S` plus
one GIL switch interval (5 ms) after its budget.

The budget is the calling thread's CPU time (as the `regex` module's timeouts are): a
call is not charged for the time its process waits for a CPU on a busy machine or
under a container's CPU quota, which would otherwise fail innocent calls at random.

What a thread cannot be interrupted in is a single long C call (a huge sequence repeat,
`str()` of a huge value, a regex match): code run under the watchdog must bound the
cost of each such call before making it (`services/transformer/bounds.py` does, for
expressions), or carry its own timeout (`patterns.py`).

The protocol is safe against the race between a call ending and the watchdog firing:
the watchdog fires at most once per call and only while holding a lock, after checking
the call is still in flight; the call's end takes the same lock to leave the table and,
if the watchdog fired, cancels the exception should it not be delivered yet. `_Overrun`
is a BaseException, so no `except Exception` inside the call swallows it.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

TICK_S = 0.01

P = ParamSpec("P")
R = TypeVar("R")

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int


class Overran(Exception):
    """The call went over its budget and was interrupted."""


class _Overrun(BaseException):
    """Raised inside the thread by the watchdog; never leaves `run`."""


class _Call:
    """One call in flight. Its start costs no clock reading: the watchdog reads the
    thread's CPU clock when it first sees the call, and the budget runs from there."""

    __slots__ = ("budget", "clock", "deadline", "fired")

    def __init__(self, clock: int, budget: float) -> None:
        self.clock = clock  # the calling thread's CPU-time clock
        self.budget = budget
        self.deadline: float | None = None  # on that clock, once the watchdog saw the call
        self.fired = False


_THREAD = threading.local()


def _clock() -> int:
    """This thread's CPU-time clock."""
    clock: int | None = getattr(_THREAD, "clock", None)
    if clock is None:
        clock = _THREAD.clock = time.pthread_getcpuclockid(threading.get_ident())
    return clock


class Watchdog:
    """One daemon thread watching the deadlines of every `run` in flight (one per thread)."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self.tick_s = tick_s
        self._calls: dict[int, _Call] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def run(self, budget_s: float, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """`fn(*args, **kwargs)`, or Overran once it has used `budget_s` seconds of CPU."""
        if self._thread is None:
            self._start()
        thread = threading.get_ident()
        if thread in self._calls:  # nested: the outer call's budget governs
            return fn(*args, **kwargs)
        call = _Call(_clock(), budget_s)
        try:
            try:
                self._calls[thread] = call
                return fn(*args, **kwargs)
            finally:
                self._end(thread, call)
        except _Overrun:
            # The exception may have landed inside the first `_end`, cutting it short.
            self._end(thread, call)
            raise Overran(f"took longer than {budget_s * 1000:.0f} ms") from None

    def _end(self, thread: int, call: _Call) -> None:
        with self._lock:
            if self._calls.get(thread) is call:
                del self._calls[thread]
            if call.fired:
                _set_async_exc(thread, ctypes.py_object())  # NULL: cancel if still pending

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """End the watching thread (calls in flight are no longer watched)."""
        self._stop.set()

    def _after_fork(self) -> None:
        """A forked child has none of the parent's threads: it starts its own."""
        _THREAD.__dict__.clear()  # the clock of the thread that forked, not of this one
        self._calls = {}
        self._lock = threading.Lock()
        self._thread = None

    def _watch(self) -> None:
        while not self._stop.wait(self.tick_s):
            with self._lock:
                for thread, call in list(self._calls.items()):
                    if call.fired:
                        continue
                    try:
                        used = time.clock_gettime(call.clock)
                    except OSError:  # its thread is gone: nothing to interrupt
                        continue
                    if call.deadline is None:
                        call.deadline = used + call.budget
                    elif used > call.deadline:
                        call.fired = True
                        _set_async_exc(thread, ctypes.py_object(_Overrun))


WATCHDOG = Watchdog()
os.register_at_fork(after_in_child=WATCHDOG._after_fork)
