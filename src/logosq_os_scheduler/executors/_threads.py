"""A pool of worker threads that hands results back to the event loop in batches."""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .._context import _current_task
from .._task import Task
from ..core._state import TERMINAL

__all__ = ["ThreadWorkers"]

# (task, ok, value-or-exception, seconds the call took). NOT_CALLED as the seconds: the task
# had already ended (cancelled or timed out) when a thread took it, so its function never ran.
Completion = tuple[Task[Any], bool, Any, float]
NOT_CALLED = -1.0


class ThreadWorkers:
    """``n`` daemon threads running synchronous task functions.

    Unlike ``loop.run_in_executor``, completions are not posted to the loop one by one: a
    worker appends to a shared deque and wakes the loop only if no wake-up is already pending,
    so a burst of short tasks costs one loop wake-up per batch, not per task.

    The scheduler never gives this pool more tasks than it has threads (each running task
    holds one of the ``n`` classical slots), so a task never waits here.

    Python cannot stop a thread. When a task running here times out or is cancelled, the
    scheduler may :meth:`abandon` its thread: the thread is taken out of the pool and a
    replacement is started, so ``n`` threads stay available; the abandoned thread runs the
    function to its end, drops the result and exits instead of rejoining the pool.

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
        # The pool's own threads, abandoned ones excluded: close() asks each of them to exit.
        self._threads: list[threading.Thread] = []
        self._numbers = itertools.count()
        # Threads blocked in a checkpoint while their task is PREEMPTED; each parked thread is
        # replaced so that n threads stay available to run tasks.
        self._parked = 0
        self._closed = False
        # task -> the thread running its function. Invariant: a task is a key iff its function
        # is running on a thread that has not been abandoned. A worker adds the key before the
        # call and pops it after; abandon() pops it on the loop. dict.pop is atomic, so exactly
        # one side gets the thread: the worker (it reports the result and rejoins the pool) or
        # abandon() (the worker finds the key gone, drops the result and exits).
        self._running: dict[Task[Any], threading.Thread] = {}
        # Guards _abandoned_running, which abandon() raises and exiting threads lower.
        self._lock = threading.Lock()
        self._abandoned_running = 0
        self._abandoned_total = 0

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

    @property
    def abandoned_total(self) -> int:
        """Threads abandoned so far (see :meth:`abandon`)."""
        return self._abandoned_total

    @property
    def abandoned_running(self) -> int:
        """Abandoned threads whose function has not returned yet."""
        return self._abandoned_running

    def thread_of(self, task: Task[Any]) -> threading.Thread | None:
        """The pool thread running ``task``'s function now, or None."""
        return self._running.get(task)

    def abandon(self, task: Task[Any]) -> threading.Thread | None:
        """Give up the thread running ``task``, which has ended early, and replace it.

        Call on the loop. The thread leaves the pool (renamed ``<name>-abandoned``): once
        the function returns, its result is dropped and the thread exits. A new thread takes
        its place, so the pool keeps its size.

        Returns:
            The abandoned thread, or None if the function had already returned (its
            completion is on its way to the loop and the thread stays in the pool).
        """
        with self._lock:
            thread = self._running.pop(task, None)
            if thread is None:
                return None
            self._abandoned_running += 1
        self._abandoned_total += 1
        if thread in self._threads:
            self._threads.remove(thread)
        thread.name = f"{thread.name}-abandoned"
        if not self._closed:
            self._spawn()
        return thread

    def _start_threads(self) -> None:
        for _ in range(self._n):
            self._spawn()

    def _spawn(self) -> None:
        t = threading.Thread(
            target=self._work, name=f"{self._name}-{next(self._numbers)}", daemon=True
        )
        t.start()
        self._threads.append(t)

    def _work(self) -> None:
        inbox = self._inbox
        done = self._done
        running = self._running
        me = threading.current_thread()
        perf = time.perf_counter
        set_current = _current_task.set
        while True:
            task = inbox.get()
            if task is None:
                return
            fn = task.fn
            assert fn is not None
            running[task] = me
            if task.status in TERMINAL:
                # It ended before this thread took it: it is not run. (Read after the key is
                # set: an end that abandon() did not see, because it looked first, is seen here.)
                value = None
                ok = False
                seconds = NOT_CALLED
            else:
                set_current(task)
                t0 = perf()
                try:
                    value = fn(*task.args, **task.kwargs)
                    ok = True
                except BaseException as exc:  # a task's failure is reported, never kills a worker
                    value = exc
                    ok = False
                seconds = perf() - t0
                set_current(None)
            if running.pop(task, None) is None:
                # Abandoned while the function ran: the scheduler has already ended the task,
                # freed its slot and replaced this thread. Drop the result and leave.
                del task, value, fn
                with self._lock:
                    self._abandoned_running -= 1
                return
            done.append((task, ok, value, seconds))
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
