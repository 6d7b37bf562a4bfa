"""What each part of the package may ask of the scheduler's runtime, as Protocols.

Handles, task contexts, workflows and observers hold a scheduler, but they are not allowed to
reach into all of it: each sees it through the narrow Protocol below, and imports this module
rather than the scheduler's (which imports them). That keeps the import picture a tree: no
module imports a module that imports it, type-only imports included.

=====================  ===============================================  ====================
who                    may call                                         Protocol
=====================  ===============================================  ====================
TaskHandle             cancel from any thread, call back when done      :class:`TaskRuntime`
                       (defined in ``_handle``, beside the handle)
TaskContext            should the task yield, checkpoint, park, hop     :class:`ContextRuntime`
workflows, primitives  submit, flush batches, the clock, the loop       :class:`WorkflowRuntime`
primitives             a BlockingScheduler's scheduler                  :class:`BlockingRuntime`
observers              the status changes (the event stream), the clock  :class:`EventSource`
=====================  ===============================================  ====================

One Protocol points the other way, from the runtime out: :class:`JobListener`, what the
quantum dispatcher tells a journal about the jobs it sends to backends that can reattach.

The members that start with an underscore are the runtime's own: callable from inside the
package through these Protocols, not part of the public API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ._handle import TaskHandle, TaskRuntime

if TYPE_CHECKING:
    from ._clock import Clock
    from ._task import Task, TaskBuilder
    from .backends._base import Backend
    from .core._core import TransitionListener

__all__ = [
    "BlockingRuntime",
    "ContextRuntime",
    "EventSource",
    "JobListener",
    "TaskRuntime",
    "WorkflowRuntime",
]

T = TypeVar("T")


class ContextRuntime(Protocol):
    """What a running task's :class:`~logosq_os_scheduler.TaskContext` asks of its scheduler."""

    @property
    def _loop_thread(self) -> int | None:
        """The identity of the scheduler's event-loop thread (None before it starts)."""
        ...

    def _wants_slot_back(self, task: Task[Any]) -> bool:
        """Whether ``task`` should give its slot up at this checkpoint."""
        ...

    async def _checkpoint(self, task: Task[Any]) -> None:
        """Give the slot up if asked, and resume when it is given back (coroutines)."""
        ...

    def _park_thread(self, task: Task[Any], resumed: threading.Event) -> None:
        """Park a worker thread's task until its slot is given back (on the loop)."""
        ...

    def _call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the scheduler's loop, from any thread."""
        ...

    def _save_state(self, task: Task[Any], state: object) -> None:
        """Keep ``state`` as where ``task`` goes on from after a restart (journal it)."""
        ...


@runtime_checkable
class WorkflowRuntime(Protocol):
    """What workflows, algorithms and primitives need of a scheduler: a started
    :class:`~logosq_os_scheduler.QuantumScheduler`."""

    @property
    def clock(self) -> Clock:
        """Where the scheduler's time comes from."""
        ...

    @property
    def backends(self) -> dict[str, Backend]:
        """The registered backends by name."""
        ...

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the scheduler runs on (None before it starts)."""
        ...

    async def submit(self, task: Task[T] | TaskBuilder[T]) -> TaskHandle[T]:
        """Submit a task; returns its handle."""
        ...

    def submit_nowait(self, task: Task[T] | TaskBuilder[T]) -> TaskHandle[T]:
        """Submit a task from the loop's thread without awaiting."""
        ...

    def flush_batches(self) -> None:
        """Send the quantum tasks queued so far without waiting out the batch window."""
        ...


class BlockingRuntime(Protocol):
    """A :class:`~logosq_os_scheduler.BlockingScheduler`, as primitives see it: the
    scheduler it runs on its own thread."""

    @property
    def scheduler(self) -> WorkflowRuntime:
        """The scheduler it drives."""
        ...


class EventSource(Protocol):
    """A scheduler (or a bare core) as an observer sees it: the stream of status changes,
    and the clock they are timed by (see :mod:`~logosq_os_scheduler.observability._listeners`).
    """

    @property
    def clock(self) -> Clock:
        """Where the times of the events come from."""
        ...

    @property
    def started_at(self) -> float:
        """When the scheduler started, on :attr:`clock`."""
        ...

    def add_listener(self, listener: TransitionListener) -> None:
        """Call ``listener(task, old, new, now)`` after every status change."""
        ...

    def remove_listener(self, listener: TransitionListener) -> bool:
        """Stop calling ``listener``; True if it was attached."""
        ...


class JobListener(Protocol):
    """Told of each job the quantum dispatcher sends to a backend with
    :attr:`~logosq_os_scheduler.backends.Backend.supports_reattach` (a durable journal).

    Set one as ``QuantumDispatcher.job_listener``. For every job, in this order:
    :meth:`job_intent` before the job is submitted, :meth:`job_acknowledged` once the backend
    has given it an ID (not called if submitting failed), and :meth:`job_done` when it is over
    (whatever the end: outcomes collected, failed as a whole, timed out, or cancelled when the
    scheduler closed). Only a process that dies skips :meth:`job_done`: an intent without an
    ID then means the job may or may not have reached the backend (its idempotency keys make
    sending it again safe); an ID without an end means the backend has it, and
    ``Backend.reattach(job_id)`` collects it.

    The methods are called on the scheduler's event loop and must not block it for long. An
    exception from one fails the job attempt (it is retried as any failed job is); one from
    :meth:`job_intent` means nothing was submitted, and no :meth:`job_done` follows.
    """

    def job_intent(
        self, backend: str, job_key: str, task_ids: Sequence[int]
    ) -> Awaitable[None] | None:
        """A job is about to be submitted. A listener that returns an awaitable (a journal's
        write of the intent) has the job submitted only once it is done.

        Args:
            backend: The name the backend is registered under.
            job_key: Unique to this job attempt (a retry of the same tasks gets a new one).
            task_ids: The tasks whose circuits the job carries, in the job's order.
        """
        ...

    def job_acknowledged(self, job_key: str, job_id: str) -> None:
        """The backend has acknowledged the job ``job_key`` under the ID ``job_id``."""
        ...

    def job_done(self, job_key: str) -> None:
        """The job ``job_key`` is over: nothing more will be collected for it."""
        ...
