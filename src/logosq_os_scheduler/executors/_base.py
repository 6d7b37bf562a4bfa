"""The Executor contract: a pluggable place where classical functions run.

The scheduler keeps one slot pool per executor (``capacity`` slots) and starts a task only
when a slot is free, so an executor never queues: each :meth:`Executor.submit` call can begin
at once. Executors report completion through the future they return.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Executor"]


class Executor(abc.ABC):
    """Runs classical task functions somewhere other than the scheduler's event loop.

    Subclasses: ``ProcessExecutor`` (isolated worker processes, true parallelism) and
    ``RayExecutor`` (a Ray cluster). Register one with ``scheduler.register_executor(name, ex)``
    and route tasks to it with ``Task.classical(...).with_executor(name)``.
    """

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many tasks it runs at once (the scheduler's slot count for it)."""

    @abc.abstractmethod
    def submit(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        task_id: int,
        limits: Mapping[str, Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Start ``fn(*args, **kwargs)`` and return a future for its value on the running loop.

        The future raises what ``fn`` raised, or a ``WorkerCrashedError`` (a
        :class:`~logosq_os_scheduler.TaskFailedError`) if the worker itself died. Must be called
        on the event loop's thread.

        Raises:
            InvalidTaskError: If the function or its arguments cannot be sent to the worker
                (for example, they do not pickle).
        """

    def validate(  # noqa: B027 - optional hook: most executors accept anything
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        """Check at submit that the task can be sent to this executor's workers.

        Raises:
            InvalidTaskError: If it cannot (for example, its arguments do not pickle).
        """

    def cancel(self, task_id: int) -> bool:
        """Stop the task if the executor can (kill or interrupt its worker).

        Returns:
            True if it was stopped; False if it cannot be (it then runs on, result dropped).
        """
        return False

    def suspend(self, task_id: int) -> bool:
        """Pause the task's worker without losing its state (PREEMPTIVE preemption).

        An executor that can (process workers: SIGSTOP) keeps its capacity available while a
        worker is paused, starting a spare one if needed. Returns False if it cannot.
        """
        return False

    def resume(self, task_id: int) -> bool:
        """Continue a task paused by :meth:`suspend`. Returns False if it cannot."""
        return False

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Start workers ahead of the first task (optional; submit starts them lazily)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop every worker and release resources."""
