"""What crosses the wire: request structs, their conversion to tasks, and task views.

Requests are msgspec Structs tagged by ``kind`` and decoded with unknown fields forbidden, so a
field that does not belong to the kind, or a misspelt one, is refused before anything is built.
Nothing from the network is unpickled or evaluated: circuits are parsed by Qiskit's OpenQASM
and QPY readers, Hamiltonians built with ``SparsePauliOp.from_list``, and classical work is a
function the server's config registered, looked up by name.

Every task is tagged with its user (``with_user``, journaled with it), so after a restart the
journal alone says whose a task is. Client keys are per user: the scheduler stores
``"<user>/<client key>"``, so two users may use the same key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from .._errors import InvalidTaskError
from .._task import Task, TaskBuilder, TaskPriority, TaskStatus, TaskType

__all__ = [
    "BatchRequest",
    "Builder",
    "CircuitRequest",
    "FunctionRequest",
    "QAOARequest",
    "TaskRequest",
    "VQERequest",
    "build_task",
    "client_key",
    "internal_key",
    "owner_of",
    "task_view",
]

Priority = Literal["critical", "high", "normal", "low", "idle"]
PRIORITIES: dict[str, TaskPriority] = {p.name.lower(): p for p in TaskPriority}
MetadataValue = str | int | float | bool
# A client key is stored inside the task's key with the user in front: 256 in all.
MAX_CLIENT_KEY = 180
MAX_NAME = 200


class CircuitSource(msgspec.Struct, forbid_unknown_fields=True):
    """A circuit as text: ``qasm2`` or ``qasm3`` source, or ``qpy`` (base64 of ``qpy.dump``)."""

    format: Literal["qasm2", "qasm3", "qpy"]
    source: str


class AnsatzSpec(msgspec.Struct, forbid_unknown_fields=True):
    """A VQE ansatz: a circuit (``format`` and ``source``) or a library circuit by name."""

    format: Literal["qasm2", "qasm3", "qpy"] | None = None
    source: str | None = None
    library: Literal["efficient_su2", "real_amplitudes"] | None = None
    reps: int = 1


class OptimizerSpec(msgspec.Struct, forbid_unknown_fields=True):
    """An optimiser of the workflows package by name, with its iteration budget."""

    name: Literal["cobyla", "spsa", "adam"] = "cobyla"
    maxiter: int = 100


class _Base(msgspec.Struct, forbid_unknown_fields=True, tag_field="kind", kw_only=True):
    name: str | None = None
    key: str | None = None
    priority: Priority = "normal"
    timeout: float | None = None
    metadata: dict[str, MetadataValue] | None = None


class RunOptions(msgspec.Struct, forbid_unknown_fields=True):
    """Backend run options a client may set (only these: each is checked)."""

    seed_simulator: int | None = None


class CircuitRequest(_Base, tag="circuit", kw_only=True):
    """Run one circuit for ``shots`` shots, optionally on a named backend."""

    circuit: CircuitSource
    shots: int = 1024
    backend: str | None = None
    run_options: RunOptions | None = None


class FunctionRequest(_Base, tag="function", kw_only=True):
    """Run a function the server's config registered, with JSON arguments."""

    function: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)


class VQERequest(_Base, tag="vqe", kw_only=True):
    """A VQE: a Hamiltonian as ``[[pauli_label, coeff], ...]`` and an ansatz."""

    hamiltonian: list[tuple[str, float]]
    ansatz: AnsatzSpec
    optimizer: OptimizerSpec = msgspec.field(default_factory=OptimizerSpec)
    initial_point: list[float] | None = None
    shots: int | None = 4096
    seed: int | None = None
    backend: str | None = None


class QAOARequest(_Base, tag="qaoa", kw_only=True):
    """A QAOA on a diagonal cost Hamiltonian."""

    hamiltonian: list[tuple[str, float]]
    reps: int = 1
    optimizer: OptimizerSpec = msgspec.field(default_factory=OptimizerSpec)
    initial_point: list[float] | None = None
    shots: int | None = 4096
    seed: int | None = None
    backend: str | None = None


TaskRequest = CircuitRequest | FunctionRequest | VQERequest | QAOARequest


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Several tasks in one request: all are accepted, or none."""

    tasks: list[TaskRequest]


Builder = TaskBuilder[Any]


class Limits(msgspec.Struct, frozen=True):
    """The bounds a request is checked against (from ``[server]``)."""

    max_qubits: int
    max_shots: int


# -- request -> task ------------------------------------------------------------------------------


def internal_key(user: str, key: str) -> str:
    """The key the scheduler stores for ``user``'s client key."""
    return f"{user}/{key}"


def owner_of(task: Task[Any]) -> str | None:
    """Whose task this is (None: not one the server made, such as a VQE's own circuits)."""
    return task.user


def client_key(task: Task[Any]) -> str | None:
    """The key the client gave, or None."""
    return _client_part(task.key, task.user)


def _client_part(key: str | None, user: str | None) -> str | None:
    """The client's own key in the scheduler's key ``user/key`` (see internal_key)."""
    if key is None or user is None or not key.startswith(user + "/"):
        return None
    return key[len(user) + 1 :]


def request_shots(request: TaskRequest) -> int:
    """The circuit shots a request asks for up front (what a shots quota counts)."""
    return request.shots if isinstance(request, CircuitRequest) else 0


def build_task(
    request: TaskRequest,
    user: str,
    functions: Mapping[str, Callable[..., Any]],
    restartable: Mapping[str, bool],
    limits: Limits,
) -> Builder:
    """The task a request describes, tagged with its user and keyed for them.

    Raises:
        InvalidTaskError: Naming the field that is wrong and why.
    """
    if request.key is not None:
        _check_key(request.key)
    if request.name is not None and (
        not request.name or len(request.name) > MAX_NAME or not request.name.isprintable()
    ):
        raise InvalidTaskError(
            "name", f"must be 1-{MAX_NAME} printable characters, got {request.name[:40]!r}"
        )
    if request.timeout is not None and not (math.isfinite(request.timeout) and request.timeout > 0):
        raise InvalidTaskError(
            "timeout", f"must be a positive number of seconds, got {request.timeout}"
        )
    if isinstance(request, CircuitRequest):
        builder = _circuit_task(request, limits)
    elif isinstance(request, FunctionRequest):
        builder = _function_task(request, functions, restartable)
    elif isinstance(request, VQERequest):
        builder = _vqe_task(request, limits)
    else:
        builder = _qaoa_task(request, limits)
    builder = builder.with_priority(PRIORITIES[request.priority])
    if request.timeout is not None:
        builder = builder.with_timeout(request.timeout)
    if request.metadata:
        builder = builder.with_metadata(**request.metadata)
    if request.key is not None:
        builder = builder.with_key(internal_key(user, request.key))
    return builder.with_user(user)


def _check_key(key: str) -> None:
    if not key or len(key) > MAX_CLIENT_KEY or not key.isprintable():
        raise InvalidTaskError(
            "key",
            f"must be 1-{MAX_CLIENT_KEY} printable characters, got {key[:40]!r}"
            + ("..." if len(key) > 40 else ""),
        )


def _check_shots(shots: int | None, limits: Limits, *, allow_none: bool = False) -> None:
    if shots is None and allow_none:
        return
    if shots is None or shots < 1 or shots > limits.max_shots:
        raise InvalidTaskError("shots", f"must be between 1 and {limits.max_shots}, got {shots}")


def _check_width(num_qubits: int, limits: Limits, what: str) -> None:
    if num_qubits > limits.max_qubits:
        raise InvalidTaskError(
            what,
            f"has {num_qubits} qubits; this server accepts at most {limits.max_qubits} "
            "(server.max_qubits)",
        )


def _circuit_task(request: CircuitRequest, limits: Limits) -> Builder:
    _check_shots(request.shots, limits)
    source = request.circuit
    circuit: Any
    if source.format == "qpy":
        circuit = parse_circuit(source, "circuit", limits.max_qubits)
        width = circuit.num_qubits
    else:
        # OpenQASM goes to the task as its text: the scheduler reads it through the same
        # cache, and the journal stores the text rather than a QPY dump of the circuit.
        circuit = source.source
        width = _qasm_width(source.format, source.source)
    _check_width(width, limits, "circuit")
    builder = (
        Task.quantum(request.name or "circuit").with_circuit(circuit).with_shots(request.shots)
    )
    if request.backend is not None:
        builder = builder.with_backend(request.backend)
    options = request.run_options
    if options is not None and options.seed_simulator is not None:
        builder = builder.with_run_options(seed_simulator=options.seed_simulator)
    return builder


def _function_task(
    request: FunctionRequest,
    functions: Mapping[str, Callable[..., Any]],
    restartable: Mapping[str, bool],
) -> Builder:
    fn = functions.get(request.function)
    if fn is None:
        known = ", ".join(sorted(functions)) or "none are registered"
        raise InvalidTaskError(
            "function",
            f"no function {request.function!r} is registered on this server (known: {known}); "
            "classical work runs only by a name in the server config's [functions]",
        )
    builder = Task.classical(request.name or request.function).with_function(
        fn, *request.args, **request.kwargs
    )
    if restartable.get(request.function, False):
        builder = builder.with_restartable()
    return builder


def _vqe_task(request: VQERequest, limits: Limits) -> Builder:
    from ..workflows import VQE

    _check_shots(request.shots, limits, allow_none=True)
    hamiltonian = _hamiltonian(request.hamiltonian)
    _check_width(hamiltonian.num_qubits, limits, "hamiltonian")
    ansatz = _ansatz(request.ansatz, hamiltonian.num_qubits)
    algorithm = VQE(
        hamiltonian,
        ansatz,
        initial_point=request.initial_point,
        shots=request.shots,
        seed=request.seed,
    )
    builder = (
        Task.hybrid(request.name or "vqe")
        .with_algorithm(algorithm)
        .with_optimizer(_optimizer(request.optimizer))
    )
    return builder.with_backend(request.backend) if request.backend is not None else builder


def _qaoa_task(request: QAOARequest, limits: Limits) -> Builder:
    from ..workflows import QAOA

    _check_shots(request.shots, limits, allow_none=True)
    cost = _hamiltonian(request.hamiltonian)
    _check_width(cost.num_qubits, limits, "hamiltonian")
    if request.reps < 1 or request.reps > 16:
        raise InvalidTaskError("reps", f"must be between 1 and 16, got {request.reps}")
    algorithm = QAOA(
        cost,
        reps=request.reps,
        initial_point=request.initial_point,
        shots=request.shots,
        seed=request.seed,
    )
    builder = (
        Task.hybrid(request.name or "qaoa")
        .with_algorithm(algorithm)
        .with_optimizer(_optimizer(request.optimizer))
    )
    return builder.with_backend(request.backend) if request.backend is not None else builder


def _optimizer(spec: OptimizerSpec) -> object:
    from ..workflows import COBYLA, SPSA, Adam

    if not 1 <= spec.maxiter <= 10_000:
        raise InvalidTaskError(
            "optimizer", f"maxiter must be between 1 and 10000, got {spec.maxiter}"
        )
    factory = {"cobyla": COBYLA, "spsa": SPSA, "adam": Adam}[spec.name]
    return factory(maxiter=spec.maxiter)


def _hamiltonian(terms: list[tuple[str, float]]) -> Any:
    from qiskit.quantum_info import SparsePauliOp

    if not terms:
        raise InvalidTaskError("hamiltonian", "needs at least one [pauli_label, coeff] term")
    width = len(terms[0][0])
    for label, coeff in terms:
        if not label or len(label) != width or set(label) - set("IXYZ"):
            raise InvalidTaskError(
                "hamiltonian",
                f"term {label!r}: every label is a string of I, X, Y, Z of the same length",
            )
        if not math.isfinite(coeff):
            raise InvalidTaskError(
                "hamiltonian", f"term {label!r}: coefficient {coeff} is not finite"
            )
    try:
        return SparsePauliOp.from_list(terms)
    except Exception as exc:
        raise InvalidTaskError("hamiltonian", f"{type(exc).__name__}: {exc}") from exc


def _ansatz(spec: AnsatzSpec, num_qubits: int) -> Any:
    if spec.library is not None:
        if spec.format is not None or spec.source is not None:
            raise InvalidTaskError("ansatz", "give either library or format and source, not both")
        if not 1 <= spec.reps <= 16:
            raise InvalidTaskError("ansatz", f"reps must be between 1 and 16, got {spec.reps}")
        from qiskit.circuit.library import efficient_su2, real_amplitudes

        make = efficient_su2 if spec.library == "efficient_su2" else real_amplitudes
        return make(num_qubits, reps=spec.reps)
    if spec.format is None or spec.source is None:
        raise InvalidTaskError("ansatz", "needs library, or format and source")
    return parse_circuit(CircuitSource(spec.format, spec.source), "ansatz", num_qubits)


_HEADER = re.compile(r"OPENQASM\s+(\d+)(?:\.\d+)?\s*;")


def parse_circuit(source: CircuitSource, field: str, max_qubits: int) -> Any:
    """A QuantumCircuit from OpenQASM 2 or 3 text or base64 QPY.

    OpenQASM goes through the package's own reader (``backends.normalize_circuit``): a cache
    keyed by the text, a bound on register sizes checked before Qiskit allocates anything,
    and errors that name the line and column.

    Raises:
        InvalidTaskError: Naming what is wrong and where.
    """
    if source.format == "qpy":
        return _load_qpy(source.source, field, max_qubits)
    from ..backends import normalize_circuit

    expected = 2 if source.format == "qasm2" else 3
    header = _HEADER.search(source.source)
    if header is not None and int(header.group(1)) != expected:
        raise InvalidTaskError(
            field,
            f"format {source.format!r} but the program says OPENQASM {header.group(1)}: "
            "send the format the program is written in",
        )
    if header is None and expected == 2:
        raise InvalidTaskError(field, "an OpenQASM 2 program starts with 'OPENQASM 2.0;'")
    return normalize_circuit(source.source)


@functools.lru_cache(maxsize=1024)
def _qasm_width(fmt: Literal["qasm2", "qasm3"], text: str) -> int:
    """The qubits of a valid OpenQASM program (a refusal is raised, and not cached): the
    same program sent again is not parsed again, nor copied out of the parser's cache."""
    circuit = parse_circuit(CircuitSource(fmt, text), "circuit", 0)
    width: int = circuit.num_qubits
    return width


# The most classical bits a QPY circuit may declare (qubits are bounded by max_qubits).
_MAX_QPY_CLBITS = 100_000


def _load_qpy(text: str, field: str, max_qubits: int) -> Any:
    """A circuit from base64 QPY, its header checked before Qiskit reads the rest."""
    import struct

    from qiskit import QuantumCircuit, qpy
    from qiskit.qpy import formats

    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidTaskError(field, f"not valid qpy: not base64 ({exc})") from exc
    # The headers say how much the rest declares: check it here, where a hostile number
    # costs nothing, rather than let the reader allocate it. The layout is QPY's own
    # (qiskit.qpy.load): file header, a program type key, from version 16 a table of
    # program offsets, then each circuit's header.
    try:
        head = formats.FILE_HEADER_V10._make(
            struct.unpack_from(formats.FILE_HEADER_V10_PACK, data, 0)
        )
        if head.preface != b"QISKIT" or head.qpy_version < 12:
            raise InvalidTaskError(
                field,
                "not valid qpy: expected QPY version 12 or later (qiskit.qpy.dump of Qiskit 1.2+)",
            )
        if head.num_programs != 1:
            raise InvalidTaskError(field, f"QPY data holds {head.num_programs} circuits; send one")
        offset = formats.FILE_HEADER_V10_SIZE + 1  # the type key
        if head.qpy_version >= 16:
            entry = formats.CIRCUIT_TABLE_ENTRY(
                *struct.unpack_from(formats.CIRCUIT_TABLE_ENTRY_PACK, data, offset)
            )
            offset = entry.offset
        circuit = formats.CIRCUIT_HEADER_V12._make(
            struct.unpack_from(formats.CIRCUIT_HEADER_V12_PACK, data, offset)
        )
    except struct.error as exc:
        raise InvalidTaskError(field, "not valid qpy: the data is too short") from exc
    if circuit.num_qubits > max_qubits:
        raise InvalidTaskError(
            field,
            f"has {circuit.num_qubits} qubits; this server accepts at most {max_qubits} "
            "(server.max_qubits)",
        )
    if circuit.num_clbits > _MAX_QPY_CLBITS:
        raise InvalidTaskError(field, f"declares {circuit.num_clbits} classical bits")
    try:
        loaded = qpy.load(io.BytesIO(data))
    except Exception as exc:
        # The reader raises its own errors (QpyError, struct.error, ...) on bad data.
        raise InvalidTaskError(field, f"not valid qpy: {type(exc).__name__}: {exc}") from exc
    if len(loaded) != 1 or not isinstance(loaded[0], QuantumCircuit):
        raise InvalidTaskError(field, "QPY data is not one circuit")
    return loaded[0]


# -- task -> view ---------------------------------------------------------------------------------

_KIND = {TaskType.QUANTUM: "circuit", TaskType.CLASSICAL: "function", TaskType.HYBRID: "hybrid"}


def task_view(task: Task[Any], wall_offset: float) -> dict[str, Any]:
    """What every read returns about a task (times as Unix seconds).

    Args:
        task: The task.
        wall_offset: Add to a time on the scheduler's clock to get Unix time.
    """
    status = task._status
    task_type = task.task_type
    extras = task.extras
    part = task.quantum_part
    kind = _KIND[task_type]
    if task_type is TaskType.HYBRID:
        kind = "qaoa" if "best_bitstring" in _fields(task.value) else "vqe"
        algorithm = None if part is None else part.algorithm
        if algorithm is not None:
            kind = type(algorithm).__name__.lower()
    error = None
    if status in _DEFAULT_ERROR:
        err = None if extras is None else extras.error
        error = {
            "type": type(err).__name__ if err is not None else _DEFAULT_ERROR[status],
            "message": str(err) if err is not None else _DEFAULT_MESSAGE[status],
        }
    user = key = recovery = None
    if extras is not None:
        user = extras.user
        recovery = extras.recovery
        key = _client_part(extras.key, user)
    return {
        "id": task.task_id,
        "key": key,
        "name": task.name,
        "user": user,
        "kind": kind,
        "priority": _PRIORITY_NAME[task.priority],
        "status": _STATUS_VALUE[status],
        "submitted_at": _wall(task.submitted_at, wall_offset),
        "started_at": _wall(task.started_at, wall_offset),
        "finished_at": _wall(task.finished_at, wall_offset),
        "backend": (
            part.backend_used if part is not None and task_type is not TaskType.CLASSICAL else None
        ),
        "recovery": recovery,
        "result": jsonable(task.value) if status is TaskStatus.COMPLETED else None,
        "error": error,
    }


_PRIORITY_NAME = {p: p.name.lower() for p in TaskPriority}
_STATUS_VALUE = {s: s.value for s in TaskStatus}
_DEFAULT_ERROR = {
    TaskStatus.FAILED: "TaskFailedError",
    TaskStatus.TIMED_OUT: "TaskTimeoutError",
    TaskStatus.CANCELLED: "TaskCancelledError",
}
_DEFAULT_MESSAGE = {
    TaskStatus.FAILED: "the task failed",
    TaskStatus.TIMED_OUT: "the task passed its deadline and timed out",
    TaskStatus.CANCELLED: "the task was cancelled",
}


def _wall(t: float | None, offset: float) -> float | None:
    return None if t is None else t + offset


def _fields(value: object) -> set[str]:
    fields = getattr(value, "__dataclass_fields__", None)
    return set(fields) if isinstance(fields, dict) else set()


def jsonable(value: object) -> Any:
    """``value`` as plain JSON data: dataclasses as objects, NumPy numbers and arrays as
    numbers and lists; what cannot be expressed so, as its ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    fields = _fields(value)
    if fields:
        return {name: jsonable(getattr(value, name)) for name in fields if name != "task_ids"}
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays
    if callable(tolist):
        return jsonable(tolist())
    try:
        return msgspec.to_builtins(value)
    except (TypeError, msgspec.EncodeError):
        return repr(value)
