"""TaskContext: what a running task's own code can ask of the scheduler (checkpoints)."""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING, Any

from ._errors import SchedulerError, TaskCancelledError
from ._task import TERMINAL, Task, TaskPriority

if TYPE_CHECKING:
    from ._protocols import ContextRuntime

__all__ = ["TaskContext", "current_context"]

# The task whose code runs in this context (an asyncio task's context, a worker thread, or
# the loop during an inline call). Set by the runtime around every execution.
_current_task: contextvars.ContextVar[Task[Any] | None] = contextvars.ContextVar(
    "logosq_current_task", default=None
)


class TaskContext:
    """The running task, seen from inside its own function.

    Get it with :func:`current_context`. Long tasks call :meth:`checkpoint` (async code) or
    :meth:`checkpoint_blocking` (sync code on a worker thread) at points where they can pause:
    under COOPERATIVE or PREEMPTIVE preemption, if more urgent work waits for a slot, the call
    gives the slot up and returns when the task has a slot again, with its state intact.
    """

    __slots__ = ("_task",)

    def __init__(self, task: Task[Any]) -> None:
        self._task = task

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
    def preemptions(self) -> int:
        """How often the task has given its slot up so far."""
        return self._task.preemptions

    @property
    def cancelled(self) -> bool:
        """Whether the task has already ended (cancelled or timed out): stop soon."""
        return self._task.status in TERMINAL

    def _scheduler(self) -> ContextRuntime:
        pool = self._task.resources
        owner = None if pool is None else pool.owner
        if owner is None:
            raise SchedulerError(f"task {self._task.task_id} was not submitted to a scheduler")
        return owner  # type: ignore[no-any-return]

    @property
    def saved_state(self) -> Any:
        """What this task saved with :meth:`save_state` before its scheduler restarted (read
        back from the journal), or None: where a long task goes on from."""
        return self._task.saved_state

    def save_state(self, state: object) -> None:
        """Save where the task is, to go on from there if its scheduler restarts.

        With a journal the state is written there (pickled, in the next group commit) and a
        restarted scheduler runs the task again with it as :attr:`saved_state`; without one it
        is only kept in memory. Call it from the task's own code on the event loop (async
        tasks; VQE and QAOA tasks call it after each optimiser iteration).
        """
        scheduler = self._scheduler()
        scheduler._save_state(self._task, state)

    @property
    def should_yield(self) -> bool:
        """Whether a checkpoint now would give the slot up (an estimate off the loop)."""
        return self._scheduler()._wants_slot_back(self._task)

    async def checkpoint(self) -> None:
        """Give the slot up if more urgent work waits; return once the task may go on.

        Call from the task's own coroutine.

        Raises:
            TaskCancelledError: If the task was cancelled or timed out meanwhile.
        """
        if self.cancelled:
            raise TaskCancelledError(self._task.task_id, "the task has already ended")
        await self._scheduler()._checkpoint(self._task)

    def checkpoint_blocking(self) -> None:
        """:meth:`checkpoint` for synchronous code on a worker thread (blocks while paused).

        Raises:
            TaskCancelledError: If the task was cancelled or timed out meanwhile.
            SchedulerError: If called on the scheduler's own event-loop thread.
        """
        task = self._task
        if self.cancelled:
            raise TaskCancelledError(task.task_id, "the task has already ended")
        scheduler = self._scheduler()
        if not scheduler._wants_slot_back(task):
            return
        if threading.get_ident() == scheduler._loop_thread:
            raise SchedulerError("checkpoint_blocking() on the event loop; use await checkpoint()")
        resumed = threading.Event()
        scheduler._call_soon_threadsafe(scheduler._park_thread, task, resumed)
        resumed.wait()
        if self.cancelled:
            raise TaskCancelledError(task.task_id, "the task ended while it was paused")


def current_context() -> TaskContext:
    """The :class:`TaskContext` of the task whose code is running.

    Raises:
        SchedulerError: If called outside a task's function.
    """
    task = _current_task.get()
    if task is None:
        raise SchedulerError("current_context() called outside a running task")
    return TaskContext(task)
