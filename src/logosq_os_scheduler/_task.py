"""The task model: what a task is and how it is built.

A :class:`Task` is built with a :class:`TaskBuilder` (``Task.classical(name)``,
``Task.quantum(name)``, ``Task.hybrid(name)``) and submitted to a scheduler, which returns a
:class:`~logosq_os_scheduler.TaskHandle`. A task is submitted at most once; its life is the state
machine in :mod:`logosq_os_scheduler.core._state`, and it ends in exactly one terminal
:class:`TaskStatus`. What it produced is a :class:`~logosq_os_scheduler.TaskResult`
(``_result.py``).

Task and TaskBuilder share this module because each names the other in a public signature
(``Task.classical() -> TaskBuilder``, ``TaskBuilder.build() -> Task``): in two modules that is
an import circle, type-only or not, which ``tests/test_import_graph.py`` refuses.
"""

from __future__ import annotations

import enum
import inspect
import itertools
import operator
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, overload

from ._coerce import HintingEnumType, coerce_enum, coerce_seconds
from ._errors import InvalidTaskError

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "Task",
    "TaskBuilder",
    "TaskPriority",
    "TaskStatus",
    "TaskType",
]

T = TypeVar("T")
U = TypeVar("U")
P = ParamSpec("P")


class TaskPriority(enum.IntEnum, metaclass=HintingEnumType):
    """How urgent a task is. Members compare by urgency: ``CRITICAL > HIGH > ... > IDLE``.

    ==========  ==========================  ===============================
    Member      Scheduling                  Typical use
    ==========  ==========================  ===============================
    CRITICAL    before anything else        error recovery, calibration
    HIGH        next available slot         interactive queries
    NORMAL      standard queue              batch jobs
    LOW         background                  optimisation, caching
    IDLE        only when nothing else      speculative execution
                of higher priority waits
    ==========  ==========================  ===============================
    """

    IDLE = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def level(self) -> int:
        """Queue index: 0 for CRITICAL up to 4 for IDLE (lower runs first)."""
        return 4 - int(self)


class TaskType(enum.Enum, metaclass=HintingEnumType):
    """What kind of work a task carries."""

    CLASSICAL = "classical"
    QUANTUM = "quantum"
    HYBRID = "hybrid"

    __hash__ = object.__hash__  # identity: members are singletons (see TaskStatus)


class TaskStatus(enum.Enum, metaclass=HintingEnumType):
    """Where a task is in its life. The last four are terminal: a task reaches one of them once.

    Modelled on Qiskit's ``JobStatus``: ``PENDING`` (built, not yet admitted), ``QUEUED``
    (waiting for a slot), ``RUNNING``, ``PREEMPTED`` (gave its slot up and will resume), then
    ``COMPLETED``, ``FAILED``, ``CANCELLED`` or ``TIMED_OUT``.
    """

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    PREEMPTED = "preempted"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    # Members are singletons compared by identity; hashing by identity keeps the state table
    # and the status counters off Enum's Python-level __hash__ on the hot path.
    __hash__ = object.__hash__

    @property
    def is_terminal(self) -> bool:
        """Whether the task's life is over."""
        return self in TERMINAL


TERMINAL: frozenset[TaskStatus] = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.TIMED_OUT}
)
"""The statuses a task ends in: the one definition (``core.TERMINAL`` is this set)."""

# Members as module constants: on Python 3.11 reading a member through its enum class goes
# through EnumType.__getattr__, which is slow; the hot paths below read these instead.
_PENDING = TaskStatus.PENDING
_CLASSICAL = TaskType.CLASSICAL
_QUANTUM = TaskType.QUANTUM
_HYBRID = TaskType.HYBRID
_NORMAL = TaskPriority.NORMAL

_ids = itertools.count(1)


def reserve_ids(above: int) -> None:
    """Make every task id handed out from now on greater than ``above`` (a journal's tasks
    keep their ids across a restart, and new tasks must not take them)."""
    global _ids
    nxt = next(_ids)
    _ids = itertools.count(max(nxt, above + 1))


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` gives a coroutine (an ``async def`` function or method, or an
    object whose ``__call__`` is one)."""
    code = getattr(fn, "__code__", None)
    if code is not None:
        # A plain or bound function: read its flags directly (inspect is much slower).
        return bool(code.co_flags & _CO_ASYNC)
    call = type(fn).__call__ if not inspect.isroutine(fn) else None
    return inspect.iscoroutinefunction(fn) or (
        call is not None and inspect.iscoroutinefunction(call)
    )


def transient(builder: TaskBuilder[T]) -> TaskBuilder[T]:
    """Mark a builder's tasks as steps of work the scheduler runs for a workflow or a
    primitive: a journal does not record them (the workflow is what is recovered)."""
    builder._transient = True
    return builder


def is_transient(task: Task[Any]) -> bool:
    """Whether ``task`` was built by :func:`transient`."""
    extras = task.extras
    return extras is not None and extras.transient


def restored_task(
    task_id: int,
    name: str,
    task_type: TaskType,
    priority: TaskPriority,
    status: TaskStatus = TaskStatus.PENDING,
) -> Task[Any]:
    """A task as a journal recorded it, before the scheduler fills its state in: every spec
    field at its default, no function or circuit (a finished task needs neither).

    ``status`` is PENDING for a task the scheduler will admit again, or the terminal status
    of a finished task read back for a handle (a record no scheduler drives: no transition
    ever applies to it)."""
    task: Task[Any] = Task.__new__(Task)
    task.task_id = task_id
    task.name = name
    task.task_type = task_type
    task.priority = priority
    task.fn = None
    task.args = ()
    task.kwargs = _EMPTY_KWARGS
    task.is_async = False
    task._status = status
    task.seq = 0
    task.submitted_at = None
    task.enqueued_at = 0.0
    task.started_at = None
    task.finished_at = None
    task.deadline = None
    task.attempts = 0
    task.value = None
    task.future = None
    task.runner = None
    task.resources = None
    task.slot_held = False
    task.extras = None
    task.quantum_part = None
    return task


_EMPTY_KWARGS: dict[str, Any] = {}
_CO_ASYNC = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE


def has_num_qubits(circuit: object) -> bool:
    """Whether ``circuit`` says how many qubits it needs (an ``int`` ``num_qubits``), as a
    Qiskit ``QuantumCircuit``, a ``CircuitSpec`` and a backend's own circuit type all do:
    the scheduler takes circuits by that duck type, without importing Qiskit."""
    n = getattr(circuit, "num_qubits", None)
    return isinstance(n, int) and not isinstance(n, bool)


def unsupported_circuit(circuit: object) -> InvalidTaskError:
    """The error for a circuit of a type the scheduler does not take."""
    got = "None" if circuit is None else type(circuit).__name__
    return InvalidTaskError(
        "circuit",
        "expected a qiskit QuantumCircuit, OpenQASM 2 or 3 text, a CircuitSpec, or another "
        f"object with an int num_qubits; got {got}",
    )


V = TypeVar("V")


class SlotPool(Protocol):
    """What a task holds a slot of, or waits in the queue of, as the runtime reads it: the
    core's ``Pool`` (``core`` names the concrete type; this module cannot import it, since
    the core imports the task)."""

    @property
    def name(self) -> str:
        """The pool's name: "classical", or a backend's name."""

    @property
    def owner(self) -> Any:
        """The runtime driving the core that made the pool (opaque to the core)."""


class TaskRunner(Protocol):
    """What runs a RUNNING task off the loop's stack, as far as ending it early needs: the
    asyncio task driving a coroutine, a process or Ray executor's run, or the timer of a
    quantum task waiting out its retry back-off. A function on a worker thread has none (a
    thread cannot be stopped; the runtime abandons it instead)."""

    def cancel(self) -> object:
        """Stop the run: the task has ended (cancelled, timed out) or yields its slot."""


class ParkedRun(Protocol):
    """What a PREEMPTED task waits on to go on where it stood: a coroutine or a worker thread
    parked at its checkpoint, a process worker paused with SIGSTOP, or a quantum task whose
    job was withdrawn unstarted. Set while the task is PREEMPTED; a task that starts with
    one continues its attempt rather than counting a new one."""

    def wake(self) -> None:
        """The task has its slot again: let it continue."""

    def stop(self) -> None:
        """The task ended while parked: let what is parked unwind (its runner, if any, is
        cancelled beside this)."""


class _Extras:
    """The fields of a :class:`Task` that most tasks leave at their defaults.

    Kept out of the task itself so that a queued task costs less memory: most tasks never
    set a timeout, an executor, limits or metadata, are never preempted, never signed and
    do not fail.
    Created on the first write of one of them.
    """

    __slots__ = (
        "timeout",
        "executor",
        "preemptible",
        "metadata",
        "max_retries",
        "restartable",
        "limits",
        "preemptions",
        "resume",
        "signature",
        "signed_record",
        "error",
        "key",
        "recovery",
        "transient",
        "saved_state",
        "user",
    )

    def __init__(self) -> None:
        self.timeout: float | None = None
        self.executor: str | None = None
        self.preemptible = True
        self.metadata: dict[str, Any] = _EMPTY_KWARGS
        self.max_retries: int | None = None
        self.restartable = False
        self.limits: dict[str, float] | None = None
        self.preemptions = 0
        # Set while PREEMPTED: what to signal so that the task resumes.
        self.resume: ParkedRun | None = None
        self.signature: bytes | None = None
        # The SignedRecord behind ``signature`` (a security.SignedRecord), set with it.
        self.signed_record: Any = None
        self.error: BaseException | None = None
        # The client key given with with_key(), unique per scheduler (and journal).
        self.key: str | None = None
        # How the task crossed a restart of a durable scheduler (see TaskResult.recovery).
        self.recovery: str | None = None
        # A step of a workflow running on the scheduler: never written to a journal.
        self.transient = False
        # What the task's code saved to go on from after a restart (TaskContext.save_state).
        self.saved_state: Any = None
        # Whose task it is (with_user): fair share and the service's isolation go by it.
        self.user: str | None = None


class _QuantumPart:
    """The fields of a :class:`Task` that only quantum and hybrid tasks use."""

    __slots__ = (
        "circuit",
        "shots",
        "backend",
        "num_qubits",
        "requires_all_to_all",
        "run_options",
        "algorithm",
        "optimizer",
        "routing",
        "backends_tried",
        "backend_used",
        "job_id",
        "requirements",
        "circuit_run",
    )

    def __init__(self) -> None:
        self.circuit: Any = None
        self.shots = 1024
        self.backend: str | None = None
        self.num_qubits: int | None = None
        self.requires_all_to_all: bool | None = None
        self.run_options: dict[str, Any] = _EMPTY_KWARGS
        self.algorithm: Any = None
        self.optimizer: Any = None
        self.routing: Any = None
        self.backends_tried: list[str] | None = None
        self.backend_used: str | None = None
        # The backend's ID of the job of the current attempt (backends with job IDs).
        self.job_id: str | None = None
        # What the circuit needs, and the circuit as the backend ran it.
        self.requirements: Any = None
        self.circuit_run: Any = None


class _ExtraField(Generic[V]):
    """A :class:`Task` attribute stored in its :class:`_Extras` (default until first set)."""

    __slots__ = ("name", "default")

    def __init__(self, default: V) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _ExtraField[V]: ...
    @overload
    def __get__(self, obj: Task[Any], objtype: type | None = None) -> V: ...
    def __get__(self, obj: Task[Any] | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        extras = obj.extras
        return self.default if extras is None else getattr(extras, self.name)

    def __set__(self, obj: Task[Any], value: V) -> None:
        extras = obj.extras
        if extras is None:
            extras = obj.extras = _Extras()
        setattr(extras, self.name, value)


class _QuantumField(Generic[V]):
    """A :class:`Task` attribute stored in its :class:`_QuantumPart` (default until set)."""

    __slots__ = ("name", "default")

    def __init__(self, default: V) -> None:
        self.default = default
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> _QuantumField[V]: ...
    @overload
    def __get__(self, obj: Task[Any], objtype: type | None = None) -> V: ...
    def __get__(self, obj: Task[Any] | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        part = obj.quantum_part
        return self.default if part is None else getattr(part, self.name)

    def __set__(self, obj: Task[Any], value: V) -> None:
        part = obj.quantum_part
        if part is None:
            part = obj.quantum_part = _QuantumPart()
        setattr(part, self.name, value)


class Task(Generic[T]):
    """A unit of work for the scheduler: a classical function, a quantum circuit, or a hybrid.

    Build tasks with :meth:`classical`, :meth:`quantum` or :meth:`hybrid`; do not construct
    them directly. The spec fields are fixed once built; the runtime fields belong to the
    scheduler and change only through its state machine.

    Memory: a queued task is what the scheduler holds most of, so the task itself keeps only
    the fields every task uses. The fields of quantum and hybrid tasks live in
    ``quantum_part`` and the rarely set ones in ``extras``; both read as plain attributes
    (``task.shots``, ``task.timeout``) and are created on first write. Hot paths read
    ``task.extras`` once and take the defaults when it is None.
    """

    __slots__ = (
        # spec: fixed at build time
        "task_id",
        "name",
        "task_type",
        "priority",
        "fn",
        "args",
        "kwargs",
        "is_async",
        # runtime: owned by the scheduler. The status is written only by the core's state
        # machine (SchedulerCore.transition and its admission path), which also reads the
        # slot directly on its hot paths; everyone else reads it through ``status``.
        "_status",
        "seq",
        "submitted_at",
        "enqueued_at",
        "started_at",
        "finished_at",
        "deadline",
        "attempts",
        "value",
        "future",
        "runner",
        "resources",
        "slot_held",
        # side objects, None until needed
        "extras",
        "quantum_part",
    )

    # Spec fields most tasks leave at their defaults.
    timeout: _ExtraField[float | None] = _ExtraField(None)
    executor: _ExtraField[str | None] = _ExtraField(None)
    preemptible: _ExtraField[bool] = _ExtraField(True)
    metadata: _ExtraField[dict[str, Any]] = _ExtraField(_EMPTY_KWARGS)
    max_retries: _ExtraField[int | None] = _ExtraField(None)
    restartable: _ExtraField[bool] = _ExtraField(False)
    limits: _ExtraField[dict[str, float] | None] = _ExtraField(None)
    # Runtime fields set only by preemption and signing.
    preemptions: _ExtraField[int] = _ExtraField(0)
    resume: _ExtraField[ParkedRun | None] = _ExtraField(None)
    signature: _ExtraField[bytes | None] = _ExtraField(None)
    signed_record: _ExtraField[Any] = _ExtraField(None)
    # Why the task failed (set only when it did).
    error: _ExtraField[BaseException | None] = _ExtraField(None)
    # The client key (with_key), and how the task crossed a restart (journal recovery).
    key: _ExtraField[str | None] = _ExtraField(None)
    recovery: _ExtraField[str | None] = _ExtraField(None)
    saved_state: _ExtraField[Any] = _ExtraField(None)
    # Whose task it is (with_user); None for a task of no particular user.
    user: _ExtraField[str | None] = _ExtraField(None)
    # Quantum and hybrid spec fields.
    circuit: _QuantumField[Any] = _QuantumField(None)
    shots: _QuantumField[int] = _QuantumField(1024)
    backend: _QuantumField[str | None] = _QuantumField(None)
    num_qubits: _QuantumField[int | None] = _QuantumField(None)
    requires_all_to_all: _QuantumField[bool | None] = _QuantumField(None)
    run_options: _QuantumField[dict[str, Any]] = _QuantumField(_EMPTY_KWARGS)
    algorithm: _QuantumField[Any] = _QuantumField(None)
    optimizer: _QuantumField[Any] = _QuantumField(None)
    # Quantum runtime fields: the routing decision, every backend tried, the one that ran
    # it, its job's ID there, what the circuit needs and the circuit as the backend ran it.
    routing: _QuantumField[Any] = _QuantumField(None)
    backends_tried: _QuantumField[list[str] | None] = _QuantumField(None)
    backend_used: _QuantumField[str | None] = _QuantumField(None)
    job_id: _QuantumField[str | None] = _QuantumField(None)
    requirements: _QuantumField[Any] = _QuantumField(None)
    circuit_run: _QuantumField[Any] = _QuantumField(None)

    if TYPE_CHECKING:

        @property
        def status(self) -> TaskStatus:
            """Where the task is in its life. Read-only: the scheduler's core moves it along
            its state table, and nothing else does."""
            ...

    else:
        # Read at a slot's speed: attrgetter is a C call where a property's function is a
        # Python frame, and the scheduler reads a task's status on every move.
        status = property(
            operator.attrgetter("_status"),
            doc="Where the task is in its life. Read-only: the scheduler's core moves it "
            "along its state table, and nothing else does.",
        )

    def __init__(self, builder: TaskBuilder[T]) -> None:
        self.task_id: int = next(_ids)
        self.name: str = builder._name
        self.task_type: TaskType = builder._task_type
        self.priority: TaskPriority = builder._priority
        self.fn: Callable[..., Any] | None = builder._fn
        self.args: tuple[Any, ...] = builder._args
        self.kwargs: dict[str, Any] = builder._kwargs
        self.is_async: bool = builder._is_async
        # Invariant: changes only through SchedulerCore's state machine (see ``status``).
        self._status: TaskStatus = _PENDING
        self.seq: int = 0
        self.submitted_at: float | None = None
        self.enqueued_at: float = 0.0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.deadline: float | None = None
        self.attempts: int = 0
        self.value: Any = None
        # Created only when someone waits on an unfinished task; resolved (to None) when it ends.
        self.future: asyncio.Future[None] | None = None
        # What runs it off the loop's stack while RUNNING (None inline and on a thread).
        self.runner: TaskRunner | None = None
        # The pool it was admitted to, waits in or runs in (set by the core).
        self.resources: SlotPool | None = None
        # Invariant: slot_held is True iff the task holds one slot of a direct pool.
        self.slot_held = False
        self.extras: _Extras | None = builder._extras()
        self.quantum_part: _QuantumPart | None = None
        if self.task_type is not _CLASSICAL:
            part = self.quantum_part = _QuantumPart()
            part.circuit = builder._circuit
            part.shots = builder._shots
            part.backend = builder._backend
            part.num_qubits = builder._num_qubits
            part.requires_all_to_all = builder._requires_all_to_all
            part.run_options = builder._run_options
            part.algorithm = builder._algorithm
            part.optimizer = builder._optimizer
            part.requirements = builder._requirements

    def __repr__(self) -> str:
        return (
            f"<Task {self.task_id} {self.name!r} {self.task_type.value} "
            f"{self.priority.name} {self.status.value}>"
        )

    @staticmethod
    def classical(name: str) -> TaskBuilder[Any]:
        """Start building a classical task (a Python function, sync or async).

        Example:
            >>> Task.classical("optimize").with_function(sum, [1, 2]).build().name
            'optimize'
        """
        return TaskBuilder(name, _CLASSICAL)

    @staticmethod
    def quantum(name: str) -> TaskBuilder[Any]:
        """Start building a quantum task (a circuit run on a backend)."""
        return TaskBuilder(name, _QUANTUM)

    @staticmethod
    def hybrid(name: str) -> TaskBuilder[Any]:
        """Start building a hybrid task (an algorithm that interleaves both kinds of work)."""
        return TaskBuilder(name, _HYBRID)


class TaskBuilder(Generic[T]):
    """Builds a :class:`Task` step by step; every ``with_*`` call validates its input at once.

    Builders are mutable and each ``with_*`` returns the same builder. Submitting a builder
    builds a fresh task, so one builder can be submitted several times.

    Raises:
        InvalidTaskError: From any ``with_*`` method given a bad value, naming the field.
    """

    __slots__ = (
        "_name",
        "_task_type",
        "_priority",
        "_fn",
        "_args",
        "_kwargs",
        "_is_async",
        "_circuit",
        "_shots",
        "_timeout",
        "_backend",
        "_executor",
        "_preemptible",
        "_metadata",
        "_algorithm",
        "_optimizer",
        "_num_qubits",
        "_requires_all_to_all",
        "_run_options",
        "_max_retries",
        "_restartable",
        "_limits",
        "_requirements",
        "_key",
        "_transient",
        "_user",
    )

    def __init__(self, name: str, task_type: TaskType) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidTaskError("name", f"must be a non-empty string, got {name!r}")
        if type(task_type) is not TaskType:
            task_type = coerce_enum(TaskType, task_type, field="task_type")
        self._name = name
        self._task_type = task_type
        self._priority = _NORMAL
        self._fn: Callable[..., Any] | None = None
        self._args: tuple[Any, ...] = ()
        self._kwargs: dict[str, Any] = _EMPTY_KWARGS
        self._is_async = False
        self._circuit: Any = None
        self._shots = 1024
        self._timeout: float | None = None
        self._backend: str | None = None
        self._executor: str | None = None
        self._preemptible = True
        self._metadata: dict[str, Any] = _EMPTY_KWARGS
        self._algorithm: Any = None
        self._optimizer: Any = None
        self._num_qubits: int | None = None
        self._requires_all_to_all: bool | None = None
        self._run_options: dict[str, Any] = _EMPTY_KWARGS
        self._max_retries: int | None = None
        self._restartable = False
        self._limits: dict[str, float] | None = None
        # What the circuit needs, when the caller knows it already (the primitives: every
        # bound copy of one PUB circuit needs the same); None: analysed at submit.
        self._requirements: Any = None
        self._key: str | None = None
        self._transient = False
        self._user: str | None = None

    @property
    def name(self) -> str:
        """The task's name."""
        return self._name

    @property
    def task_type(self) -> TaskType:
        """The kind of task being built."""
        return self._task_type

    def with_priority(self, priority: TaskPriority) -> TaskBuilder[T]:
        """Set the priority (default ``NORMAL``).

        Args:
            priority: A :class:`TaskPriority`, or its name in any case (``"high"``) or its
                value (``3``), as every enum input of the package accepts.

        Raises:
            InvalidTaskError: If ``priority`` is none of those (a bool included).
        """
        if type(priority) is not TaskPriority:
            priority = coerce_enum(TaskPriority, priority, field="priority")
        self._priority = priority
        return self

    @overload
    def with_function(
        self, fn: Callable[P, Awaitable[U]], *args: P.args, **kwargs: P.kwargs
    ) -> TaskBuilder[U]: ...

    @overload
    def with_function(
        self, fn: Callable[P, U], *args: P.args, **kwargs: P.kwargs
    ) -> TaskBuilder[U]: ...

    def with_function(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> TaskBuilder[Any]:
        """Set the function a classical or hybrid task runs, with its arguments.

        ``fn`` may be a plain function (run on a worker, or inline when it is known to be tiny)
        or an ``async def`` function (run on the scheduler's event loop).
        """
        if not callable(fn):
            raise InvalidTaskError("function", f"must be callable, got {type(fn).__name__}")
        if self._task_type is _QUANTUM:
            raise InvalidTaskError(
                "function", "a quantum task runs a circuit, not a function: use with_circuit()"
            )
        self._fn = fn
        self._args = args
        self._kwargs = kwargs if kwargs else _EMPTY_KWARGS
        self._is_async = is_async_callable(fn)
        return self

    def with_circuit(self, circuit: object) -> TaskBuilder[T]:
        """Set the circuit a quantum task runs.

        Accepted: a Qiskit ``QuantumCircuit``, OpenQASM 2 or OpenQASM 3 source text, a
        :class:`~logosq_os_scheduler.backends.CircuitSpec`, or a backend's own circuit type
        (any object with an ``int`` ``num_qubits``). Text is parsed (and rejected with the
        line and the problem) when the task is submitted.

        Raises:
            InvalidTaskError: If ``circuit`` is none of those, the text is blank, or the task
                is classical.
        """
        if isinstance(circuit, str):
            if not circuit.strip():
                raise InvalidTaskError("circuit", "OpenQASM text is empty")
        elif not has_num_qubits(circuit):
            raise unsupported_circuit(circuit)
        if self._task_type is _CLASSICAL:
            raise InvalidTaskError(
                "circuit", "a classical task runs a function: use Task.quantum() for circuits"
            )
        self._circuit = circuit
        return self

    def with_shots(self, shots: int) -> TaskBuilder[T]:
        """Set how many times the circuit is sampled (default 1024)."""
        if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
            raise InvalidTaskError("shots", f"must be a positive integer, got {shots!r}")
        if shots > 10_000_000:
            raise InvalidTaskError("shots", f"at most 10,000,000 shots per circuit, got {shots}")
        self._shots = shots
        return self

    def with_timeout(self, timeout: float | timedelta) -> TaskBuilder[T]:
        """Set the task's deadline, counted from submission: past it the task ends TIMED_OUT."""
        self._timeout = coerce_seconds("timeout", timeout, allow_none=False)
        return self

    def with_backend(self, backend: str) -> TaskBuilder[T]:
        """Pin the task to the backend registered under this name (no routing)."""
        if not isinstance(backend, str) or not backend:
            raise InvalidTaskError("backend", f"must be a non-empty backend name, got {backend!r}")
        self._backend = backend
        return self

    def with_executor(self, executor: str) -> TaskBuilder[T]:
        """Choose where a classical function runs: ``"auto"`` (default), ``"inline"``,
        ``"thread"``, or the name of an executor registered with the scheduler.

        ``"inline"`` runs a synchronous function directly on the scheduler's event loop: the
        cheapest path, for functions that take microseconds. ``"auto"`` picks inline for
        functions it has measured to be that quick, and a worker thread otherwise.
        """
        if not isinstance(executor, str) or not executor:
            raise InvalidTaskError("executor", f"must be an executor name, got {executor!r}")
        self._executor = executor
        return self

    def with_preemptible(self, preemptible: bool) -> TaskBuilder[T]:
        """Mark whether a running task may be preempted for more urgent work (default True)."""
        if not isinstance(preemptible, bool):
            raise InvalidTaskError("preemptible", f"must be True or False, got {preemptible!r}")
        self._preemptible = preemptible
        return self

    def with_restartable(self, restartable: bool = True) -> TaskBuilder[T]:
        """Mark that the task may be stopped and started again from scratch (its function is
        safe to run twice).

        Under ``PreemptionStrategy.PREEMPTIVE`` such a task is preempted at once rather than
        at its next checkpoint. With a journal, a task that was running when the scheduler
        died runs again after the restart only if it is restartable; otherwise it ends FAILED
        with :class:`~logosq_os_scheduler.InterruptedByRestartError`."""
        if not isinstance(restartable, bool):
            raise InvalidTaskError("restartable", f"must be True or False, got {restartable!r}")
        self._restartable = restartable
        return self

    def with_key(self, key: str) -> TaskBuilder[T]:
        """Give the task a client key, such as ``"exp42/point17"``: its durable name.

        Submitting the same task again under a key a scheduler already knows returns the
        handle of the task submitted first (an idempotent submit) and runs nothing new; with a
        journal this holds across restarts too, and ``scheduler.task(key)`` finds the task
        again. A builder with a key, submitted twice, therefore gives one task. A different
        task under a known key (another function, arguments, circuit, shots, priority, name or
        option) is refused with :class:`~logosq_os_scheduler.KeyReusedError`.

        Raises:
            InvalidTaskError: If ``key`` is not a non-empty string of at most 256 characters.
        """
        if not isinstance(key, str) or not key or len(key) > 256:
            raise InvalidTaskError(
                "key", f"must be a non-empty string of at most 256 characters, got {key!r}"
            )
        if not key.isprintable():
            raise InvalidTaskError("key", f"must hold printable characters only, got {key!r}")
        self._key = key
        return self

    def with_user(self, user: str) -> TaskBuilder[T]:
        """Say whose task this is, such as ``"user_a"``.

        A scheduler with :class:`~logosq_os_scheduler.FairShare` shares its slots between
        users by weight, each user's tasks in priority order within that user's share; the
        service (``logosq serve``) tags every task with the account that submitted it. The
        user is written to the journal with the task.

        Raises:
            InvalidTaskError: If ``user`` is not a non-empty printable string of at most 128
                characters.
        """
        if not isinstance(user, str) or not user or len(user) > 128 or not user.isprintable():
            raise InvalidTaskError(
                "user",
                f"must be a non-empty printable string of at most 128 characters, got {user!r}",
            )
        self._user = user
        return self

    def with_limits(
        self, *, memory_bytes: int | None = None, cpu_seconds: float | None = None
    ) -> TaskBuilder[T]:
        """Limit the memory and CPU time of the task's worker (process executors enforce
        them; a task past a limit fails with a clear error)."""
        limits: dict[str, float] = {}
        if memory_bytes is not None:
            if (
                not isinstance(memory_bytes, int)
                or isinstance(memory_bytes, bool)
                or memory_bytes < 1 << 20
            ):
                raise InvalidTaskError(
                    "memory_bytes", f"must be an integer of at least 1 MiB, got {memory_bytes!r}"
                )
            limits["memory_bytes"] = memory_bytes
        if cpu_seconds is not None:
            seconds = coerce_seconds("cpu_seconds", cpu_seconds, allow_none=False)
            assert seconds is not None
            limits["cpu_seconds"] = seconds
        if not limits:
            raise InvalidTaskError("limits", "give memory_bytes, cpu_seconds or both")
        self._limits = limits
        return self

    def with_metadata(self, /, **metadata: object) -> TaskBuilder[T]:
        """Attach free-form labels to the task (kept on the task and its result).

        Any label name is accepted, ``self`` included (``self`` is positional-only here).
        """
        merged = dict(self._metadata)
        merged.update(metadata)
        self._metadata = merged
        return self

    def with_qubits(self, num_qubits: int) -> TaskBuilder[T]:
        """Override the number of qubits the circuit needs (normally derived from the circuit)."""
        if not isinstance(num_qubits, int) or isinstance(num_qubits, bool) or num_qubits <= 0:
            raise InvalidTaskError("num_qubits", f"must be a positive integer, got {num_qubits!r}")
        self._num_qubits = num_qubits
        return self

    def with_all_to_all(self, required: bool = True) -> TaskBuilder[T]:
        """Override whether the circuit needs all-to-all connectivity (normally derived)."""
        if not isinstance(required, bool):
            raise InvalidTaskError("requires_all_to_all", f"must be a bool, got {required!r}")
        self._requires_all_to_all = required
        return self

    def with_run_options(self, /, **options: object) -> TaskBuilder[T]:
        """Pass run options to the backend with the circuit (``seed_simulator=7``, ...).

        They reach the backend's ``run`` call unchanged, as :attr:`CircuitJob.options
        <logosq_os_scheduler.backends.CircuitJob.options>`; circuits with different options are
        never merged into one backend call. Later calls add to (and override) earlier ones.

        Raises:
            InvalidTaskError: If the task is not quantum, or an option is named ``shots``
                (use :meth:`with_shots`).
        """
        if self._task_type is not _QUANTUM:
            raise InvalidTaskError("run_options", "only quantum tasks (Task.quantum) take them")
        if "shots" in options:
            raise InvalidTaskError("run_options", "give shots with with_shots(n), not here")
        merged = dict(self._run_options)
        merged.update(options)
        self._run_options = merged
        return self

    def with_retries(self, max_retries: int) -> TaskBuilder[T]:
        """Set how many times a failed backend attempt may be retried (default: the
        scheduler's ``max_retries``). 0 means one attempt only."""
        if (
            not isinstance(max_retries, int)
            or isinstance(max_retries, bool)
            or not 0 <= max_retries <= 100
        ):
            raise InvalidTaskError(
                "max_retries", f"must be an integer from 0 to 100, got {max_retries!r}"
            )
        self._max_retries = max_retries
        return self

    def with_algorithm(self, algorithm: object) -> TaskBuilder[T]:
        """Set the algorithm a hybrid task runs (for example a VQE)."""
        if self._task_type is not _HYBRID:
            raise InvalidTaskError("algorithm", "only hybrid tasks (Task.hybrid) take an algorithm")
        if algorithm is None:
            raise InvalidTaskError("algorithm", "must not be None")
        self._algorithm = algorithm
        return self

    def with_optimizer(self, optimizer: object) -> TaskBuilder[T]:
        """Set the classical optimiser a hybrid task's algorithm uses."""
        if self._task_type is not _HYBRID:
            raise InvalidTaskError("optimizer", "only hybrid tasks (Task.hybrid) take an optimizer")
        if optimizer is None:
            raise InvalidTaskError("optimizer", "must not be None")
        self._optimizer = optimizer
        return self

    def _extras(self) -> _Extras | None:
        """The task's :class:`_Extras`, or None when every such field is at its default."""
        if (
            self._timeout is None
            and self._executor is None
            and self._preemptible
            and not self._metadata
            and self._max_retries is None
            and not self._restartable
            and self._limits is None
            and self._key is None
            and not self._transient
            and self._user is None
        ):
            return None
        extras = _Extras()
        extras.timeout = self._timeout
        extras.executor = self._executor
        extras.preemptible = self._preemptible
        extras.metadata = self._metadata
        extras.max_retries = self._max_retries
        extras.restartable = self._restartable
        extras.limits = self._limits
        extras.key = self._key
        extras.transient = self._transient
        extras.user = self._user
        return extras

    def build(self) -> Task[T]:
        """Check the builder is complete and return a new :class:`Task`.

        Raises:
            InvalidTaskError: If a required field is missing (a function for classical tasks, a
                circuit for quantum ones, a function or algorithm for hybrid ones).
        """
        kind = self._task_type
        if kind is _CLASSICAL:
            if self._fn is None:
                raise InvalidTaskError("function", "a classical task needs with_function(fn)")
        elif kind is _QUANTUM:
            if self._circuit is None:
                raise InvalidTaskError("circuit", "a quantum task needs with_circuit(circuit)")
        elif self._fn is None and self._algorithm is None:
            raise InvalidTaskError(
                "algorithm", "a hybrid task needs with_algorithm(...) or with_function(fn)"
            )
        return Task(self)

    def __repr__(self) -> str:
        return f"<TaskBuilder {self._name!r} {self._task_type.value} {self._priority.name}>"
