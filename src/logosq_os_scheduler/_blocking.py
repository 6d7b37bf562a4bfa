"""BlockingScheduler: the scheduler for synchronous scripts and notebooks' plain cells."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._config import SchedulerConfig
from ._errors import SchedulerClosedError
from ._handle import TaskHandle
from ._runtime import new_event_loop
from ._scheduler import QuantumScheduler
from ._task import Task, TaskBuilder
from .observability._metrics import SchedulerMetrics

__all__ = ["BlockingScheduler"]

T = TypeVar("T")


class BlockingScheduler:
    """A :class:`QuantumScheduler` running on its own event-loop thread, driven by plain calls.

    For code that is not async: each method blocks until the loop has done its part, and
    handles are waited on with ``handle.result(timeout)``::

        with BlockingScheduler(4) as scheduler:
            handle = scheduler.submit(Task.classical("add").with_function(add, 1, 2))
            print(handle.result().value)

    Args:
        workers: Classical slots and worker threads.
        config: All settings at once.
        use_uvloop: Use uvloop for the loop (None: if installed).
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        config: SchedulerConfig | None = None,
        use_uvloop: bool | None = None,
    ) -> None:
        self._loop = new_event_loop(use_uvloop=use_uvloop)
        self._scheduler = QuantumScheduler(workers, config=config)
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
            return fut.result(timeout)
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

    def metrics(self) -> SchedulerMetrics:
        """A metrics snapshot; see :meth:`QuantumScheduler.metrics`."""
        return self._call(_snapshot(self._scheduler))

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
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> BlockingScheduler:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(cancel_pending=exc_type is not None)


async def _snapshot(scheduler: QuantumScheduler) -> SchedulerMetrics:
    return scheduler.metrics()
