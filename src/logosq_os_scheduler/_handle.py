"""TaskHandle: what submit() returns, to wait for, inspect or cancel a submitted task."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Generic, Protocol, TypeVar

from ._errors import (
    InternalError,
    InterruptedByRestartError,
    RetriesExhaustedError,
    SchedulerError,
    TaskCancelledError,
    TaskFailedError,
    TaskTimeoutError,
)
from ._result import TaskResult
from ._task import Task, TaskPriority, TaskStatus, TaskType
from .core._state import TERMINAL

__all__ = ["TaskHandle", "TaskRuntime"]

T = TypeVar("T")
R = TypeVar("R")

_S = TaskStatus


class TaskRuntime(Protocol):
    """What a :class:`TaskHandle` asks of the scheduler of its task (listed with the other
    runtime Protocols in :mod:`._protocols`; it lives here, beside its one user, so that
    the Protocols module may name TaskHandle without a circle)."""

    def _cancel_from_any_thread(self, task: Task[Any]) -> bool:
        """Cancel ``task`` (from any thread); True if this call ended it."""
        ...

    def _call_when_done(self, task: Task[Any], fn: Callable[[], None]) -> None:
        """Call ``fn()`` once ``task`` has ended (from any thread; at once if it has)."""
        ...


# How long the main thread blocks at a time in a wait (see wait_interruptibly).
_SLICE = 0.1


def wait_interruptibly(event: threading.Event, timeout: float | None) -> bool:
    """``event.wait(timeout)``, answering Ctrl-C on the main thread within :data:`_SLICE`.

    The kernel may hand SIGINT to any thread of the process. Python's handler runs only on
    the main thread, and a main thread blocked on a lock is woken only by a signal delivered
    to it: one delivered to a worker thread would leave it waiting for ever. Waiting in slices
    gives it a turn to run the handler after each.
    """
    if threading.current_thread() is not threading.main_thread():
        return event.wait(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
        if step <= 0:
            return event.is_set()
        if event.wait(step):
            return True


def future_result(fut: concurrent.futures.Future[R], timeout: float | None = None) -> R:
    """``fut.result(timeout)``, waited for in slices on the main thread so that Ctrl-C reaches
    it whichever thread the kernel handed it to (see :func:`wait_interruptibly`).

    Raises:
        TimeoutError: If ``fut`` is not done within ``timeout`` seconds.
    """
    done = threading.Event()
    fut.add_done_callback(lambda _f: done.set())
    if not wait_interruptibly(done, timeout):
        raise concurrent.futures.TimeoutError
    return fut.result()


class TaskHandle(Generic[T]):
    """A submitted task: await it for its :class:`TaskResult`, or inspect and cancel it.

    ``await handle`` returns the result of a completed task and raises otherwise:
    :class:`TaskFailedError` (the task's own exception as ``__cause__``),
    :class:`TaskTimeoutError` or :class:`TaskCancelledError`. From a thread other than the
    scheduler's, use the blocking :meth:`result`.
    """

    __slots__ = ("_task", "_scheduler", "_result")

    def __init__(self, task: Task[T], scheduler: TaskRuntime) -> None:
        self._task = task
        self._scheduler = scheduler
        self._result: TaskResult[T] | None = None

    @property
    def task(self) -> Task[T]:
        """The task itself, to read its fields (a service renders them); change nothing on
        it: its runtime fields belong to the scheduler."""
        return self._task

    @property
    def task_id(self) -> int:
        """The task's id."""
        return self._task.task_id

    @property
    def name(self) -> str:
        """The task's name."""
        return self._task.name

    @property
    def priority(self) -> TaskPriority:
        """The task's priority."""
        return self._task.priority

    @property
    def task_type(self) -> TaskType:
        """Classical, quantum or hybrid."""
        return self._task.task_type

    @property
    def key(self) -> str | None:
        """The task's client key (``with_key``), or None."""
        return self._task.key

    @property
    def user(self) -> str | None:
        """Whose task it is (``with_user``), or None."""
        return self._task.user

    @property
    def status(self) -> TaskStatus:
        """The task's status now (safe to read from any thread)."""
        return self._task.status

    @property
    def attempts(self) -> int:
        """How many times the task has been started."""
        return self._task.attempts

    def done(self) -> bool:
        """Whether the task has reached a terminal state."""
        return self._task.status in TERMINAL

    def cancel(self) -> bool:
        """Cancel the task if it has not finished. Safe to call from any thread.

        A queued task is removed from its queue; a running async function is cancelled; a
        synchronous function already running on a worker thread cannot be interrupted, so it
        runs on but its result is dropped, and its thread is replaced so that the pool keeps
        its size (see ``SchedulerConfig.max_abandoned_threads``). Either way the task ends
        CANCELLED at once.

        Returns:
            True if this call cancelled the task, False if it had already finished.
        """
        return self._scheduler._cancel_from_any_thread(self._task)

    def __await__(self) -> Generator[Any, None, TaskResult[T]]:
        task = self._task
        if task.status not in TERMINAL:
            fut = task.future
            if fut is None:
                fut = task.future = asyncio.get_running_loop().create_future()
            yield from fut.__await__()
        return self._outcome()

    def result(self, timeout: float | None = None) -> TaskResult[T]:
        """Block the calling thread until the task ends, and return its result.

        Must not be called on the scheduler's own event-loop thread (it would wait forever);
        there, ``await handle`` instead.

        Raises:
            TaskTimeoutError: If ``timeout`` seconds pass first (the task keeps running), or
                the task itself timed out.
            TaskFailedError, TaskCancelledError: As for ``await handle``.
            SchedulerError: If called on the scheduler's event-loop thread.
        """
        task = self._task
        if task.status not in TERMINAL:
            event = threading.Event()
            self._scheduler._call_when_done(task, event.set)
            if not wait_interruptibly(event, timeout):
                raise TaskTimeoutError(
                    task.task_id,
                    f"task {task.task_id} ({task.name!r}) did not finish within {timeout} s "
                    "of waiting; it is still running",
                )
        return self._outcome()

    def add_done_callback(self, fn: Callable[[TaskHandle[T]], None]) -> None:
        """Call ``fn(handle)`` on the scheduler's loop once the task ends (at once if it has)."""
        self._scheduler._call_when_done(self._task, lambda: fn(self))

    def _outcome(self) -> TaskResult[T]:
        task = self._task
        status = task.status
        if status is _S.COMPLETED:
            result = self._result
            if result is None:
                result = self._result = TaskResult(task)
            return result
        what = f"task {task.task_id} ({task.name!r})"
        if status is _S.FAILED:
            err = task.error
            if isinstance(err, (RetriesExhaustedError, InterruptedByRestartError)):
                raise err
            if isinstance(err, SchedulerError) and not isinstance(err, TaskFailedError):
                raise TaskFailedError(task.task_id, f"{what} failed: {err}") from err
            detail = f"{type(err).__name__}: {err}" if err is not None else "unknown error"
            raise TaskFailedError(task.task_id, f"{what} failed: {detail}") from err
        # An error recorded on a task that ended early (a worker thread that could not be
        # replaced, an earlier attempt's failure) is the cause of its time-out or cancellation.
        cause = task.error if isinstance(task.error, BaseException) else None
        if status is _S.TIMED_OUT:
            raise TaskTimeoutError(
                task.task_id, f"{what} passed its deadline and timed out"
            ) from cause
        if status is _S.CANCELLED:
            raise TaskCancelledError(task.task_id, f"{what} was cancelled") from cause
        raise InternalError(f"{what} resolved while {status.name}")

    def __repr__(self) -> str:
        t = self._task
        return f"<TaskHandle {t.task_id} {t.name!r} {t.status.value}>"
