"""A pool of worker threads that hands results back to the event loop in batches."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._context import _current_task
from .._task import Task

__all__ = ["ThreadWorkers"]

# (task, ok, value-or-exception, seconds the call took)
Completion = tuple[Task[Any], bool, Any, float]


class ThreadWorkers:
    """``n`` daemon threads running synchronous task functions.

    Unlike ``loop.run_in_executor``, completions are not posted to the loop one by one: a
    worker appends to a shared deque and wakes the loop only if no wake-up is already pending,
    so a burst of short tasks costs one loop wake-up per batch, not per task.

    The scheduler never gives this pool more tasks than it has threads (each running task
    holds one of the ``n`` classical slots), so a task never waits here.

    Args:
        n: Number of threads (started on first use).
        loop: The event loop that receives completions.
        on_done: Called on the loop thread with each batch of completions.
    """

    def __init__(
        self,
        n: int,
        loop: asyncio.AbstractEventLoop,
        on_done: Callable[[list[Completion]], None],
        *,
        name: str = "logosq-worker",
    ) -> None:
        self._n = n
        self._loop = loop
        self._on_done = on_done
        self._name = name
        self._inbox: queue.SimpleQueue[Task[Any] | None] = queue.SimpleQueue()
        self._done: deque[Completion] = deque()
        # Invariant: while _wake_pending is True a call to _drain is scheduled on the loop.
        # A worker sets it after appending; _drain clears it before draining, so no completion
        # appended before a worker reads False can be missed.
        self._wake_pending = False
        self._threads: list[threading.Thread] = []
        # Threads blocked in a checkpoint while their task is PREEMPTED; each parked thread is
        # replaced so that n threads stay available to run tasks.
        self._parked = 0
        self._closed = False

    @property
    def size(self) -> int:
        """Number of threads in the pool."""
        return self._n

    def submit(self, task: Task[Any]) -> None:
        """Run ``task.fn(*task.args, **task.kwargs)`` on a worker thread."""
        if not self._threads:
            self._start_threads()
        self._inbox.put(task)

    def resize(self, n: int) -> None:
        """Grow the pool to ``n`` threads (shrinking waits for close)."""
        if n > self._n:
            grow = n - self._n
            self._n = n
            if self._threads:
                for _ in range(grow):
                    self._spawn()

    def park(self) -> None:
        """A thread is about to block while its task is preempted: keep n threads free."""
        self._parked += 1
        if self._threads and len(self._threads) - self._parked < self._n:
            self._spawn()

    def unpark(self) -> None:
        """A parked thread's task resumes (the spare thread stays for the next park)."""
        self._parked -= 1

    def _start_threads(self) -> None:
        for _ in range(self._n):
            self._spawn()

    def _spawn(self) -> None:
        t = threading.Thread(
            target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
        )
        t.start()
        self._threads.append(t)

    def _work(self) -> None:
        inbox = self._inbox
        done = self._done
        perf = time.perf_counter
        set_current = _current_task.set
        while True:
            task = inbox.get()
            if task is None:
                return
            fn = task.fn
            assert fn is not None
            set_current(task)
            t0 = perf()
            try:
                value = fn(*task.args, **task.kwargs)
                ok = True
            except BaseException as exc:  # a task's failure is reported, never kills a worker
                value = exc
                ok = False
            done.append((task, ok, value, perf() - t0))
            set_current(None)
            del task, value, fn
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    self._loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # the loop is closed: nobody is left to tell
                    return

    def _drain(self) -> None:
        self._wake_pending = False
        done = self._done
        batch: list[Completion] = []
        while done:
            batch.append(done.popleft())
        if batch:
            self._on_done(batch)

    def close(self) -> None:
        """Ask every thread to exit once its current task returns (does not wait)."""
        if self._closed:
            return
        self._closed = True
        for _ in list(self._threads):
            self._inbox.put(None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the threads to exit (after :meth:`close`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            t.join(remaining)
