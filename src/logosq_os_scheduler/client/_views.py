"""What a scheduler service answers, as frozen snapshots: tasks, results, backends, accounts.

Each is read from the server's JSON by one function here (``*_of``), which raises a
:class:`~logosq_os_scheduler.ServiceError` when the JSON is not what the contract says (a
server of another version) rather than a ``KeyError`` from deep inside the client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeAlias

from .._errors import InvalidTaskError, ServiceError
from .._task import TERMINAL, TaskPriority, TaskStatus

__all__ = [
    "JSON",
    "AccountView",
    "BackendView",
    "RemoteTaskResult",
    "TaskView",
    "account_of",
    "backend_of",
    "view_of",
]

JSON: TypeAlias = Any
"""A value as JSON decodes it (None, bool, int, float, str, list, dict with str keys)."""


def _malformed(what: str, exc: Exception) -> ServiceError:
    return ServiceError(
        f"the server's answer is not {what} ({type(exc).__name__}: {exc}): is it a logosq "
        "serve of this version?"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TaskView:
    """A task as the server saw it when it answered: a frozen snapshot.

    Attributes:
        task_id: The server's id of the task.
        key: Its client key.
        name: Its name.
        user: The user it belongs to.
        kind: ``"circuit"``, ``"function"``, ``"vqe"`` or ``"qaoa"``.
        priority: Its priority.
        status: Its status then.
        submitted_at, started_at, finished_at: Times on the server's clock, or None.
        backend: The backend that ran it (circuits; for a VQE or QAOA, the one its circuits
            ran on, several joined by commas; None for exact estimation), or None.
        recovery: How it crossed a restart of the server (as ``TaskResult.recovery``).
        result: What it produced, as JSON (counts for a circuit), or None.
        error_type: The name of the error it ended with, or None.
        error_message: That error's message, or None.
    """

    task_id: int
    key: str | None
    name: str
    user: str
    kind: str
    priority: TaskPriority
    status: TaskStatus
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None
    backend: str | None
    recovery: str | None
    result: JSON
    error_type: str | None
    error_message: str | None

    @property
    def done(self) -> bool:
        """Whether the task had ended."""
        return self.status in TERMINAL


def view_of(data: JSON) -> TaskView:
    """A task view from the server's JSON.

    Raises:
        ServiceError: If the JSON is not a task view (a server of another version).
    """
    try:
        error = data.get("error") or {}
        return TaskView(
            task_id=int(data["id"]),
            key=data.get("key"),
            name=str(data["name"]),
            user=str(data.get("user", "")),
            kind=str(data.get("kind", "")),
            priority=TaskPriority[str(data["priority"]).upper()],
            status=TaskStatus(str(data["status"])),
            submitted_at=data.get("submitted_at"),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            backend=data.get("backend"),
            recovery=data.get("recovery"),
            result=data.get("result"),
            error_type=error.get("type"),
            error_message=error.get("message"),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _malformed("a task view", exc) from exc


@dataclasses.dataclass(frozen=True, slots=True)
class RemoteTaskResult:
    """What a task that completed on a scheduler service left behind: what awaiting a
    :class:`~logosq_os_scheduler.client.RemoteTaskHandle` returns, as a local
    :class:`~logosq_os_scheduler.TaskResult` is what awaiting a local handle returns.

    Attributes:
        value: What the task produced, as JSON: the counts ``{bitstring: n}`` of a circuit,
            the function's return value, ``{"energy", "parameters", ...}`` of a VQE or QAOA.
        task_id, key, name, user, kind, priority, status, backend, recovery: As the task's
            :class:`TaskView` says.
        submitted_at, started_at, finished_at: Times on the server's clock, in seconds.
    """

    value: JSON
    task_id: int
    key: str | None
    name: str
    user: str
    kind: str
    priority: TaskPriority
    status: TaskStatus
    backend: str | None
    recovery: str | None
    submitted_at: float | None
    started_at: float | None
    finished_at: float | None

    @staticmethod
    def of(view: TaskView) -> RemoteTaskResult:
        """The result a completed task's view holds."""
        return RemoteTaskResult(
            value=view.result,
            task_id=view.task_id,
            key=view.key,
            name=view.name,
            user=view.user,
            kind=view.kind,
            priority=view.priority,
            status=view.status,
            backend=view.backend,
            recovery=view.recovery,
            submitted_at=view.submitted_at,
            started_at=view.started_at,
            finished_at=view.finished_at,
        )

    @property
    def ok(self) -> bool:
        """Whether the task completed (always, for a result a handle returned)."""
        return self.status is TaskStatus.COMPLETED

    @property
    def counts(self) -> dict[str, int]:
        """The measurement counts of a circuit task.

        Raises:
            InvalidTaskError: If this is not a circuit task's result.
        """
        if self.kind != "circuit" or not isinstance(self.value, dict):
            raise InvalidTaskError("counts", f"task {self.task_id} is not a circuit task")
        return {str(k): int(v) for k, v in self.value.items()}


@dataclasses.dataclass(frozen=True, slots=True)
class BackendView:
    """A backend of a scheduler service, as ``client.backends()`` reports it.

    Attributes:
        name: Its registered name.
        kind: What it is (``"aer"``, ``"mock"``, ``"fake"``, ...).
        num_qubits: How many qubits it has.
        capacity: How many jobs it runs at once.
        busy: How many it is running.
        queued: How many tasks wait for it.
        queued_by_priority: Of those, how many at each priority, by its name (``"critical"``,
            ``"high"``, ``"normal"``, ``"low"``, ``"idle"``, in that order).
        breaker: Its circuit breaker: ``"closed"`` (healthy), ``"open"`` or ``"half_open"``.
        in_rotation: Whether routing sends work to it.
    """

    name: str
    kind: str
    num_qubits: int | None
    capacity: int
    busy: int
    queued: int
    queued_by_priority: dict[str, int]
    breaker: str
    in_rotation: bool


def backend_of(data: JSON) -> BackendView:
    """A backend view from the server's JSON.

    Raises:
        ServiceError: If the JSON is not a backend view.
    """
    try:
        n = data.get("num_qubits")
        return BackendView(
            name=str(data["name"]),
            kind=str(data.get("kind", "")),
            num_qubits=None if n is None else int(n),
            capacity=int(data.get("capacity", 0)),
            busy=int(data.get("busy", 0)),
            queued=int(data.get("queued", 0)),
            queued_by_priority=_by_priority(data.get("queued_by_priority")),
            breaker=str(data.get("breaker", "closed")),
            in_rotation=bool(data.get("in_rotation", True)),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _malformed("a backend view", exc) from exc


_PRIORITY_NAMES = ("critical", "high", "normal", "low", "idle")


def _by_priority(raw: JSON) -> dict[str, int]:
    """Counts by priority name, from the server's mapping (or the list, critical first, that
    servers before the mapping sent)."""
    if isinstance(raw, Mapping):
        return {name: int(raw.get(name, 0)) for name in _PRIORITY_NAMES}
    counts = list(raw or ())
    return {
        name: int(counts[i]) if i < len(counts) else 0 for i, name in enumerate(_PRIORITY_NAMES)
    }


@dataclasses.dataclass(frozen=True, slots=True)
class AccountView:
    """Who the client's token belongs to, and what they may use: ``client.me()``.

    Attributes:
        user: The user's name.
        groups: The groups they are in.
        admin: Whether they are an admin (sees and cancels every task; may submit CRITICAL).
        priority_ceiling: The most urgent priority they may submit.
        quotas: Their limits (``max_running``, ``max_active``, ``shots_per_day``, ...).
        usage: What they use of them now.
    """

    user: str
    groups: tuple[str, ...]
    admin: bool
    priority_ceiling: TaskPriority
    quotas: Mapping[str, JSON]
    usage: Mapping[str, JSON]


def account_of(data: JSON) -> AccountView:
    """An account view from the server's JSON.

    Raises:
        ServiceError: If the JSON is not an account view.
    """
    try:
        return AccountView(
            user=str(data["user"]),
            groups=tuple(str(g) for g in data.get("groups", ())),
            admin=bool(data.get("admin", False)),
            priority_ceiling=TaskPriority[str(data["priority_ceiling"]).upper()],
            quotas=dict(data.get("quotas") or {}),
            usage=dict(data.get("usage") or {}),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise _malformed("an account view", exc) from exc
