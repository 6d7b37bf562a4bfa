"""BlockingScheduler: the scheduler for synchronous scripts and notebooks' plain cells."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._coerce import coerce_seconds
from ._config import SchedulerConfig
from ._errors import InvalidConfigError, SchedulerClosedError
from ._handle import TaskHandle, future_result
from ._runtime import new_event_loop
from ._scheduler import QuantumScheduler, _snapshot
from ._task import Task, TaskBuilder
from .observability._metrics import SchedulerMetrics

__all__ = ["BlockingScheduler"]

T = TypeVar("T")

# After a second Ctrl-C the wait is abandoned: every unfinished task is cancelled, and closing
# gets this long to finish its bookkeeping before the loop is stopped regardless.
_ABANDON_SECONDS = 2.0


class BlockingScheduler:
    """A :class:`QuantumScheduler` running on its own event-loop thread, driven by plain calls.

    For code that is not async: each method blocks until the loop has done its part, and
    handles are waited on with ``handle.result(timeout)``::

        with BlockingScheduler(4) as scheduler:
            handle = scheduler.submit(Task.classical("add").with_function(add, 1, 2))
            print(handle.result().value)

    Ctrl-C inside the ``with`` block cancels the tasks still queued, says on stderr how many
    running tasks it waits for, and waits at most ``interrupt_timeout`` seconds for them
    before cancelling them too; a second Ctrl-C stops waiting at once. A synchronous function
    on a worker thread cannot be interrupted: once cancelled, its result is dropped and its
    (daemon) thread does not keep the program from exiting.

    Args:
        workers: Classical slots and worker threads.
        config: All settings at once.
        use_uvloop: Use uvloop for the loop (None: if installed).
        interrupt_timeout: Seconds leaving the ``with`` block on Ctrl-C waits for running
            tasks to end before cancelling them (default 10; 0 cancels them at once; None
            waits for them all, until a second Ctrl-C).
        journal: Path of a durable journal (see :class:`QuantumScheduler`).

    Raises:
        InvalidConfigError: If ``interrupt_timeout`` is negative or not a number.
        JournalError: If the journal cannot be opened.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        config: SchedulerConfig | None = None,
        use_uvloop: bool | None = None,
        interrupt_timeout: float | None = 10.0,
        journal: str | os.PathLike[str] | None = None,
    ) -> None:
        self._interrupt_timeout = coerce_seconds(
            "interrupt_timeout",
            interrupt_timeout,
            allow_none=True,
            allow_zero=True,
            error=InvalidConfigError,
        )
        self._scheduler = QuantumScheduler(workers, config=config, journal=journal)
        self._loop = new_event_loop(use_uvloop=use_uvloop)
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="logosq-scheduler", daemon=True
        )
        self._thread.start()
        started.wait()
        self._closed = False
        self._call(self._start())

    async def _start(self) -> None:
        await self._scheduler.__aenter__()

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(started.set)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future_result(fut, timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    @property
    def scheduler(self) -> QuantumScheduler:
        """The underlying async scheduler (use it only from coroutines run via :meth:`call`)."""
        return self._scheduler

    def call(self, fn: Callable[[QuantumScheduler], Coroutine[Any, Any, T]]) -> T:
        """Run ``await fn(scheduler)`` on the scheduler's loop and return what it returns."""
        return self._call(fn(self._scheduler))

    def submit(self, task: Task[T] | TaskBuilder[T]) -> TaskHandle[T]:
        """Submit a task; see :meth:`QuantumScheduler.submit`."""
        if self._closed:
            raise SchedulerClosedError("the scheduler is closed and accepts no new tasks")
        return self._call(self._scheduler.submit(task))

    def task(self, ref: int | str) -> TaskHandle[Any]:
        """A task's handle by id or client key; see :meth:`QuantumScheduler.task`."""
        return self._call(_find_task(self._scheduler, ref))

    def persisted(self, timeout: float | None = None) -> None:
        """Block until every task submitted so far is in the journal; see
        :meth:`QuantumScheduler.persisted`."""
        self._call(self._scheduler.persisted(), timeout)

    def metrics(self) -> SchedulerMetrics:
        """A metrics snapshot; see :meth:`QuantumScheduler.metrics`."""
        return self._call(_snapshot(self._scheduler))

    def cancel_all(self, *, queued_only: bool = False) -> int:
        """Cancel every unfinished task (only the queued ones with ``queued_only``); see
        :meth:`QuantumScheduler.cancel_all`. Returns how many were cancelled."""
        return self._call(_cancel_all(self._scheduler, queued_only))

    def join(self, timeout: float | None = None) -> None:
        """Block until every submitted task has ended."""
        self._call(self._scheduler.join(), timeout)

    def close(self, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Close the scheduler (see :meth:`QuantumScheduler.aclose`) and stop its thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._scheduler.aclose(cancel_pending=cancel_pending, timeout=timeout))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _close_interrupted(self) -> None:
        """Close after Ctrl-C: cancel the queue, wait (bounded, and saying so) for the rest."""
        if self._closed:
            return
        self._closed = True
        scheduler = self._scheduler
        try:
            running = self._call(_snapshot(scheduler)).running
            limit = self._interrupt_timeout
            closing = asyncio.run_coroutine_threadsafe(
                scheduler.aclose(cancel_pending=True, timeout=limit), self._loop
            )
            try:
                if running:
                    bound = "until they end" if limit is None else f"up to {limit:g} s"
                    _say(
                        f"interrupted: queued tasks cancelled; waiting {bound} for {running} "
                        "running task(s) to end (press Ctrl-C again to stop waiting)"
                    )
                future_result(closing)
            except KeyboardInterrupt:
                # The second Ctrl-C: cancel everything, let closing finish, then go.
                _say("interrupted again: cancelling the running tasks and exiting")
                cancel = asyncio.run_coroutine_threadsafe(_cancel_all(scheduler), self._loop)
                try:
                    future_result(cancel, _ABANDON_SECONDS)
                    future_result(closing, _ABANDON_SECONDS)
                except concurrent.futures.TimeoutError:
                    pass
        finally:
            self._stop_loop()

    def __enter__(self) -> BlockingScheduler:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if isinstance(exc, KeyboardInterrupt):
            self._close_interrupted()
        else:
            self.close(cancel_pending=exc_type is not None)


async def _cancel_all(scheduler: QuantumScheduler, queued_only: bool = False) -> int:
    return scheduler.cancel_all(queued_only=queued_only)


def _say(message: str) -> None:
    print(f"logosq: {message}", file=sys.stderr, flush=True)


async def _find_task(scheduler: QuantumScheduler, ref: int | str) -> TaskHandle[Any]:
    return scheduler.task(ref)
