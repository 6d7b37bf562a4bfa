"""The errors this package raises.

Every error is a :class:`SchedulerError`; catch that to catch them all::

    SchedulerError
     ├── InvalidTaskError          a task, circuit, rule or workflow is malformed (names it)
 │    ├── KeyReusedError       a client key already names a different task (says which)
 │    └── InvalidRequestError  a scheduler service refused a request as invalid (400, 413,
 │                             422); also a ServiceError
     ├── InvalidConfigError        a scheduler setting is out of range (names the setting)
     ├── QueueFullError            admission refused: the queue is at max_queue_depth
     ├── NoRouteError              no registered backend can run the circuit (says what each lacks)
     ├── SchedulerClosedError      submit after aclose(), or on a scheduler that failed to start
     ├── MissingExtraError         an optional dependency group is needed but not installed
     ├── JournalError              the durable journal cannot be opened or written (names the file)
     ├── UnknownTaskError          no task has that id or client key
 ├── ServiceError              a scheduler service (logosq serve) refused a request or could
 │    │                        not answer it; carries the HTTP status and the problem body
 │    ├── AuthenticationError      401: the API token is missing or unknown
 │    ├── PermissionDeniedError    403: the token's user may not do this (a priority above
 │    │                            their ceiling, another user's tasks)
 │    ├── QuotaExceededError       429: over a quota; says which limit, and when to retry
 │    └── ServiceUnavailableError  the server could not be reached, or kept failing (5xx),
 │                                 through every retry
     ├── TaskError                 a task ended without a value; carries the task id
     │    ├── TaskFailedError      its function raised (the exception is ``__cause__``)
     │    │    ├── WorkerCrashedError   its worker process died (executors: exit code/signal)
     │    │    ├── ResourceLimitError   it went over its memory or CPU-time limit
     │    │    └── InterruptedByRestartError  it was running when the scheduler died, and
     │    │                          is not marked safe to run again (with_restartable)
     │    ├── TaskTimeoutError     it passed its deadline
     │    ├── TaskCancelledError   it was cancelled
     │    └── RetriesExhaustedError  every allowed attempt failed (last error is ``__cause__``)
     ├── BackendError              a backend could not run a job
     │    ├── TransientBackendError    worth retrying on the same backend
     │    ├── PermanentBackendError    the job itself is bad; never retried
     │    │    └── SimulationTooCostlyError  a simulation over its budget of time or memory,
     │    │                          refused before it started (names the estimate, the ways out)
     │    └── BackendUnavailableError  the backend is down; reroute
     └── InternalError             a broken invariant inside the scheduler: a bug, please report

Messages say what was wrong and, where it helps, what to do about it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "BackendError",
    "BackendUnavailableError",
    "InternalError",
    "InterruptedByRestartError",
    "InvalidConfigError",
    "InvalidRequestError",
    "InvalidTaskError",
    "JournalError",
    "KeyReusedError",
    "MissingExtraError",
    "NoRouteError",
    "PermanentBackendError",
    "PermissionDeniedError",
    "QueueFullError",
    "QuotaExceededError",
    "RetriesExhaustedError",
    "SchedulerClosedError",
    "SchedulerError",
    "ServiceError",
    "ServiceUnavailableError",
    "SimulationTooCostlyError",
    "TaskCancelledError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransientBackendError",
    "UnknownTaskError",
]


class SchedulerError(Exception):
    """Root of every error raised by logosq_os_scheduler.

    Every one pickles as itself, with its attributes: a journal stores a failed task's error
    so, and a worker process sends its errors back so. (Python would rebuild an exception by
    calling its class with its message alone, which the errors with fields of their own do
    not take.)
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(
    cls: type[SchedulerError], args: tuple[Any, ...], state: dict[str, Any]
) -> SchedulerError:
    """An error as it was pickled, without calling its ``__init__`` again."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class InvalidTaskError(SchedulerError, ValueError):
    """A task, its circuit or one of its arguments is malformed.

    Also raised for the other objects a user builds up to describe work (routing rules,
    workflows and their steps): their message names the call the user wrote, as in
    ``invalid RoutingRule.route_to: ...`` or ``invalid HybridWorkflow.with_iterations: ...``.

    Attributes:
        field: The name of the offending field (``"priority"``, ``"circuit"``, ...).
        problem: What was wrong with it, and what is accepted.
        where: The call the bad value was given to (``"RoutingRule.route_to"``,
            ``"WorkflowStep.classical(priority=...)"``), or None for a task's own fields
            (``Task`` and ``TaskBuilder``).
    """

    def __init__(self, field: str, problem: str, *, where: str | None = None) -> None:
        if where is None:
            super().__init__(f"invalid task field {field!r}: {problem}")
        else:
            super().__init__(f"invalid {where}: {problem}")
        self.field = field
        self.problem = problem
        self.where = where


class KeyReusedError(InvalidTaskError):
    """A client key already names a different task; nothing new was made.

    A task submitted again with a key its scheduler (or service) knows returns the task made
    with that key first, but only if it is the same task: the same kind, name, priority,
    function and arguments, circuit, shots, backend and options. Another task needs its own
    key. Raised by a scheduler's submit, and by the client for the server's 422 (it is never
    retried: the same request would be refused again).

    Attributes:
        key: The client key (as its user gave it).
        task_id: The task it names.
        index: The position of the refused task in a batch (the client's ``submit_many``), or
            None.
    """

    def __init__(self, key: str, task_id: int, *, index: int | None = None) -> None:
        problem = (
            f"client key {key!r} was already used for a different task (task {task_id}); "
            "send the same task again to get it back, or use a new key"
        )
        SchedulerError.__init__(self, problem if index is None else f"tasks[{index}]: {problem}")
        self.field = "key"
        self.problem = problem
        self.where = None
        self.key = key
        self.task_id = task_id
        self.index = index


class InvalidConfigError(SchedulerError, ValueError):
    """A scheduler setting is out of range or of the wrong type.

    Attributes:
        setting: The name of the offending setting.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"invalid scheduler setting {setting!r}: {problem}")
        self.setting = setting
        self.problem = problem


class QueueFullError(SchedulerError):
    """The scheduler's queue holds ``max_queue_depth`` tasks; the new task was not admitted.

    Nothing already queued is affected. Retry later or raise the limit.
    """

    def __init__(self, depth: int, limit: int, *, batch: int | None = None) -> None:
        if batch is None:
            message = (
                f"queue is full ({depth} tasks waiting, max_queue_depth={limit}); "
                "the task was not admitted: retry later or raise the limit"
            )
        else:
            message = (
                f"a batch of {batch} tasks does not fit the queue ({depth} tasks waiting, "
                f"max_queue_depth={limit}); none was admitted: retry later, send fewer at "
                "once, or raise the limit"
            )
        super().__init__(message)
        self.depth = depth
        self.limit = limit
        self.batch = batch


class NoRouteError(SchedulerError):
    """No registered backend can run the task's circuit.

    Attributes:
        needs: What the circuit needs, in words.
        reasons: For each backend considered, why it cannot run the circuit.
    """

    def __init__(self, needs: str, reasons: dict[str, str]) -> None:
        if reasons:
            detail = "; ".join(f"{name}: {why}" for name, why in sorted(reasons.items()))
        else:
            detail = "no backend is registered"
        super().__init__(f"no backend can run this task ({needs}): {detail}")
        self.needs = needs
        self.reasons = dict(reasons)


class SchedulerClosedError(SchedulerError):
    """The scheduler is closed (or closing) and accepts no new work."""


class MissingExtraError(SchedulerError, ImportError):
    """An optional dependency group (an "extra") is needed but not installed.

    Attributes:
        extra: The extra to install (``"qiskit"``, ...).
    """

    def __init__(self, extra: str, what: str) -> None:
        super().__init__(
            f"{what} needs the {extra} extra: pip install 'logosq-os-scheduler[{extra}]'"
        )
        self.extra = extra


class JournalError(SchedulerError):
    """The durable journal cannot be opened, read or written.

    Raised when a scheduler opens a journal (a path it cannot write, a file that is not a
    journal, a journal of a newer schema, a corrupted database, a journal another scheduler
    holds) and when a durable submit cannot be recorded (a full disk). The message names the
    file and what to do; nothing the journal had acknowledged is lost.

    Attributes:
        path: The journal's file.
    """

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"journal {path}: {problem}")
        self.path = path
        self.problem = problem


class UnknownTaskError(SchedulerError, LookupError):
    """No task has that id or client key (in this scheduler or its journal).

    Attributes:
        ref: The id or key asked for.
    """

    def __init__(self, ref: object, where: str) -> None:
        kind = "key" if isinstance(ref, str) else "id"
        super().__init__(f"no task with {kind} {ref!r} {where}")
        self.ref = ref

    def __str__(self) -> str:  # LookupError would quote the message like a KeyError's
        return str(self.args[0])


class ServiceError(SchedulerError):
    """A scheduler service (``logosq serve``) refused a request, or could not answer it.

    Raised by :mod:`logosq_os_scheduler.client` for a refusal that no more specific error
    describes, and the parent of those that do. A request the server found invalid raises
    :class:`InvalidRequestError` (an :class:`InvalidTaskError` too), and an unknown task
    :class:`UnknownTaskError`, as a local scheduler would.

    Attributes:
        status: The HTTP status of the refusal, or None when no response came.
        body: The RFC 9457 problem body the server sent (empty when there was none).
    """

    def __init__(
        self, message: str, *, status: int | None = None, body: dict[str, object] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, object] = dict(body or {})


class InvalidRequestError(InvalidTaskError, ServiceError):
    """A scheduler service refused a request as invalid: unparseable (400), too large (413),
    or well-formed but wrong (422: an unknown field, malformed QASM, an unregistered function
    name, too many qubits). The message is the server's own.

    Catch it as :class:`InvalidTaskError` (a local scheduler raises that for the same
    mistakes) or as :class:`ServiceError`.

    Attributes:
        field: The task field to blame when the server named one, else ``"request"``.
        index: The position of the refused task in a batch, or None.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str = "request",
        index: int | None = None,
        status: int | None = 422,
        body: dict[str, object] | None = None,
    ) -> None:
        ServiceError.__init__(self, message, status=status, body=body)
        self.field = field
        self.problem = message
        self.where = None
        self.index = index


class AuthenticationError(ServiceError):
    """The API token is missing, malformed or unknown to the server (HTTP 401).

    Check the token given to the client (``logosq token`` makes one and prints the line its
    server's config needs).
    """


class PermissionDeniedError(ServiceError):
    """The token's user may not do what was asked (HTTP 403): a priority above the user's
    ceiling (only an admin may submit CRITICAL), or a listing of other users' tasks."""


class QuotaExceededError(ServiceError):
    """The user or their group is over a quota (HTTP 429); nothing was submitted.

    Attributes:
        limit: Which quota (``"max_running"``, ``"max_active"``, ``"shots_per_day"``, ...).
        scope: Whose quota (``"user user_a"``, ``"group lab"``), or None when not said.
        retry_after: Seconds after which the server expects the request may succeed (its
            ``Retry-After``), or None when it gave none.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        scope: str | None = None,
        retry_after: float | None = None,
        status: int | None = 429,
        body: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, status=status, body=body)
        self.limit = limit
        self.scope = scope
        self.retry_after = retry_after


class ServiceUnavailableError(ServiceError):
    """The server could not be reached, timed out, or answered with a server error (5xx),
    on every attempt the client's retry policy allowed. The last cause is ``__cause__``.

    A submit that raises this may or may not have reached the server: submit the same
    builder again (it carries its client key) or look the key up with ``client.task(key)``;
    the server never runs one key twice.
    """


class TaskError(SchedulerError):
    """A task ended without producing a value.

    Attributes:
        task_id: The id of the task.
    """

    def __init__(self, task_id: int, message: str) -> None:
        super().__init__(message)
        self.task_id = task_id

    def __reduce__(self) -> tuple[type[TaskError], tuple[int, str]]:
        # Pickled with both arguments, so that a journal stores (and a restarted scheduler
        # or a service reads back) this class rather than a RuntimeError with its text.
        return type(self), (self.task_id, str(self.args[0]) if self.args else "")


class TaskFailedError(TaskError):
    """The task's function (or its backend job) raised; the original error is ``__cause__``."""


class TaskTimeoutError(TaskError):
    """The task passed its deadline before finishing."""


class TaskCancelledError(TaskError):
    """The task was cancelled before it finished."""


class InterruptedByRestartError(TaskFailedError):
    """The task was running when its scheduler died, and was not marked safe to run again.

    A restarted scheduler reruns such a task only if it was built with
    ``.with_restartable()`` (its function may run twice); otherwise it ends FAILED with this
    error rather than risk doing its side effects twice.
    """


class RetriesExhaustedError(TaskFailedError):
    """Every attempt the retry policy allowed failed; the last error is ``__cause__``."""


class BackendError(SchedulerError):
    """A backend could not run a job.

    Attributes:
        backend: The backend's name.
        retryable: Whether trying the same job again may succeed.
    """

    retryable: bool = False

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"backend {backend!r}: {message}")
        self.backend = backend


class TransientBackendError(BackendError):
    """A passing fault (a dropped connection, a busy device): worth retrying."""

    retryable = True


class PermanentBackendError(BackendError):
    """The job itself is bad (an invalid circuit): retrying cannot help."""

    retryable = False


class SimulationTooCostlyError(PermanentBackendError):
    """A local simulation would cost more time or memory than its budget allows; it was
    refused before it started, so nothing ran.

    The message gives the estimate (qubits, simulation method, noise, shots, seconds, memory)
    and the ways out that apply: fewer shots, another simulation method, the device noise cut
    to the circuit's qubits, a larger budget, or letting it run (``allow_costly``).

    Attributes:
        seconds: The estimated wall time of the simulation.
        memory_bytes: The estimated memory it needs.
        budget_seconds: The time budget it was held to (None: no time budget).
        budget_bytes: The memory budget it was held to (None: no memory budget).
        estimate: The estimate in words.
        ways_out: What would let it run, one way per item.
    """

    def __init__(
        self,
        backend: str,
        *,
        seconds: float,
        memory_bytes: int,
        budget_seconds: float | None,
        budget_bytes: int | None,
        estimate: str,
        over: str,
        ways_out: tuple[str, ...],
    ) -> None:
        ways = "; ".join(ways_out) if ways_out else "none known"
        super().__init__(
            backend,
            f"simulation refused before it started: {estimate}, which is over {over}. "
            f"Ways out: {ways}",
        )
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self.budget_seconds = budget_seconds
        self.budget_bytes = budget_bytes
        self.estimate = estimate
        self.ways_out = ways_out


class BackendUnavailableError(BackendError):
    """The backend is down or unregistered: the job should be rerouted."""

    retryable = True


class InternalError(SchedulerError):
    """A scheduler invariant was broken. This is a bug: please report it with the message."""
