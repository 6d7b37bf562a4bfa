"""The job a primitive's ``run()`` returns, and how it reaches the scheduler's loop.

See the package documentation (Threads and loops) for where ``run()`` may be called from.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from qiskit.primitives import BasePrimitiveJob, PrimitiveResult
from qiskit.providers import JobStatus

from ..._context import _current_task
from ..._errors import SchedulerError
from ..._protocols import BlockingRuntime, WorkflowRuntime

if TYPE_CHECKING:
    from ..._handle import TaskHandle
    from ..._result import TaskResult

__all__ = ["SchedulerPrimitiveJob", "as_scheduler", "await_all", "start_job"]


def as_scheduler(scheduler: WorkflowRuntime | BlockingRuntime) -> WorkflowRuntime:
    """The scheduler a primitive submits to: the one given, or a BlockingScheduler's."""
    inner = getattr(scheduler, "scheduler", None)
    if isinstance(inner, WorkflowRuntime):
        return inner  # a BlockingScheduler
    if isinstance(scheduler, WorkflowRuntime):
        return scheduler
    raise TypeError(
        f"expected a QuantumScheduler or BlockingScheduler, got {type(scheduler).__name__}"
    )


def _loop_of(scheduler: WorkflowRuntime) -> asyncio.AbstractEventLoop:
    """The loop the scheduler runs on.

    Raises:
        SchedulerError: If the scheduler has not started (it binds to a loop on first use).
    """
    loop: asyncio.AbstractEventLoop | None = scheduler._loop
    if loop is None:
        raise SchedulerError(
            "the scheduler has not started: use it in `async with QuantumScheduler()` first, "
            "or use a BlockingScheduler from synchronous code"
        )
    return loop


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def await_all(handles: Sequence[TaskHandle[Any]]) -> list[Any]:
    """Wait for every handle and return their values in order.

    If any task fails, or the waiting coroutine is cancelled, every task still unfinished is
    cancelled before the error propagates: nothing outlives the caller.

    Raises:
        TaskError: The first failure's error (TaskFailedError, TaskCancelledError, ...).
    """
    try:
        results = [await h for h in handles]
    except BaseException:
        for h in handles:
            if not h.done():
                h.cancel()
        raise
    _ran_on(results)
    return [r.value for r in results]


def _ran_on(results: Sequence[TaskResult[Any]]) -> None:
    """Record on the hybrid task running this code (a VQE's, a QAOA's) the backends its
    circuits ran on, so that its result names them as a circuit's names its own: one name,
    or several joined by commas in the order first used. Elsewhere (a primitive called from
    a classical task or outside any task) nothing is recorded."""
    task = _current_task.get()
    if task is None or task.algorithm is None:
        return
    for result in results:
        name = result.backend
        if name is None:
            continue  # classical work (exact estimation) runs on no backend
        used = task.backend_used
        if used is None:
            task.backend_used = name
        elif name not in used.split(","):
            task.backend_used = f"{used},{name}"


class SchedulerPrimitiveJob(BasePrimitiveJob[PrimitiveResult[Any], JobStatus]):  # type: ignore[misc]
    """The job a :class:`SchedulerSampler` or :class:`SchedulerEstimator` ``run()`` returns.

    ``result()`` blocks the calling thread (not the scheduler's loop) until the job is done;
    on the loop, ``await job`` instead. ``cancel()`` cancels every task of the job, from any
    thread. Statuses are Qiskit's ``JobStatus``: RUNNING while any of its tasks is in the
    scheduler, then DONE, ERROR or CANCELLED.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Coroutine[Any, Any, PrimitiveResult[Any]],
    ) -> None:
        super().__init__(str(uuid.uuid4()))
        self._loop = loop
        self._task: asyncio.Task[PrimitiveResult[Any]] | None = None
        self._future: concurrent.futures.Future[PrimitiveResult[Any]]
        if _on_loop(loop):
            # On the loop: start now and mirror the outcome for status() and result().
            task = loop.create_task(work)
            self._task = task
            self._future = concurrent.futures.Future()
            self._future.set_running_or_notify_cancel()
            task.add_done_callback(self._mirror)
        else:
            # From another thread: the loop runs the work; cancelling this future cancels it.
            self._future = asyncio.run_coroutine_threadsafe(work, loop)

    def _mirror(self, task: asyncio.Task[PrimitiveResult[Any]]) -> None:
        if task.cancelled():
            # A running concurrent future cannot be cancelled: record it as CancelledError.
            self._future.set_exception(concurrent.futures.CancelledError())
        elif (exc := task.exception()) is not None:
            self._future.set_exception(exc)
        else:
            self._future.set_result(task.result())

    def result(self) -> PrimitiveResult[Any]:
        """Block until the job is done and return its result.

        Raises:
            SchedulerError: If called on the scheduler's loop while the job is not done.
            TaskError: If one of its tasks failed (the backend's error is ``__cause__``).
            concurrent.futures.CancelledError: If the job was cancelled.
        """
        if not self._future.done() and _on_loop(self._loop):
            raise SchedulerError(
                "job.result() would block the scheduler's event loop: `await job` instead"
            )
        return self._future.result()

    def __await__(self) -> Any:
        if self._task is not None:
            return self._task.__await__()
        return asyncio.wrap_future(self._future).__await__()

    def status(self) -> JobStatus:
        """The job's status."""
        fut = self._future
        if self._task is not None and self._task.cancelled():
            return JobStatus.CANCELLED
        if fut.cancelled():
            return JobStatus.CANCELLED
        if not fut.done():
            return JobStatus.RUNNING
        exc = fut.exception()
        if isinstance(exc, concurrent.futures.CancelledError):
            return JobStatus.CANCELLED
        return JobStatus.DONE if exc is None else JobStatus.ERROR

    def done(self) -> bool:
        """Whether the job finished successfully."""
        return self.status() is JobStatus.DONE

    def running(self) -> bool:
        """Whether the job is still in the scheduler."""
        return self.status() is JobStatus.RUNNING

    def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return self.status() is JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        """Whether the job is DONE, ERROR or CANCELLED."""
        return self._future.done()

    def cancel(self) -> bool:
        """Cancel the job and its unfinished tasks. Safe from any thread.

        Returns:
            True if the job was still running.
        """
        if self._future.done():
            return False
        if self._task is not None:
            task = self._task
            if _on_loop(self._loop):
                task.cancel()
            else:
                self._loop.call_soon_threadsafe(task.cancel)
            return True
        return self._future.cancel()


def start_job(
    scheduler: WorkflowRuntime, work: Coroutine[Any, Any, PrimitiveResult[Any]]
) -> SchedulerPrimitiveJob:
    try:
        loop = _loop_of(scheduler)
    except BaseException:
        work.close()
        raise
    return SchedulerPrimitiveJob(loop, work)
