"""What a finished task left behind: :class:`TaskResult`.

A result is read off a :class:`~logosq_os_scheduler.Task` that has completed (a
:class:`~logosq_os_scheduler.TaskHandle` builds it when awaited): the value, the terminal
status, the times on the scheduler's clock, the backend that ran it and the routing decision
(quantum tasks), the labels, and the signature when result signing is on.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._coerce import missing_attribute
from ._errors import InvalidTaskError
from ._task import _EMPTY_KWARGS, Task, TaskStatus, TaskType

__all__ = ["TaskResult"]

T = TypeVar("T")

# Members as module constants, as in _task: on Python 3.11 reading a member through its enum
# class goes through EnumType.__getattr__, which is slow.
_COMPLETED = TaskStatus.COMPLETED
_QUANTUM = TaskType.QUANTUM
_MISSING = object()


class TaskResult(Generic[T]):
    """What a finished task left behind.

    Attributes:
        task_id: The task's id.
        name: The task's name.
        status: Its terminal status (``COMPLETED`` for a result obtained by awaiting a handle).
        value: What the function returned; for a quantum task, the counts ``{bitstring: n}``.
        task_type: Classical, quantum or hybrid.
        priority: The priority it was submitted with.
        backend: The backend that ran it (quantum tasks; for a hybrid task running an
            algorithm, the backend its circuits ran on, several joined by commas), else None.
        submitted_at, started_at, finished_at: Times on the scheduler's clock, in seconds.
        attempts: How many times it was started (more than 1 after retries or preemption).
        backends_tried: Every backend an attempt went to, in order (quantum tasks).
        routing: The routing decision with its reason (quantum tasks), else None.
        metadata: The labels given with ``with_metadata``.
        signature: The Ed25519 signature over the result, when result signing is on.
        signed_record: The :class:`~logosq_os_scheduler.security.SignedRecord` it signs: every
            signed field, for ``verify_result``. None when signing is off.
        recovery: How a restart of a scheduler with a journal changed the task's run: None if
            it ran once as usual (a task that waited across a restart included);
            ``"rerun"`` (it was running, and ran again from the start: its side effects may
            have happened twice); ``"reattached"`` (its backend job was collected by ID, never
            sent again); ``"resent"`` (its job was sent again with the same idempotency key).
        job_id: The backend's own ID of the job that ran it, on a backend with job IDs
            (``Backend.supports_job_ids``: a cloud provider's job or task ID), else None.
    """

    __slots__ = (
        "task_id",
        "name",
        "status",
        "value",
        "task_type",
        "priority",
        "backend",
        "submitted_at",
        "started_at",
        "finished_at",
        "attempts",
        "backends_tried",
        "routing",
        "metadata",
        "signature",
        "signed_record",
        "error",
        "recovery",
        "job_id",
    )

    def __init__(self, task: Task[T]) -> None:
        self.task_id = task.task_id
        self.name = task.name
        self.status = task.status
        self.value: T = task.value
        self.task_type = task.task_type
        self.priority = task.priority
        self.submitted_at: float = task.submitted_at if task.submitted_at is not None else 0.0
        self.started_at = task.started_at
        self.finished_at: float = task.finished_at if task.finished_at is not None else 0.0
        self.attempts = task.attempts
        # The side parts are read once: most classical tasks have neither.
        part = task.quantum_part
        if part is None:
            self.backend: str | None = None
            self.backends_tried: tuple[str, ...] = ()
            self.routing: Any = None
            self.job_id: str | None = None
        else:
            self.backend = part.backend_used
            self.backends_tried = tuple(part.backends_tried or ())
            self.routing = part.routing
            self.job_id = part.job_id
        extras = task.extras
        if extras is None:
            self.metadata: Mapping[str, Any] = _EMPTY_KWARGS
            self.signature: bytes | None = None
            self.signed_record: Any = None
            self.error: BaseException | None = None
            self.recovery: str | None = None
        else:
            self.metadata = extras.metadata
            self.signature = extras.signature
            self.signed_record = extras.signed_record
            self.error = extras.error
            self.recovery = extras.recovery

    @property
    def counts(self) -> dict[str, int]:
        """The measurement counts of a quantum task.

        Raises:
            InvalidTaskError: If this is not a quantum task's result.
        """
        if self.task_type is not _QUANTUM or not isinstance(self.value, dict):
            raise InvalidTaskError("counts", f"task {self.task_id} is not a quantum task")
        return self.value

    @property
    def queue_wait(self) -> float | None:
        """Seconds from submission to the first start, or None if it never started."""
        if self.started_at is None:
            return None
        return self.started_at - self.submitted_at

    @property
    def latency(self) -> float:
        """Seconds from submission to the end."""
        return self.finished_at - self.submitted_at

    @property
    def ok(self) -> bool:
        """Whether the task completed."""
        return self.status is _COMPLETED

    if not TYPE_CHECKING:  # hidden from type checkers, which then still flag misspellings

        def __getattr__(self, name: str) -> Any:
            # Reached only by a failed lookup. The seed reads a hybrid task's outcome off
            # the result itself (``result.energy``); here it is the task's value.
            if name.startswith("_"):
                raise AttributeError(name)
            try:
                value = object.__getattribute__(self, "value")
            except AttributeError:  # not initialised (mid-unpickling)
                value = None
            # getattr_static: the hint must not run the value's own properties.
            if value is not None and inspect.getattr_static(value, name, _MISSING) is not _MISSING:
                kind = type(value).__name__
                hint = f"what the task returned is result.value (here a {kind}), so write "
                raise missing_attribute(self, name, hint + f"result.value.{name}")
            raise missing_attribute(self, name)

    def __repr__(self) -> str:
        return (
            f"TaskResult(task_id={self.task_id}, name={self.name!r}, status={self.status.name}, "
            f"value={self.value!r}, backend={self.backend!r}, attempts={self.attempts})"
        )
