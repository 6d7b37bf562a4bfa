"""What travels over the wire: task requests out, and the errors of what comes back.

Sans-I/O, as h11 is: these functions turn the user's objects into the JSON bodies of the
service's contract and the server's JSON back into the package's objects and errors; no
function here sends or receives anything. :mod:`._client` does the I/O.

Circuits travel as QPY (base64) when they are Qiskit circuits and as OpenQASM when the user
gave text; classical work travels only as the name of a function registered on the server,
with JSON arguments: never code, never a pickle.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._coerce import coerce_enum
from .._errors import (
    AuthenticationError,
    InterruptedByRestartError,
    InvalidRequestError,
    InvalidTaskError,
    KeyReusedError,
    PermissionDeniedError,
    QuotaExceededError,
    RetriesExhaustedError,
    SchedulerError,
    ServiceError,
    TaskCancelledError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
    UnknownTaskError,
)
from .._task import Task, TaskBuilder, TaskPriority, TaskStatus, TaskType
from ._views import JSON, TaskView

if TYPE_CHECKING:
    from qiskit.circuit import QuantumCircuit
    from qiskit.quantum_info import SparsePauliOp

__all__ = [
    "LIBRARY_ANSATZE",
    "TaskRequest",
    "encode_circuit",
    "error_of_task",
    "error_of_problem",
    "new_key",
    "retry_after_seconds",
]

LIBRARY_ANSATZE = ("efficient_su2", "real_amplitudes")
"""The ansatz circuits a server builds by name for a VQE request."""

_QASM3 = re.compile(r"^\s*(//[^\n]*\n\s*)*OPENQASM\s+3", re.ASCII)


def new_key() -> str:
    """A fresh client key: what a submit carries when its user gave none, so that a request
    retried after a lost response finds the task it made instead of making a second one."""
    return f"lq-{uuid.uuid4().hex}"


def encode_circuit(circuit: object) -> dict[str, str]:
    """A circuit as the contract's ``{"format", "source"}``.

    Raises:
        InvalidTaskError: If ``circuit`` is neither OpenQASM text nor a Qiskit circuit (a
            server cannot run a backend's own circuit type or a CircuitSpec).
    """
    if isinstance(circuit, str):
        fmt = "qasm3" if _QASM3.match(circuit) else "qasm2"
        return {"format": fmt, "source": circuit}
    if type(circuit).__name__ == "QuantumCircuit" and type(circuit).__module__.startswith("qiskit"):
        from qiskit import qpy

        buf = io.BytesIO()
        qpy.dump(circuit, buf)
        return {"format": "qpy", "source": base64.b64encode(buf.getvalue()).decode("ascii")}
    got = type(circuit).__name__
    raise InvalidTaskError(
        "circuit",
        f"a scheduler service takes a Qiskit QuantumCircuit or OpenQASM 2/3 text, got {got}",
    )


def _pauli_terms(hamiltonian: object) -> list[list[JSON]]:
    """A Hamiltonian as the contract's ``[[pauli_label, coeff], ...]``: a Qiskit
    ``SparsePauliOp``, a mapping of labels to coefficients, or (label, coeff) pairs."""
    if hasattr(hamiltonian, "to_list"):
        pairs = hamiltonian.to_list()
    elif isinstance(hamiltonian, Mapping):
        pairs = list(hamiltonian.items())
    elif isinstance(hamiltonian, Sequence) and not isinstance(hamiltonian, str):
        pairs = list(hamiltonian)
    else:
        raise InvalidTaskError(
            "hamiltonian",
            "expected a SparsePauliOp, a {label: coeff} mapping or (label, coeff) pairs, got "
            f"{type(hamiltonian).__name__}",
        )
    terms: list[list[JSON]] = []
    for pair in pairs:
        label, coeff = pair
        c = complex(coeff)
        if c.imag != 0.0:
            raise InvalidTaskError(
                "hamiltonian",
                f"coefficient of {label!r} is complex ({coeff}): give a Hermitian one",
            )
        terms.append([str(label), c.real])
    if not terms:
        raise InvalidTaskError("hamiltonian", "has no terms")
    return terms


def _optimizer(optimizer: str, maxiter: int) -> dict[str, JSON]:
    if not isinstance(optimizer, str) or not optimizer:
        raise InvalidTaskError("optimizer", f"must be an optimizer's name, got {optimizer!r}")
    if not isinstance(maxiter, int) or isinstance(maxiter, bool) or maxiter <= 0:
        raise InvalidTaskError("maxiter", f"must be a positive integer, got {maxiter!r}")
    return {"name": optimizer.lower(), "maxiter": maxiter}


def _priority(priority: TaskPriority | str | int) -> str:
    member = coerce_enum(TaskPriority, priority, field="priority")
    return member.name.lower()


# Builder settings a server does not take: sending the task without them would silently
# change what it does, so they are refused, naming the call to leave out.
_LOCAL_ONLY: tuple[tuple[str, object, str], ...] = (
    ("executor", None, "with_executor"),
    ("limits", None, "with_limits"),
    ("max_retries", None, "with_retries"),
    ("restartable", False, "with_restartable"),
    ("preemptible", True, "with_preemptible"),
    ("num_qubits", None, "with_qubits"),
    ("requires_all_to_all", None, "with_all_to_all"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class TaskRequest:
    """One task as a scheduler service takes it: the JSON body of a submit.

    Made from a :class:`~logosq_os_scheduler.TaskBuilder` (:meth:`of`) or for work a server
    runs by name or parameters (:meth:`function`, :meth:`vqe`, :meth:`qaoa`); given to
    ``client.submit()`` or, many at once, ``client.submit_many()``. Frozen: a request may be
    submitted again (it is the same task if it has a key).

    Attributes:
        body: The request body, without the client key.
        key: The client key given by the user, or None (the client then makes one per submit).
    """

    body: Mapping[str, JSON]
    key: str | None = None

    @property
    def name(self) -> str:
        """The task's name (the server gives one after the kind when the request has none)."""
        return str(self.body.get("name") or self.body["kind"])

    def with_key(self, key: str) -> TaskRequest:
        """This request with the client key ``key``."""
        return dataclasses.replace(self, key=_check_key(key))

    def to_json(self, key: str) -> dict[str, JSON]:
        """The body to send, carrying ``key``."""
        body = dict(self.body)
        body["key"] = key
        return body

    @staticmethod
    def of(builder: TaskBuilder[Any] | Task[Any]) -> TaskRequest:
        """The request for a task built with ``Task.quantum(...)`` (its circuit as QPY or
        the OpenQASM text given, shots, priority, key, backend, timeout, metadata and run
        options), or with ``Task.hybrid(...).with_algorithm(VQE(...))`` or ``QAOA(...)``
        (the algorithm's parameters, and the optimiser's kind and ``maxiter``).

        Raises:
            InvalidTaskError: If the task is incomplete, is classical (a function cannot
                travel: register it on the server and use ``submit_function``), or sets
                something a server does not take (naming it: a local-only builder call, a
                callback, an optimiser setting other than ``maxiter``).
        """
        task = builder.build() if isinstance(builder, TaskBuilder) else builder
        if task.task_type is TaskType.CLASSICAL:
            fn = getattr(task.fn, "__name__", "the function")
            raise InvalidTaskError(
                "function",
                f"a scheduler service never runs code sent to it: register {fn} in the "
                "server's [functions] and call client.submit_function(name, *args)",
            )
        for attr, default, call in _LOCAL_ONLY:
            if getattr(task, attr) != default:
                raise InvalidTaskError(
                    attr, f"{call}() is not sent to a scheduler service: leave it out"
                )
        if task.task_type is TaskType.HYBRID:
            return _algorithm_request(task)
        body: dict[str, JSON] = {
            "kind": "circuit",
            "name": task.name,
            "priority": task.priority.name.lower(),
            "circuit": encode_circuit(task.circuit),
            "shots": task.shots,
        }
        if task.backend is not None:
            body["backend"] = task.backend
        if task.timeout is not None:
            body["timeout"] = task.timeout
        if task.metadata:
            body["metadata"] = dict(task.metadata)
        if task.run_options:
            body["run_options"] = dict(task.run_options)
        return TaskRequest(body, task.key)

    @staticmethod
    def function(
        function: str,
        *args: JSON,
        kwargs: Mapping[str, JSON] | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> TaskRequest:
        """The request to run ``function``, a name registered in the server's
        ``[functions]``, with JSON arguments.

        Raises:
            InvalidTaskError: If ``function`` is not a name (a callable cannot travel).
        """
        if not isinstance(function, str) or not function:
            got = getattr(function, "__name__", type(function).__name__)
            raise InvalidTaskError(
                "function",
                f"give the name a server registered, not {got}: a scheduler service never "
                "runs code sent to it",
            )
        body: dict[str, JSON] = {"kind": "function", "function": function, "args": list(args)}
        if kwargs:
            body["kwargs"] = dict(kwargs)
        return _common(body, name, key, priority, timeout, metadata)

    @staticmethod
    def vqe(
        hamiltonian: SparsePauliOp | Mapping[str, float] | Sequence[tuple[str, float]],
        ansatz: QuantumCircuit | str,
        *,
        reps: int | None = None,
        optimizer: str = "cobyla",
        maxiter: int = 100,
        initial_point: Sequence[float] | None = None,
        shots: int | None = 4096,
        seed: int | None = None,
        backend: str | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> TaskRequest:
        """The request for a VQE the server runs: ``hamiltonian`` (Pauli terms), ``ansatz``
        (a parametrised Qiskit circuit, OpenQASM 3 text, or the name of a library ansatz,
        ``"efficient_su2"`` or ``"real_amplitudes"``, with ``reps``), the optimiser's name
        and its iterations; energies estimated from ``shots`` per measurement basis (None:
        exact), on ``backend`` if given.

        Raises:
            InvalidTaskError: If a parameter is malformed (naming it).
        """
        body: dict[str, JSON] = {"kind": "vqe", "hamiltonian": _pauli_terms(hamiltonian)}
        if isinstance(ansatz, str) and ansatz in LIBRARY_ANSATZE:
            body["ansatz"] = {"library": ansatz, "reps": 1 if reps is None else reps}
        elif reps is not None:
            raise InvalidTaskError(
                "reps", f"reps is for a library ansatz ({', '.join(LIBRARY_ANSATZE)})"
            )
        else:
            body["ansatz"] = encode_circuit(ansatz)
        body["optimizer"] = _optimizer(optimizer, maxiter)
        _algorithm_options(body, initial_point, shots, seed, backend)
        return _common(body, name, key, priority, timeout, metadata)

    @staticmethod
    def qaoa(
        hamiltonian: SparsePauliOp | Mapping[str, float] | Sequence[tuple[str, float]],
        *,
        reps: int = 1,
        optimizer: str = "cobyla",
        maxiter: int = 100,
        initial_point: Sequence[float] | None = None,
        shots: int | None = 4096,
        seed: int | None = None,
        backend: str | None = None,
        name: str | None = None,
        key: str | None = None,
        priority: TaskPriority | str = TaskPriority.NORMAL,
        timeout: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
    ) -> TaskRequest:
        """The request for a QAOA the server runs on a diagonal ``hamiltonian`` (I/Z terms),
        with ``reps`` layers, sampled with ``shots`` (None: exact) on ``backend`` if given.

        Raises:
            InvalidTaskError: If a parameter is malformed (naming it).
        """
        body: dict[str, JSON] = {
            "kind": "qaoa",
            "hamiltonian": _pauli_terms(hamiltonian),
            "reps": reps,
            "optimizer": _optimizer(optimizer, maxiter),
        }
        _algorithm_options(body, initial_point, shots, seed, backend)
        return _common(body, name, key, priority, timeout, metadata)


_OPTIMIZERS = ("cobyla", "spsa", "adam")


def _optimizer_of(optimizer: object) -> dict[str, JSON]:
    """A workflows optimiser as the contract's ``{"name", "maxiter"}``: only its kind and
    its iterations travel, so one with other settings changed is refused."""
    if optimizer is None:
        return {"name": "cobyla", "maxiter": 200}  # what the algorithms use when given none
    name = type(optimizer).__name__.lower()
    maxiter = getattr(optimizer, "maxiter", None)
    if name not in _OPTIMIZERS or not isinstance(maxiter, int):
        raise InvalidTaskError(
            "optimizer",
            "a scheduler service runs COBYLA, SPSA or Adam by name, got "
            f"{type(optimizer).__name__}",
        )
    cls: Any = type(optimizer)
    if repr(optimizer) != repr(cls(maxiter=maxiter)):
        raise InvalidTaskError(
            "optimizer",
            f"only maxiter travels to a scheduler service; {optimizer!r} sets more: leave the "
            "other settings at their defaults",
        )
    return {"name": name, "maxiter": maxiter}


def _algorithm_request(task: Task[Any]) -> TaskRequest:
    """The request for a hybrid task running the workflows' VQE or QAOA."""
    algorithm = task.algorithm
    kind = type(algorithm).__name__
    if (
        task.fn is not None
        or kind not in ("VQE", "QAOA")
        or not (type(algorithm).__module__.startswith("logosq_os_scheduler.workflows"))
    ):
        raise InvalidTaskError(
            "algorithm",
            "a scheduler service runs the workflows' VQE and QAOA by their parameters, and no "
            "code: build the task with .with_algorithm(VQE(...)) or .with_algorithm(QAOA(...))",
        )
    if algorithm.callback is not None:
        raise InvalidTaskError("callback", "a callback cannot travel to a scheduler service")
    final_shots = algorithm.final_shots
    if (kind == "VQE" and final_shots is not None) or (kind == "QAOA" and final_shots != 4096):
        raise InvalidTaskError(
            "final_shots", "a scheduler service uses the algorithm's default: leave it out"
        )
    optimizer = task.optimizer if task.optimizer is not None else algorithm.optimizer
    # A start the algorithm drew (from its seed, or at random) is not sent: the server draws
    # it alike, and the same task sent again under its key stays the same request.
    point = [float(x) for x in algorithm.initial_point] if algorithm.initial_point_given else None
    common: dict[str, Any] = {
        "maxiter": 1,  # replaced below by the optimiser's own
        "initial_point": point,
        "shots": algorithm.shots,
        "seed": algorithm.seed,
        "backend": task.backend,
        "name": task.name,
        "key": task.key,
        "priority": task.priority,
        "timeout": task.timeout,
        "metadata": dict(task.metadata) or None,
    }
    if kind == "VQE":
        request = TaskRequest.vqe(algorithm.hamiltonian, algorithm.ansatz, **common)
    else:
        request = TaskRequest.qaoa(algorithm.cost, reps=algorithm.reps, **common)
    body = dict(request.body)
    body["optimizer"] = _optimizer_of(optimizer)
    return TaskRequest(body, request.key)


def _algorithm_options(
    body: dict[str, JSON],
    initial_point: Sequence[float] | None,
    shots: int | None,
    seed: int | None,
    backend: str | None,
) -> None:
    if initial_point is not None:
        body["initial_point"] = [float(x) for x in initial_point]
    if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0):
        raise InvalidTaskError("shots", f"must be a positive integer or None, got {shots!r}")
    body["shots"] = shots  # None asks for exact values: sent, as the server's default is 4096
    if seed is not None:
        body["seed"] = int(seed)
    if backend is not None:
        body["backend"] = backend


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 256 or not key.isprintable():
        raise InvalidTaskError(
            "key", f"must be a printable string of 1 to 256 characters, got {key!r}"
        )
    return key


def _common(
    body: dict[str, JSON],
    name: str | None,
    key: str | None,
    priority: TaskPriority | str,
    timeout: float | None,
    metadata: Mapping[str, JSON] | None,
) -> TaskRequest:
    if name is not None:
        body["name"] = name
    body["priority"] = _priority(priority)
    if timeout is not None:
        body["timeout"] = float(timeout)
    if metadata:
        body["metadata"] = dict(metadata)
    return TaskRequest(body, None if key is None else _check_key(key))


# The failures a task view may name that a caller would handle differently from a plain
# TaskFailedError; both take (task_id, message).
_FAILURES: dict[str, type[TaskFailedError]] = {
    "InterruptedByRestartError": InterruptedByRestartError,
    "RetriesExhaustedError": RetriesExhaustedError,
}


_GENERIC_ENDS = frozenset({"TaskTimeoutError", "TaskCancelledError"})


def error_of_task(view: TaskView) -> TaskError:
    """The error ``await handle`` raises for a task that ended without a value: the one a
    local handle raises for the same end, with the server's message."""
    what = f"task {view.task_id} ({view.name!r})"
    detail = view.error_message or view.error_type or "unknown error"
    if view.status is TaskStatus.FAILED:
        cls = _FAILURES.get(view.error_type or "")
        if cls is not None:
            return cls(view.task_id, detail)
        kind = f"{view.error_type}: " if view.error_type and view.error_type not in detail else ""
        return TaskFailedError(view.task_id, f"{what} failed: {kind}{detail}")
    # A time-out or a cancellation is said as a local handle says it; an error the server
    # recorded as its cause (anything but the generic one) is added.
    cause = ""
    if view.error_type and view.error_type not in _GENERIC_ENDS:
        cause = f" ({view.error_type}: {view.error_message})"
    if view.status is TaskStatus.TIMED_OUT:
        return TaskTimeoutError(view.task_id, f"{what} passed its deadline and timed out{cause}")
    if view.status is TaskStatus.CANCELLED:
        return TaskCancelledError(view.task_id, f"{what} was cancelled{cause}")
    raise ValueError(f"{what} is {view.status.name}, which is not an end without a value")


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header's seconds, or None (absent, or an HTTP date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: the contract sends seconds; no wait is better than a guess


def error_of_problem(
    status: int,
    problem: Mapping[str, JSON],
    *,
    retry_after: str | None = None,
    ref: int | str | None = None,
) -> SchedulerError:
    """The error for a refusal: HTTP ``status`` with its RFC 9457 ``problem`` body.

    Args:
        status: The HTTP status.
        problem: The problem body (or what could be read of it).
        retry_after: The ``Retry-After`` header, if any.
        ref: The task id or key the request was about, for a 404.
    """
    body = dict(problem)
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    if status == 401:
        return AuthenticationError(
            f"{detail} (the API token is missing or unknown to the server)",
            status=status,
            body=body,
        )
    if status == 403:
        return PermissionDeniedError(detail, status=status, body=body)
    if status == 404 and ref is not None:
        # The server answers 404 for another user's task too: never reveal that it exists.
        return UnknownTaskError(ref, "for this user on the server")
    if status == 429:
        return QuotaExceededError(
            detail,
            limit=str(body.get("limit", "unknown")),
            scope=str(body["scope"]) if body.get("scope") is not None else None,
            retry_after=retry_after_seconds(retry_after),
            status=status,
            body=body,
        )
    if status in (400, 413, 422):
        field = body.get("field")
        index = body.get("index")
        key, task_id = body.get("key"), body.get("task_id")
        if body.get("error") == "KeyReusedError" and isinstance(key, str):
            # Not an InvalidRequestError: the request was well formed, its key was taken.
            return KeyReusedError(
                key,
                task_id if isinstance(task_id, int) else -1,
                index=index if isinstance(index, int) else None,
            )
        return InvalidRequestError(
            detail,
            field=field if isinstance(field, str) else "request",
            index=index if isinstance(index, int) else None,
            status=status,
            body=body,
        )
    return ServiceError(detail, status=status, body=body)
