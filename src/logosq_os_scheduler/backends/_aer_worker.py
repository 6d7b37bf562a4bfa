"""Where :class:`QiskitBackend` simulations run: in a worker thread or a worker process.

The same code serves both. In a thread, :class:`QiskitBackend` calls :func:`execute` with a
:class:`SimulatorCache` it owns. In a process, this file runs as a script
(``python _aer_worker.py``, started with :mod:`subprocess`, so the user's ``__main__`` is
never re-imported as ``multiprocessing``'s spawn would) and :func:`main` answers requests
framed on its stdin/stdout. It imports Qiskit only inside functions, and from the package
only the frame layout (``_framing.py``, standard library only, which it loads by its location
when it runs as a script), so the worker starts without the package on its path and the
package imports it without Qiskit.

Two things make a small circuit on a large device model cheap, and both live here:

* **Active-qubit noise.** A device noise model (FakeBrisbane: 127 qubits) is shipped to the
  simulator's C++ core on every run, which alone is slow. The simulator built here carries noise
  only for the physical qubits the batch's circuits touch: a copy of the device ``Target``
  restricted to those qubits (renumbered 0..k-1) is turned into a noise model with Aer's own
  ``NoiseModel.from_backend``, and each circuit is remapped onto the same k qubits. Idle qubits
  carry no operations, so their noise never acted on the result: the counts are the same as with
  the full model (the tests check this with equal seeds).
* **Caching.** Simulators are kept per (source, noise mode, qubit set), newest 32.

Protocol (process mode): each message is a frame (:class:`Framing`) whose header is an 8-byte
big-endian length, and whose body is a pickle. A request is a :class:`Request`; the worker
answers each request, in order, with ``("ok", [outcome, ...], seconds)`` (``seconds``: how long
the simulation took, loading the circuits included) or ``("job-error", kind, message)`` where
kind is ``"transient"`` or ``"permanent"``, and an outcome is ``("counts", dict)`` or
``("error", kind, message)``. Several requests may be sent before the first reply is read.
Exceptions never cross the pipe: not every Qiskit exception survives a pickle round trip.
Circuits travel as QPY, Qiskit's own circuit format, which is written faster than a pickle of
the same circuit, or as a pickle for a circuit QPY cannot hold: a circuit serialised once and
sent many times alone (:func:`dump_circuit`), the rest of a request's circuits together in one
``bundle`` (:func:`dump_circuits`: one QPY file for all of them is written and read in less time
than one per circuit). A circuit whose only angles are those of standard gates may travel as a
:class:`Bound`: the number of a template (the circuit with its angles made parameters, in the
request's ``templates`` as QPY, loaded once per worker) and its angles; the copies of one
template run as one experiment with a parameter bind each.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import inspect
import io
import os
import pickle
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO, Literal


def _framing_by_location() -> Any:
    """The :class:`Framing` class of the package's ``_framing.py``, loaded from its file: run
    as a script, this module has no package to import it from (and must not import one)."""
    import importlib.util

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "_logosq_framing", os.path.join(package, "_framing.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Framing


if TYPE_CHECKING or __package__:
    from .._framing import Framing
else:  # run as a script (``python _aer_worker.py``)
    Framing = _framing_by_location()

__all__ = [
    "Bound",
    "JobFailure",
    "Request",
    "SimulatorCache",
    "classify",
    "compact_circuit",
    "dump_circuit",
    "dump_circuits",
    "execute",
    "is_rust_panic",
    "load_circuit",
    "load_circuits",
    "main",
    "restricted_target",
    "split_frames",
]

Mode = Literal["active", "full", "none", "native"]
Kind = Literal["transient", "permanent"]
Outcome = tuple[Any, ...]
"""``("counts", dict)`` or ``("error", kind, message)``."""

# A frame: an 8-byte big-endian body length, then the body (a pickle).
_FRAMES = Framing(">Q", length_at=0)
# This module's name in the package: requests are pickled under it.
MODULE_NAME = "logosq_os_scheduler.backends._aer_worker"
_SIMULATOR_CACHE_SIZE = 32
# Templates (see Bound) a simulator cache keeps loaded, newest last.
_TEMPLATE_CACHE_SIZE = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Bound:
    """A circuit sent as a template and the values of its angles.

    The template is the circuit with each angle of its gates replaced by a parameter; the
    circuit is the template with ``values`` assigned to its parameters in their order.
    Copies of one template in a request run as one simulator experiment with a parameter
    bind per copy, which Aer prepares once (see :func:`execute`).

    Attributes:
        template: The template's number: a key of the request's ``templates``.
        values: The angles, one per template parameter, in the template's parameter order.
    """

    template: int
    values: tuple[float, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One batch for one simulator.

    Attributes:
        source: Key of the simulation source (a device target or an AerSimulator).
        sources: Sources the receiver may not have yet: key to ``("device", target)`` or
            ``("aer", simulator)``, pickled as bytes for a process.
        mode: ``"active"``/``"full"``/``"none"`` for a device source, ``"native"`` for an
            AerSimulator source.
        qubits: For ``"active"`` and ``"none"``: the physical qubits to keep, sorted; every
            circuit is remapped onto them.
        circuits: The transpiled circuits. For a process, each is bytes (one circuit,
            :func:`dump_circuit`) or an int (its index in ``bundle``); in either, a
            :class:`Bound` (a template and its angles).
        shots: Shots per circuit.
        options: Extra ``run()`` options (``seed_simulator``, ...).
        bundle: For a process: circuits serialised together (:func:`dump_circuits`).
        templates: The templates the request's :class:`Bound` circuits name, by number:
            each a parameterised circuit, as bytes (:func:`dump_circuit`) for a process. A
            receiver that has one loaded already does not load it again.
    """

    source: str
    sources: dict[str, Any]
    mode: Mode
    qubits: tuple[int, ...] | None
    circuits: list[Any]
    shots: int
    options: dict[str, Any]
    bundle: bytes | None = None
    templates: dict[int, Any] = dataclasses.field(default_factory=dict)


class JobFailure(Exception):
    """The whole batch failed; ``kind`` says whether retrying may help."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.message = message


class SimulatorCache:
    """Simulation sources and the simulators built from them.

    Invariant: ``_sources`` only grows (one or two entries per backend); ``_simulators``
    holds at most ``capacity`` entries, least recently used dropped first. Safe to share
    between threads (a backend running several jobs at once in worker threads).
    """

    def __init__(self, capacity: int = _SIMULATOR_CACHE_SIZE) -> None:
        self._lock = threading.Lock()
        self._capacity = capacity
        self._sources: dict[str, tuple[str, Any]] = {}
        self._simulators: collections.OrderedDict[tuple[Any, ...], Any] = collections.OrderedDict()
        self._templates: collections.OrderedDict[int, tuple[Any, list[Any]]] = (
            collections.OrderedDict()
        )

    def has_source(self, key: str) -> bool:
        """Whether the source ``key`` is known."""
        return key in self._sources

    def add_source(self, key: str, source: Any) -> None:
        """Register a source (``("device", target)`` or ``("aer", simulator)``, or bytes)."""
        if isinstance(source, bytes):
            source = pickle.loads(source)
        with self._lock:
            self._sources[key] = source

    def simulator(self, key: str, mode: Mode, qubits: tuple[int, ...] | None) -> Any:
        """The simulator for a source, mode and qubit set, built on first use."""
        cache_key = (key, mode, qubits if mode == "active" else None)
        # Held while building too: builds are rare, and two threads building the same
        # simulator at once would only waste the time of one.
        with self._lock:
            sim = self._simulators.get(cache_key)
            if sim is not None:
                self._simulators.move_to_end(cache_key)
                return sim
            kind, value = self._sources[key]
            sim = _build_simulator(kind, value, mode, qubits)
            self._simulators[cache_key] = sim
            if len(self._simulators) > self._capacity:
                self._simulators.popitem(last=False)
            return sim

    def template(self, number: int, payload: Any) -> tuple[Any, list[Any]]:
        """A template (see :class:`Bound`) and its parameters in order: the one loaded
        already under ``number``, else ``payload`` (bytes or a circuit), kept."""
        with self._lock:
            found = self._templates.get(number)
            if found is not None:
                self._templates.move_to_end(number)
                return found
        circuit = load_circuit(payload) if isinstance(payload, bytes) else payload
        found = (circuit, list(circuit.parameters))
        with self._lock:
            self._templates[number] = found
            if len(self._templates) > _TEMPLATE_CACHE_SIZE:
                self._templates.popitem(last=False)
        return found


class _TargetBackend:
    """Just enough of a BackendV2 for ``NoiseModel.from_backend``: a version and a Target."""

    version = 2

    def __init__(self, target: Any) -> None:
        self.target = target
        self.operation_names = list(target.operation_names)
        self.dt = target.dt


def _build_simulator(kind: str, value: Any, mode: Mode, qubits: tuple[int, ...] | None) -> Any:
    from qiskit_aer import AerSimulator
    from qiskit_aer.noise import NoiseModel

    if kind == "aer":
        return value
    target = value
    if mode == "none":
        return AerSimulator()
    if mode == "full":
        return AerSimulator(noise_model=NoiseModel.from_backend(_TargetBackend(target)))
    if mode == "active":
        assert qubits is not None
        sub = restricted_target(target, qubits)
        return AerSimulator(noise_model=NoiseModel.from_backend(_TargetBackend(sub)))
    raise ValueError(f"unknown noise mode {mode!r}")


def restricted_target(target: Any, qubits: tuple[int, ...]) -> Any:
    """A copy of ``target`` keeping only ``qubits``, renumbered ``0..len(qubits)-1``.

    Every instruction keeps its properties (error, duration) on the qubits kept; qubit
    properties (T1, T2, frequency) and timing constraints come along.
    """
    from qiskit.transpiler import Target

    index = {physical: i for i, physical in enumerate(qubits)}
    qubit_properties = target.qubit_properties
    sub = Target(
        num_qubits=len(qubits),
        dt=target.dt,
        granularity=target.granularity,
        min_length=target.min_length,
        pulse_alignment=target.pulse_alignment,
        acquire_alignment=target.acquire_alignment,
        qubit_properties=[qubit_properties[q] for q in qubits] if qubit_properties else None,
    )
    for name in target.operation_names:
        operation = target.operation_from_name(name)
        if isinstance(operation, type):
            sub.add_instruction(operation, name=name)  # variadic (control flow): no qargs
            continue
        properties = target[name]
        if properties is None or None in properties:
            sub.add_instruction(
                operation, None if properties is None else dict(properties), name=name
            )
            continue
        kept = {
            tuple(index[q] for q in qargs): props
            for qargs, props in properties.items()
            if all(q in index for q in qargs)
        }
        if kept:
            sub.add_instruction(operation, kept, name=name)
    return sub


def compact_circuit(circuit: Any, qubits: tuple[int, ...]) -> Any:
    """``circuit`` with physical qubit ``qubits[i]`` renamed qubit ``i`` (others dropped).

    Classical bits and registers are kept as they are, so the counts keys do not change.
    Every qubit the circuit acts on must be in ``qubits``.
    """
    from qiskit import QuantumCircuit, QuantumRegister

    index = {physical: i for i, physical in enumerate(qubits)}
    out = QuantumCircuit(
        QuantumRegister(len(qubits), "q"),
        name=circuit.name,
        global_phase=circuit.global_phase,
        metadata=circuit.metadata,
    )
    out.add_bits([bit for bit in circuit.clbits])
    for creg in circuit.cregs:
        out.add_register(creg)
    position = {bit: i for i, bit in enumerate(circuit.qubits)}
    new_qubits = out.qubits
    for instruction in circuit.data:
        mapped = [new_qubits[index[position[q]]] for q in instruction.qubits]
        out.append(instruction.operation, mapped, instruction.clbits, copy=False)
    return out


def classify(exc: BaseException) -> Kind:
    """Whether an error from Qiskit or Aer may pass (transient) or never will (permanent).

    Resource and I/O problems may pass; errors Qiskit raises about the circuit or the
    options (``QiskitError`` and its family, ``ValueError``, ``TypeError``) will not, nor
    will a ``RuntimeError``, which is how Aer's C++ core reports an invalid option, an
    unsupported instruction or a circuit too large for memory. Anything else is treated as
    transient: a retry is cheaper than a wrongly lost task, and the scheduler's retry budget
    bounds it.
    """
    if isinstance(exc, MemoryError | OSError | TimeoutError | ConnectionError):
        return "transient"
    if isinstance(exc, ValueError | TypeError | KeyError | IndexError | RuntimeError):
        return "permanent"
    if any(cls.__module__.split(".")[0] in ("qiskit", "qiskit_aer") for cls in type(exc).__mro__):
        return "permanent"
    return "transient"


def _describe(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def execute(cache: SimulatorCache, request: Request) -> list[Outcome]:
    """Run a request's circuits as one simulator call; one outcome per circuit.

    If the whole call fails for a reason that is the circuits' (permanent), each circuit is
    run alone, so that one bad circuit does not fail its neighbours.

    Raises:
        JobFailure: The batch failed as a whole for a passing reason (or a lone circuit's
            failure could not be told apart from the batch's).
    """
    try:
        for key, source in request.sources.items():
            if not cache.has_source(key):
                cache.add_source(key, source)
        circuits = _circuits_of(request)
        try:
            simulator = cache.simulator(request.source, request.mode, request.qubits)
            if request.mode in ("active", "none"):
                assert request.qubits is not None
                circuits = [compact_circuit(c, request.qubits) for c in circuits]
        except Exception as exc:
            raise JobFailure(
                classify(exc), f"could not set up the simulator: {_describe(exc)}"
            ) from exc
        if request.templates:
            return _run_bound(cache, simulator, circuits, request)
        return _run_batch(simulator, circuits, request.shots, request.options)
    except BaseException as exc:
        # Qiskit's Rust core panics with a BaseException that `except Exception` misses;
        # it means this input crashed Qiskit, which retrying will not change.
        if is_rust_panic(exc):
            raise JobFailure("permanent", f"Qiskit crashed (Rust panic: {exc})") from exc
        raise


def _circuits_of(request: Request) -> list[Any]:
    """The request's circuits, loaded from bytes where they came as bytes. One circuit sent
    many times (the same bytes object, which a pickle round trip keeps shared) is loaded
    once and given to the simulator that many times."""
    bundle = load_circuits(request.bundle) if request.bundle is not None else []
    loaded: dict[int, Any] = {}
    circuits: list[Any] = []
    for entry in request.circuits:
        if isinstance(entry, int):
            circuits.append(bundle[entry])
        elif isinstance(entry, bytes):
            circuit = loaded.get(id(entry))
            if circuit is None:
                circuit = loaded[id(entry)] = load_circuit(entry)
            circuits.append(circuit)
        else:
            circuits.append(entry)
    return circuits


def is_rust_panic(exc: BaseException) -> bool:
    """True for a pyo3 ``PanicException`` (recognised by name: each extension has its own)."""
    kind = type(exc)
    return kind.__name__ == "PanicException" and kind.__module__ == "pyo3_runtime"


def _run_bound(
    cache: SimulatorCache, simulator: Any, entries: list[Any], request: Request
) -> list[Outcome]:
    """Run circuits of which some are :class:`Bound`: the copies of each template as one
    experiment with one parameter bind per copy, the others as they are; outcomes in the
    order of ``entries``.

    Aer turns each experiment into its own form in Python, once however many binds it has (with
    the angles sent instead of QPY, this shortens each SPSA step of the VQE benchmark, in a
    process and in a thread; see BENCHMARKS.md). Each bind is the same circuit, with the same
    angles, as its copy. Aer seeds each bind as it would a circuit in its place, so a seeded
    call gives the same counts wherever it runs, though not those of the copies run one by one
    in another order. If the call fails, the copies run bound (:func:`_run_batch`), which finds
    a failing circuit and fails it alone.
    """
    groups: dict[Any, tuple[Any, list[Any], list[int]]] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, Bound):
            group = groups.get(entry.template)
            if group is None:
                circuit, params = cache.template(entry.template, request.templates[entry.template])
                group = groups[entry.template] = (circuit, params, [])
            group[2].append(i)
        else:
            groups[("alone", i)] = (entry, [], [i])
    circuits = [circuit for circuit, _, _ in groups.values()]
    binds = [
        {param: [entries[i].values[k] for i in members] for k, param in enumerate(params)}
        for _, params, members in groups.values()
    ]
    order = [i for _, _, members in groups.values() for i in members]
    try:
        flat = _outcomes_of(run_now(simulator, circuits, request.shots, request.options, binds))
    except Exception:
        flat = None
    if flat is None or len(flat) != len(order):
        bound = []
        for entry in entries:
            if isinstance(entry, Bound):
                circuit, params, _ = groups[entry.template]
                entry = circuit.assign_parameters(dict(zip(params, entry.values, strict=True)))
            bound.append(entry)
        return _run_batch(simulator, bound, request.shots, request.options)
    outcomes: list[Outcome] = [()] * len(entries)
    for i, outcome in zip(order, flat, strict=True):
        outcomes[i] = outcome
    return outcomes


def _run_batch(
    simulator: Any, circuits: list[Any], shots: int, options: dict[str, Any]
) -> list[Outcome]:
    try:
        result = run_now(simulator, circuits, shots, options)
    except Exception as exc:
        kind = classify(exc)
        if kind == "permanent" and len(circuits) > 1:
            outcomes: list[Outcome] = []
            for circuit in circuits:
                try:
                    outcomes.extend(_run_batch(simulator, [circuit], shots, options))
                except JobFailure as failure:
                    outcomes.append(("error", failure.kind, failure.message))
            return outcomes
        raise JobFailure(kind, _describe(exc)) from exc
    outcomes = _outcomes_of(result)
    if len(outcomes) != len(circuits):
        raise JobFailure(
            "transient",
            f"the simulator returned {len(outcomes)} results for {len(circuits)} circuits",
        )
    return outcomes


def _outcomes_of(result: Any) -> list[Outcome]:
    """One outcome per experiment of a simulator's result."""
    outcomes: list[Outcome] = []
    for i, experiment in enumerate(result.results):
        if not experiment.success:
            status = getattr(experiment, "status", "") or "the simulator reported a failure"
            outcomes.append(("error", "permanent", str(status)))
            continue
        try:
            counts = result.get_counts(i)
        except Exception as exc:
            outcomes.append(("error", "permanent", f"no counts: {_describe(exc)}"))
            continue
        outcomes.append(("counts", {str(k): int(v) for k, v in counts.items()}))
    return outcomes


def run_now(
    simulator: Any,
    circuits: list[Any],
    shots: int,
    options: dict[str, Any],
    parameter_binds: list[dict[Any, list[float]]] | None = None,
) -> Any:
    """``simulator.run(circuits, parameter_binds=..., shots=shots, **options).result()``,
    in the calling thread.

    ``AerSimulator.run`` hands every job to a thread of Aer's own and waits for it; here
    the caller is a worker (thread or process) already, and that second hand-off added to
    every job's time on the VQE benchmark. Aer's job function (what its thread would
    call, with the same arguments) is called directly where the simulator has it, with the
    signature this code knows, and its ``run`` is Aer's own; another simulator, or a
    subclass with a ``run`` of its own, is run through ``run``.
    """
    if not _runs_jobs_directly(type(simulator)):
        if parameter_binds is not None:
            options = {**options, "parameter_binds": parameter_binds}
        return simulator.run(circuits, shots=shots, **options).result()
    return simulator._execute_circuits_job(
        list(circuits), parameter_binds, {**options, "shots": shots}
    )


_DIRECT: dict[type, bool] = {}


def _runs_jobs_directly(kind: type) -> bool:
    """Whether :func:`run_now` may call ``kind``'s job function itself (see there)."""
    found = _DIRECT.get(kind)
    if found is None:
        found = False
        job = getattr(kind, "_execute_circuits_job", None)
        if callable(job) and (
            getattr(getattr(kind, "run", None), "__qualname__", "") == "AerBackend.run"
        ):
            with contextlib.suppress(TypeError, ValueError):
                names = list(inspect.signature(job).parameters)[:4]
                found = names == ["self", "circuits", "parameter_binds", "run_options"]
        _DIRECT[kind] = found
    return found


# --- process mode ---------------------------------------------------------------------------

_QPY_MAGIC = b"QISKIT"  # how every QPY file begins (a pickle begins with 0x80)


def dump_circuit(circuit: Any) -> bytes:
    """A circuit as bytes for a worker process: QPY, or a pickle if QPY cannot hold it."""
    return dump_circuits([circuit])


def load_circuit(data: bytes) -> Any:
    """The circuit :func:`dump_circuit` made these bytes of."""
    (circuit,) = load_circuits(data)
    return circuit


def dump_circuits(circuits: list[Any]) -> bytes:
    """Several circuits as one QPY file (one pickle if QPY cannot hold one of them)."""
    from qiskit import qpy

    try:
        buffer = io.BytesIO()
        qpy.dump(circuits, buffer)
        return buffer.getvalue()
    except Exception:
        return pickle.dumps(list(circuits), protocol=pickle.HIGHEST_PROTOCOL)


def load_circuits(data: bytes) -> list[Any]:
    """The circuits :func:`dump_circuits` (or :func:`dump_circuit`) made these bytes of."""
    if data.startswith(_QPY_MAGIC):
        from qiskit import qpy

        return list(qpy.load(io.BytesIO(data)))
    circuits: list[Any] = pickle.loads(data)
    return circuits


class _Unpickler(pickle.Unpickler):
    """Reads this module's classes from this module, whatever it runs as: the worker runs
    this file as ``__main__``, and unpickling a :class:`Request` by its package name would
    import the whole package (a quarter of a second) and need it on the worker's path."""

    def find_class(self, module: str, name: str) -> Any:
        if module == MODULE_NAME:
            return getattr(sys.modules[__name__], name)
        return super().find_class(module, name)


def read_message(stream: BinaryIO) -> Any:
    """Read one framed pickle; None at end of stream."""
    found = _FRAMES.read(stream)
    if found is None:
        return None
    return _Unpickler(io.BytesIO(found[1])).load()


def split_frames(buffer: bytearray) -> list[bytes]:
    """Take the complete framed messages off the front of ``buffer`` (bytes read so far
    from a stream of frames); return their bodies, still pickled."""
    frames, end = _FRAMES.split(buffer)
    del buffer[:end]
    return [bytes(body) for _, body in frames]


def frame(message: Any) -> bytes:
    """One framed pickle, ready to write."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAMES.header.pack(len(body)) + body


def main() -> None:
    """Serve requests on stdin, replying on the original stdout, until stdin closes."""
    # The protocol owns the original stdout; anything else that prints (a library warning)
    # goes to stderr instead of corrupting a frame.
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    cache = SimulatorCache()
    while True:
        request = read_message(requests)
        if request is None:
            return
        started = time.perf_counter()
        try:
            outcomes = execute(cache, request)
            reply: tuple[Any, ...] = ("ok", outcomes, time.perf_counter() - started)
        except JobFailure as failure:
            reply = ("job-error", failure.kind, failure.message)
        except Exception as exc:  # never let one bad request take the worker down
            reply = ("job-error", classify(exc), _describe(exc))
        protocol_out.write(frame(reply))
        protocol_out.flush()


if __name__ == "__main__":
    main()
