"""What the journal stores of a task, and how it reads it back.

A task's *spec* is what is needed to run it again in a new process: its function by
reference (module and qualified name, as pickle writes functions), its arguments, its circuit
(as QPY for a Qiskit circuit) and every option its builder took. It is one pickle, written by
this process to a local file the user chose: the journal is trusted like the program's own
code, and nothing from the network ever reaches it unchecked (a service writes only what it
has validated and built itself).

What cannot be found again after a restart (a lambda, a nested function, an argument that
does not pickle) is refused at submit with an :class:`InvalidTaskError` that says how to fix it,
rather than accepted and lost.

Results use the canonical encoding of result signing (``security._encoding``), which is exact
for the values tasks usually return (numbers, strings, counts, lists, tuples, dicts, bytes);
a value it cannot encode exactly (a NumPy array, a dataclass) is pickled instead.
"""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

from .._errors import InvalidTaskError
from .._task import (
    Task,
    TaskBuilder,
    TaskPriority,
    TaskType,
    is_async_callable,
    restored_task,
)

__all__ = [
    "RESULT_CANONICAL",
    "RESULT_NONE",
    "RESULT_PICKLE",
    "decode_error",
    "decode_result",
    "decode_spec",
    "encode_error",
    "encode_result",
    "encode_spec",
    "same_spec",
]

SPEC_VERSION = 1

RESULT_NONE = 0
RESULT_CANONICAL = 1
RESULT_PICKLE = 2

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_dumps = pickle.dumps

# canonical_text's settings (security._encoding), for the counts fast path of encode_result.
_canonical_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
).encode
_INT_LIMIT = 1 << 63


def _not_findable(fn: object) -> str | None:
    """Why ``fn`` cannot be found again by module and name, or None if it can be."""
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):
        return None  # a callable object: pickled by value, tried below
    module = getattr(fn, "__module__", None) or "?"
    if "<lambda>" in qualname:
        return f"{module}.{qualname} is a lambda"
    if "<locals>" in qualname:
        return f"{module}.{qualname} is defined inside another function"
    return None


def encode_spec(task: Task[Any]) -> bytes:
    """The task's spec as the journal stores it.

    Raises:
        InvalidTaskError: If the task could not be run again after a restart: its function
            is a lambda or nested function, or it or an argument does not pickle.
    """
    fn = task.fn
    if fn is not None:
        why = _not_findable(fn)
        if why is not None:
            raise InvalidTaskError(
                "function",
                f"{why}, which a scheduler with a journal cannot find again after a restart: "
                "define it with def at the top level of a module, or submit to a scheduler "
                "without a journal",
            )
    extras = task.extras
    options: dict[str, Any] | None = None
    if extras is not None:
        options = {
            "timeout": extras.timeout,
            "executor": extras.executor,
            "preemptible": extras.preemptible,
            "metadata": extras.metadata or None,
            "max_retries": extras.max_retries,
            "restartable": extras.restartable,
            "limits": extras.limits,
            "user": extras.user,
        }
    quantum: dict[str, Any] | None = None
    part = task.quantum_part
    if part is not None:
        quantum = {
            "circuit": _encode_circuit(part.circuit),
            "shots": part.shots,
            "backend": part.backend,
            "num_qubits": part.num_qubits,
            "requires_all_to_all": part.requires_all_to_all,
            "run_options": part.run_options or None,
            "algorithm": part.algorithm,
            "optimizer": part.optimizer,
        }
    args: tuple[Any, ...] = task.args
    kwargs = task.kwargs or None
    if part is not None and part.algorithm is not None:
        # A hybrid algorithm's task runs run_hybrid(scheduler, algorithm, ...), derived at
        # submit from the algorithm and its options: store those, not the call.
        fn, args, kwargs = None, (), None
    spec = (SPEC_VERSION, fn, args, kwargs, options, quantum)
    try:
        return _dumps(spec, _PROTOCOL)
    except Exception as exc:
        raise InvalidTaskError(_culprit(spec), _unpicklable(exc)) from exc


def _culprit(spec: tuple[Any, ...]) -> str:
    """Which field of a spec does not pickle (for the error message)."""
    _v, fn, args, kwargs, options, quantum = spec
    for field, value in (
        ("function", fn),
        ("args", args),
        ("kwargs", kwargs),
        ("metadata", options),
        ("quantum", quantum),
    ):
        try:
            _dumps(value, _PROTOCOL)
        except Exception:
            if field == "quantum" and quantum is not None:
                for name, v in quantum.items():
                    try:
                        _dumps(v, _PROTOCOL)
                    except Exception:
                        return str(name)
            return field
    return "task"


def _unpicklable(exc: BaseException) -> str:
    return (
        f"cannot be written to the journal ({type(exc).__name__}: {exc}): a scheduler with a "
        "journal stores each task to run it again after a restart, so its function must be "
        "a top-level def and its arguments plain data (numbers, strings, lists, dicts, "
        "arrays) or objects that pickle; or submit it to a scheduler without a journal"
    )


def _encode_circuit(circuit: object) -> tuple[str, Any]:
    if isinstance(circuit, str):
        return ("text", circuit)
    if type(circuit).__name__ == "QuantumCircuit" and type(circuit).__module__.startswith("qiskit"):
        from qiskit import qpy

        buf = io.BytesIO()
        qpy.dump(circuit, buf)
        return ("qpy", buf.getvalue())
    return ("object", circuit)


def _decode_circuit(stored: tuple[str, Any]) -> object:
    kind, data = stored
    if kind == "qpy":
        from qiskit import qpy

        return qpy.load(io.BytesIO(data))[0]
    return data


def decode_spec(
    blob: bytes, task_id: int, name: str, task_type: TaskType, priority: TaskPriority
) -> Task[Any]:
    """Build again the task a spec describes, with its original id.

    Raises:
        Exception: Whatever unpickling raises when the function's module or a class of an
            argument cannot be imported any more (the caller ends that task FAILED).
    """
    version, fn, args, kwargs, options, quantum = pickle.loads(blob)
    if version != SPEC_VERSION:
        raise ValueError(f"task spec of version {version}; this version reads {SPEC_VERSION}")
    if options is None and quantum is None and fn is not None:
        # Most tasks: a function and its arguments, every option at its default. Checked
        # once at submit already; recovery of a million of them skips the builder.
        task = restored_task(task_id, name, task_type, priority)
        task.fn = fn
        task.args = args
        if kwargs:
            task.kwargs = kwargs
        task.is_async = is_async_callable(fn)
        return task
    builder: TaskBuilder[Any] = TaskBuilder(name, task_type).with_priority(priority)
    if fn is not None:
        builder.with_function(fn, *args, **(kwargs or {}))
    if options is not None:
        if options["timeout"] is not None:
            builder.with_timeout(options["timeout"])
        if options["executor"] is not None:
            builder.with_executor(options["executor"])
        builder.with_preemptible(options["preemptible"])
        if options["metadata"]:
            builder.with_metadata(**options["metadata"])
        if options["max_retries"] is not None:
            builder.with_retries(options["max_retries"])
        builder.with_restartable(options["restartable"])
        user = options.get("user")  # absent from journals written before with_user
        if user is not None:
            builder.with_user(user)
        limits = options["limits"]
        if limits is not None:
            builder.with_limits(
                memory_bytes=int(limits["memory_bytes"]) if "memory_bytes" in limits else None,
                cpu_seconds=limits.get("cpu_seconds"),
            )
    if quantum is not None:
        if quantum["circuit"][1] is not None:
            builder.with_circuit(_decode_circuit(quantum["circuit"]))
        builder.with_shots(quantum["shots"])
        if quantum["backend"] is not None:
            builder.with_backend(quantum["backend"])
        if quantum["num_qubits"] is not None:
            builder.with_qubits(quantum["num_qubits"])
        if quantum["requires_all_to_all"] is not None:
            builder.with_all_to_all(quantum["requires_all_to_all"])
        if quantum["run_options"]:
            builder.with_run_options(**quantum["run_options"])
        if quantum["algorithm"] is not None:
            builder.with_algorithm(quantum["algorithm"])
        if quantum["optimizer"] is not None:
            builder.with_optimizer(quantum["optimizer"])
    task = builder.build()
    task.task_id = task_id
    return task


def same_spec(a: bytes, b: bytes) -> bool:
    """Whether two specs describe the same task: what a task submitted again under a client
    key is checked by (with its name, kind and priority, which are kept beside the spec).

    Equal bytes are the same task. Otherwise what is made afresh for every submit is compared
    by what it means: a Qiskit circuit as a circuit (its generated name aside), and a hybrid
    task's algorithm by its ``identity()`` (the workflows' VQE and QAOA: a rebuilt algorithm
    never pickles the same, with new circuit parameters and perhaps a random start) and its
    optimiser by its settings; by their classes where either algorithm cannot say (another
    algorithm, or one read back from a journal written before identities). The rest must be
    equal as stored. A spec that no longer reads back (its function's module is gone) is
    another task.
    """
    if a == b:
        return True
    try:
        spec_a, spec_b = pickle.loads(a), pickle.loads(b)
    except Exception:
        return False
    quantum_a, quantum_b = spec_a[5], spec_b[5]
    if quantum_a is not None and quantum_b is not None:
        if not _same_circuit(quantum_a["circuit"], quantum_b["circuit"]):
            return False
        identities = _identity_of(quantum_a["algorithm"]), _identity_of(quantum_b["algorithm"])
        if None in identities:
            identities = (None, None)  # one cannot say (an older journal's): the classes
        spec_a = (*spec_a[:5], _as_compared(quantum_a, identities[0]))
        spec_b = (*spec_b[:5], _as_compared(quantum_b, identities[1]))
    try:
        return _dumps(spec_a, _PROTOCOL) == _dumps(spec_b, _PROTOCOL)
    except Exception:
        return False


def _same_circuit(a: tuple[str, Any], b: tuple[str, Any]) -> bool:
    kind, data = a
    if kind != b[0]:
        return False
    if kind == "text":
        return bool(data == b[1])
    if kind == "qpy":
        return data == b[1] or bool(_decode_circuit(a) == _decode_circuit(b))
    return _dumps(data, _PROTOCOL) == _dumps(b[1], _PROTOCOL)


def _as_compared(quantum: dict[str, Any], identity: str | None) -> dict[str, Any]:
    """A spec's quantum part without what :func:`same_spec` compares otherwise: a hybrid
    task's algorithm by its ``identity`` and optimiser by its settings, or both by their
    classes where there is no identity."""
    out = dict(quantum, circuit=None)
    if quantum["algorithm"] is not None:
        optimizer = quantum["optimizer"]
        if identity is not None:
            out["algorithm"] = identity
            out["optimizer"] = (
                None if optimizer is None else (_class_name(optimizer), repr(optimizer))
            )
        else:
            out["algorithm"] = _class_name(quantum["algorithm"])
            out["optimizer"] = _class_name(optimizer)
    return out


def _identity_of(algorithm: object) -> str | None:
    """An algorithm's ``identity()`` (the workflows' VQE and QAOA: operator, ansatz, start
    if given, optimiser, shots, seed), or None for one without, or read back from a journal
    written before it could say."""
    identity = getattr(algorithm, "identity", None)
    if not callable(identity) or not hasattr(algorithm, "initial_point_given"):
        return None
    try:
        return str(identity())
    except Exception:
        return None


def _class_name(obj: object) -> str | None:
    return None if obj is None else f"{type(obj).__module__}.{type(obj).__qualname__}"


def encode_result(value: object) -> tuple[int, bytes | None]:
    """A task's value as the journal stores it: (kind, data)."""
    if value is None:
        return RESULT_NONE, None
    if value.__class__ is int and -_INT_LIMIT < value < _INT_LIMIT:
        # The common classical case, in canonical form without the general encoder's walk.
        return RESULT_CANONICAL, str(value).encode()
    if value.__class__ is dict and all(
        k.__class__ is str and v.__class__ is int and -_INT_LIMIT < v < _INT_LIMIT
        for k, v in value.items()
    ):
        # The common quantum case, a histogram of counts: the general encoder gives a mapping
        # of str keys {"$m": {...}} whose ints are themselves; the same text without its walk.
        return RESULT_CANONICAL, b'{"$m":' + _canonical_json(value).encode() + b"}"
    from ..security._encoding import canonical_text
    from ..security._encoding import encode_value as canonical
    from ..security._errors import UnsignableValueError

    try:
        return RESULT_CANONICAL, canonical_text(canonical(value, strict=True)).encode()
    except UnsignableValueError:
        pass
    try:
        return RESULT_PICKLE, _dumps(value, _PROTOCOL)
    except Exception:
        # Neither encodes it: keep what can be said of it, and say so in the stored value.
        return RESULT_CANONICAL, canonical_text(canonical(value, strict=False)).encode()


def decode_result(kind: int, data: bytes | None) -> object:
    """A stored value, read back."""
    if kind == RESULT_NONE or data is None:
        return None
    if kind == RESULT_PICKLE:
        return pickle.loads(data)
    from ..security._encoding import decode_value, parse_json

    return decode_value(parse_json(data.decode()))


def encode_error(error: BaseException | None) -> bytes | None:
    """Why a task failed, as the journal stores it (the exception itself if it pickles)."""
    if error is None:
        return None
    try:
        blob = _dumps(error, _PROTOCOL)
        pickle.loads(blob)  # an exception whose __init__ takes other arguments fails here
        return blob
    except Exception:
        return _dumps(RuntimeError(f"{type(error).__name__}: {error}"), _PROTOCOL)


def decode_error(data: bytes | None) -> BaseException | None:
    """A stored failure, read back."""
    if data is None:
        return None
    err = pickle.loads(data)
    return err if isinstance(err, BaseException) else RuntimeError(repr(err))
