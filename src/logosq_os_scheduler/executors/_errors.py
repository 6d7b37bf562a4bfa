"""Errors an executor raises when the place a task runs, not the task's own code, fails.

Both are :class:`~logosq_os_scheduler.TaskFailedError` subclasses, so code that handles a
failed task handles these too; catch them by name to tell a crash or a limit from a bug::

    TaskFailedError
     ├── WorkerCrashedError   the worker process died while running the task (exit code/signal)
     └── ResourceLimitError   the task went over its memory or CPU-time limit
"""

from __future__ import annotations

import signal

from .._errors import TaskFailedError

__all__ = ["ResourceLimitError", "WorkerCrashedError", "describe_exit"]


def describe_exit(exitcode: int | None) -> str:
    """Say in words how a process ended, from its ``multiprocessing`` exit code.

    A negative code is the number of the signal that killed it.
    """
    if exitcode is None:
        return "ended in an unknown way"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "an unknown signal"
        return f"was killed by signal {name} ({-exitcode})"
    return f"exited with code {exitcode}"


class WorkerCrashedError(TaskFailedError):
    """The worker running the task died (a segfault, ``os._exit``, a kill, the OOM killer).

    Only the task that was on that worker fails; the executor starts a replacement worker.

    Attributes:
        task_id: The task that was running.
        pid: The dead worker's process id (None where the executor cannot know it).
        exitcode: Its exit code, or None when it was killed by a signal or is unknown.
        signal: The number of the signal that killed it, or None.
    """

    def __init__(
        self,
        task_id: int,
        message: str,
        *,
        pid: int | None = None,
        exitcode: int | None = None,
        signal: int | None = None,
    ) -> None:
        super().__init__(task_id, message)
        self.pid = pid
        self.exitcode = exitcode
        self.signal = signal


class ResourceLimitError(TaskFailedError):
    """The task went over a resource limit it was given, and was stopped.

    Attributes:
        task_id: The task.
        limit: Which limit: ``"memory_bytes"`` or ``"cpu_seconds"``.
        value: The limit's value (bytes or seconds).
    """

    def __init__(self, task_id: int, message: str, *, limit: str, value: float) -> None:
        super().__init__(task_id, message)
        self.limit = limit
        self.value = value
