"""The loader's one pool of worker threads, shared by every tenant's lane.

Threads are bounded by `size` (`LOADER_WORKERS`), whatever the number of tenants, and
started only as work needs them. Each lane's calls wait in the lane's own queue (kept
here, per lane, only while the lane has work: an idle tenant costs the pool nothing)
and are handed to a thread only when the lane has a free slot: a lane never runs more
than its `concurrency` calls at once. Lanes with a queued call and a free slot take
turns, one call per turn, so a tenant with a thousand calls queued never goes ahead of
another's one call, and a slow tenant holds at most `concurrency` threads; its other
calls wait in its own queue, never in front of anyone else's.

A call's `Future` is done when the call ended; a queued call can be cancelled
(`cancel`), a call running cannot (it ends by its target's timeout).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What the pool needs of a lane: how many of its calls may run at once."""

    @property
    def concurrency(self) -> int: ...


@dataclass(eq=False)
class _Queue:
    owner: Owner
    calls: deque[tuple[Future[Any], Callable[[], Any]]] = field(default_factory=deque)
    running: int = 0
    waiting: bool = False  # in the pool's turns


class Workers:
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self.size = size
        self._cond = threading.Condition()
        self._queues: dict[int, _Queue] = {}  # id(owner) -> its queue, while it has work
        self._turns: deque[_Queue] = deque()  # queues with a call and a free slot
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._stopped = False

    @property
    def threads(self) -> int:
        return len(self._threads)

    def submit(self, owner: Owner, call: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue `call(*args)` in `owner`'s queue; it runs when `owner` has a free slot
        and its turn comes."""
        future: Future[Any] = Future()
        with self._cond:
            if self._stopped:
                future.cancel()
                return future
            queue = self._queues.get(id(owner))
            if queue is None:
                queue = self._queues[id(owner)] = _Queue(owner)
            queue.calls.append((future, lambda: call(*args)))
            self._offer(queue)
        return future

    def resized(self, owner: Owner) -> None:
        """`owner.concurrency` changed: a larger one may let queued calls start now."""
        with self._cond:
            queue = self._queues.get(id(owner))
            if queue is not None:
                self._offer(queue)

    def cancel(self, owner: Owner) -> int:
        """Cancel `owner`'s queued calls (those running end as they will); how many."""
        with self._cond:
            queue = self._queues.get(id(owner))
            if queue is None:
                return 0
            cancelled = 0
            while queue.calls:
                future, _call = queue.calls.popleft()
                cancelled += future.cancel()
            self._forget_if_idle(queue)
            return cancelled

    def running(self, owner: Owner) -> int:
        with self._cond:
            queue = self._queues.get(id(owner))
            return queue.running if queue is not None else 0

    def close(self) -> None:
        """Cancel every queued call and wait for the running ones to end."""
        with self._cond:
            self._stopped = True
            for queue in list(self._queues.values()):
                while queue.calls:
                    queue.calls.popleft()[0].cancel()
            self._turns.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    # -- inside (under self._cond) --------------------------------------------------------

    def _offer(self, queue: _Queue) -> None:
        """Give `queue` a turn if it has a call to start and a free slot."""
        if queue.waiting or not queue.calls or queue.running >= queue.owner.concurrency:
            return
        queue.waiting = True
        self._turns.append(queue)
        self._cond.notify()
        # Every turn has an idle thread coming for it, else a new thread (to the bound):
        # a turn never waits for a busy thread while the pool has room.
        if len(self._turns) > self._idle and len(self._threads) < self.size:
            thread = threading.Thread(
                target=self._work, name=f"upsert-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _forget_if_idle(self, queue: _Queue) -> None:
        if not queue.calls and not queue.running and not queue.waiting:
            self._queues.pop(id(queue.owner), None)

    def _next(self) -> tuple[_Queue, Future[Any], Callable[[], Any]] | None:
        with self._cond:
            while True:
                while not self._turns:
                    if self._stopped:
                        return None
                    self._idle += 1
                    self._cond.wait()
                    self._idle -= 1
                queue = self._turns.popleft()
                queue.waiting = False
                if queue.calls and queue.running < queue.owner.concurrency:
                    break
                self._forget_if_idle(queue)  # cancelled, or its concurrency lowered, since
            future, call = queue.calls.popleft()
            queue.running += 1
            self._offer(queue)  # its next call takes a turn behind the other lanes'
            return queue, future, call

    def _work(self) -> None:
        while (taken := self._next()) is not None:
            queue, future, call = taken
            try:
                if future.set_running_or_notify_cancel():
                    try:
                        result = call()
                    except BaseException as exc:  # noqa: BLE001 - handed to the future's owner
                        future.set_exception(exc)
                    else:
                        future.set_result(result)
            finally:
                with self._cond:
                    queue.running -= 1
                    self._offer(queue)
                    self._forget_if_idle(queue)
