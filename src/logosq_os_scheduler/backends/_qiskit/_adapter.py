"""The QiskitBackend adapter: a Qiskit ``BackendV2`` as a scheduler backend.

Holds :class:`QiskitBackend` (preparing through its transpile cache, grouping a job into
simulator calls, running them in a thread or through the worker pool, learning its costs),
:func:`default_backend` and :func:`as_backend`, and the helpers that read a backend's shape
and turn simulator outcomes into job outcomes. It uses :mod:`._transpile`,
:mod:`._templates` and :mod:`._pool`; none of them imports it.

Imports Qiskit only when a :class:`QiskitBackend` is built, so importing it is free.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import os
import pickle
import random
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..._errors import (
    BackendError,
    InvalidConfigError,
    MissingExtraError,
    PermanentBackendError,
    SchedulerError,
    SimulationTooCostlyError,
    TransientBackendError,
)
from ...core._overhead import Figures, RoutingOverhead
from .. import _aer_worker
from .._base import Backend, CircuitJob, Counts, JobOutcome, prepare_all, sole_job
from .._circuits import _is_quantum_circuit, call_guarding_panics, normalize_circuit
from ._cost import (
    CostModel,
    SimulationEstimate,
    about,
    available_memory,
    format_bytes,
    format_seconds,
    profile,
)
from ._cost import estimate as estimate_cost
from ._fidelity import Estimate as FidelityEstimate
from ._fidelity import FidelityEstimator
from ._pool import _WorkerPool
from ._templates import _structure_and_angles, _Templates
from ._transpile import (
    _CACHE_MIN_HITS,
    _CACHE_REST,
    _CACHE_TRIAL,
    _TRANSPILE_CACHE_SIZE,
    Memo,
    PreparedCircuit,
    _fingerprint,
    _physical_qubits,
    _without_idle_qubits,
    overhead_figures,
    two_qubit_figures,
)

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

log = logging.getLogger("logosq_os_scheduler.backends.qiskit")

NoiseMode = Literal["active", "full", "none"]
Isolation = Literal["auto", "thread", "process"]

# Circuits larger than this are transpiled in a thread by aprepare(); smaller ones cost less
# than the hop to a thread.
_THREAD_TRANSPILE_SIZE = 200
# The learned per-shot cost moves this far towards each new observation.
_EWMA_WEIGHT = 0.2
# In process isolation, a job the scheduler runs alone (sole_job) whose preparation is
# expected to take at most this long is prepared and sent from the event loop itself. The
# hand-off to a thread costs a wake-up (slow on a virtual machine), and while a thread
# transpiles, the loop holds the GIL only now and then anyway (with the transpiler in a
# thread, a short sleep on the main thread oversleeps by far, more so at the tail): the
# thread keeps a loop with other work responsive, but saves a loop with none nothing.
_INLINE_PREPARE_SECONDS = 0.005
# The default time budget of one local simulator call (max_simulation_seconds): longer than
# any ordinary job here, short enough that a mistaken one does not hold a slot for an hour.
# The model is within about 20% of measured runs on a quiet machine (docs/routing.md).
DEFAULT_MAX_SIMULATION_SECONDS = 300.0
# A costly simulation allowed to run (allow_costly) runs in up to this many parts of its
# shots, its progress logged after each.
_PROGRESS_PARTS = 10
# The guard clears a call at once when a bound from circuit lengths alone, at _QUICK_SECONDS
# per amplitude update, puts it under _QUICK_CLEAR seconds (and it holds at most 20 qubits,
# a 16 MiB statevector); others are estimated in full (a walk over each circuit).
_QUICK_SECONDS = 1e-8
_QUICK_CLEAR = 0.01
# Run options the guard reads; they are never passed on to the simulator.
_GUARD_OPTIONS = ("allow_costly", "max_simulation_seconds")


class QiskitBackend(Backend):
    """A Qiskit ``BackendV2`` (a simulator or a device model) as a scheduler backend.

    Its shape comes from the backend: ``num_qubits``, the coupling map from its ``Target``
    (None when it has no constraints, like a plain ``AerSimulator``), and as ``error_rate``
    the median two-qubit gate error the Target records.

    How circuits run depends on the backend:

    * Device models (``FakeBackendV2`` subclasses and ``GenericBackendV2``) are simulated
      with Aer from their ``Target``, with ``noise``: ``"active"`` (default) the device
      noise on the qubits the circuits use only; ``"full"`` the whole device noise model (the
      slow reference, same counts); ``"none"`` no noise (ideal, still on the device's gates
      and layout).
    * An ``AerSimulator`` runs as configured (``noise`` does not apply).
    * Any other backend (remote hardware, another provider) is called through its own
      ``run()`` in a thread; ``noise`` does not apply.

    Args:
        backend: The Qiskit backend.
        name: The name to report (default: the backend's own name).
        noise: See above.
        max_concurrent_jobs: Jobs it runs at once (worker processes, in process isolation).
        max_circuits_per_job: Circuits per job (default: the backend's ``max_circuits``, or
            1000).
        optimization_level: The preset pass manager's level, 0 to 3. Default: 2 (Qiskit's
            own default) for a backend with a coupling map (a device or a device's model),
            run with its noise or on the device, where it measured far higher fidelity than
            1 (BENCHMARKS.md, "Expected fidelity"); 1 otherwise: for a simulator without a
            coupling map level 2 costs 11 ms a new circuit against 0.4 ms, and on a
            device's model run without noise (``noise="none"``) it would keep Clifford
            circuits from Aer's stabilizer method.
        seed: Seeds transpilation and, through a seeded sequence, each run's
            ``seed_simulator``: the same calls in the same order give the same counts.
        isolation: Where local simulations run: ``"process"`` (worker processes, started on
            first use; the event loop keeps its speed), ``"thread"`` (no start-up cost, but
            Aer holds the GIL for much of a run), or ``"auto"`` (default: process for local
            simulations, thread for other backends, whose ``run()`` mostly waits).
        simulator_threads: Aer's ``max_parallel_threads`` per run (None: Aer's default, all
            cores). A thread budget for the simulation; not passed to a backend that runs
            through its own ``run()``.
        num_qubits: Qubits to declare, for a backend whose Target fixes no number (such as
            ``BasicSimulator``); by default the backend's own count.
        max_simulation_seconds: The time budget of one local simulator call. Before a call
            starts its cost is estimated (see :mod:`._cost`: qubits, method, noise, shots,
            corrected by what this backend learned from its runs); a call over budget fails
            its circuits at once with :class:`SimulationTooCostlyError`, which names the
            estimate and the ways out. None: no time budget. A task may set its own with
            ``with_run_options(max_simulation_seconds=S)``, or let a costly call run with
            ``with_run_options(allow_costly=True)``: it then runs in parts of its shots,
            its progress logged (logger ``logosq_os_scheduler.backends.qiskit``) and shown
            by :meth:`simulations`.
        max_simulation_memory: The memory budget of one call in bytes (None: half the memory
            available when the call is checked). Held as the time budget is.
        layout: Where :meth:`prepare` places a circuit: ``"preset"`` (default) where the
            preset pass manager's layout passes put it; ``"best"`` on the qubits with the
            highest estimated fidelity, the layout :meth:`estimate_fidelity` assumes
            (mapomatic's flow; for a backend without calibration data, as ``"preset"``).
        idle_errors: Whether :meth:`estimate_fidelity` counts idle errors from T1 and T2
            (None, the default: for a backend that runs itself, such as real hardware, and
            not for a device model simulated here, whose Aer noise model applies no idle
            noise to unscheduled circuits).

    Raises:
        MissingExtraError: If Qiskit is not installed.
        InvalidConfigError: If a setting is out of range, or process isolation is asked for
            a backend that is not simulated locally.
    """

    def __init__(
        self,
        backend: Any,
        *,
        name: str | None = None,
        noise: NoiseMode = "active",
        max_concurrent_jobs: int = 1,
        max_circuits_per_job: int | None = None,
        optimization_level: int | None = None,
        seed: int | None = None,
        isolation: Isolation = "auto",
        simulator_threads: int | None = None,
        num_qubits: int | None = None,
        max_simulation_seconds: float | None = DEFAULT_MAX_SIMULATION_SECONDS,
        max_simulation_memory: int | None = None,
        layout: Literal["preset", "best"] = "preset",
        idle_errors: bool | None = None,
    ) -> None:
        try:
            from qiskit.providers import BackendV2
        except ImportError as exc:
            raise MissingExtraError("qiskit", "QiskitBackend") from exc
        if not isinstance(backend, BackendV2):
            raise InvalidConfigError(
                "backend", f"expected a qiskit BackendV2, got {type(backend).__name__}"
            )
        if noise not in ("active", "full", "none"):
            raise InvalidConfigError("noise", f"must be 'active', 'full' or 'none', got {noise!r}")
        if optimization_level not in (None, 0, 1, 2, 3):
            raise InvalidConfigError(
                "optimization_level", f"must be 0, 1, 2 or 3, got {optimization_level!r}"
            )
        if max_concurrent_jobs < 1:
            raise InvalidConfigError(
                "max_concurrent_jobs", f"must be >= 1, got {max_concurrent_jobs}"
            )
        if max_circuits_per_job is not None and max_circuits_per_job < 1:
            raise InvalidConfigError(
                "max_circuits_per_job", f"must be >= 1, got {max_circuits_per_job}"
            )
        if isolation not in ("auto", "thread", "process"):
            raise InvalidConfigError(
                "isolation", f"must be 'auto', 'thread' or 'process', got {isolation!r}"
            )
        if layout not in ("preset", "best"):
            raise InvalidConfigError("layout", f"must be 'preset' or 'best', got {layout!r}")
        if simulator_threads is not None and simulator_threads < 1:
            raise InvalidConfigError("simulator_threads", f"must be >= 1, got {simulator_threads}")
        if max_simulation_seconds is not None and not (
            isinstance(max_simulation_seconds, int | float) and max_simulation_seconds > 0
        ):
            raise InvalidConfigError(
                "max_simulation_seconds",
                f"must be a number of seconds > 0, or None for no budget, "
                f"got {max_simulation_seconds!r}",
            )
        if max_simulation_memory is not None and not (
            isinstance(max_simulation_memory, int) and max_simulation_memory > 0
        ):
            raise InvalidConfigError(
                "max_simulation_memory",
                f"must be a number of bytes > 0, or None for half the available memory, "
                f"got {max_simulation_memory!r}",
            )

        self._backend = backend
        self._name = name or str(backend.name)
        self._noise: NoiseMode = noise
        self._seed = seed
        self._run_seeds = random.Random(seed)
        self._simulator_threads = simulator_threads
        self._max_concurrent_jobs = max_concurrent_jobs
        self._max_circuits_per_job = (
            max_circuits_per_job or getattr(backend, "max_circuits", None) or 1000
        )
        declared = num_qubits or backend.num_qubits or backend.target.num_qubits
        if not declared:
            raise InvalidConfigError(
                "num_qubits",
                f"{type(backend).__name__} declares no qubit count: register it as "
                f"QiskitBackend({type(backend).__name__}(), num_qubits=N) (from "
                "logosq_os_scheduler.backends), N the most qubits it can run",
            )
        self._num_qubits = int(declared)
        self._coupling = _coupling_of(backend)
        self._error_rate = _median_two_qubit_error(backend.target)

        # How circuits run: "device" (Aer from the Target), "aer" (the given AerSimulator)
        # or "native" (the backend's own run(), in a thread).
        self._execution = _execution_kind(backend)
        if optimization_level is None:
            # Level 2 where noisy qubits are worth avoiding; level 1 keeps an ideal run's
            # Clifford circuits Clifford (level 2 resynthesises blocks: no stabilizer method).
            noisy = self._coupling and not (self._execution == "device" and noise == "none")
            optimization_level = 2 if noisy else 1
        self._optimization_level = optimization_level
        local = self._execution != "native"
        if isolation == "process" and not local:
            raise InvalidConfigError(
                "isolation",
                f"process isolation runs local simulations; {type(backend).__name__} is not "
                "simulated locally (use 'thread' or 'auto')",
            )
        self._isolation: Literal["thread", "process"] = (
            "process" if isolation == "process" or (isolation == "auto" and local) else "thread"
        )
        # A device simulated with noise on the qubits a job uses needs them for every job.
        self._needs_physical = self._execution == "device" and self._noise != "full"
        self._source_key = f"{type(backend).__qualname__}:{id(self)}"
        self._cache = _aer_worker.SimulatorCache()
        # Circuits run on the given AerSimulator go as templates and angles (_Templates).
        self._templates = (
            _Templates(serialise=self._isolation == "process") if self._execution == "aer" else None
        )
        self._pool: _WorkerPool | None = None
        # Guards the pass manager and the transpile cache (aprepare() uses threads).
        self._transpile_lock = threading.Lock()
        # Transpiled circuits by structural fingerprint, newest last, bounded.
        self._transpiled: collections.OrderedDict[
            Hashable, tuple[QuantumCircuit, tuple[int, ...] | None, bytes | None, Memo]
        ] = collections.OrderedDict()
        # The cache's current trial, and how many circuits it still rests for (see
        # _CACHE_TRIAL); guarded by _transpile_lock.
        self._cache_trial_lookups = 0
        self._cache_trial_hits = 0
        self._cache_rest = 0
        self._token = object()
        self._seconds_per_shot = 2e-6  # learned from runs (EWMA); a first guess for Aer
        self._fixed_seconds = 0.002
        # Seconds the pass manager takes per circuit (EWMA), None until it first ran.
        self._transpile_seconds: float | None = None
        # The guard on costly simulations: budgets, what the runs taught the cost model, and
        # the costly calls running now (allowed by allow_costly), by id; guarded by the lock.
        self._max_simulation_seconds = (
            None if max_simulation_seconds is None else float(max_simulation_seconds)
        )
        self._max_simulation_memory = max_simulation_memory
        self._costs = CostModel()
        self._progress_lock = threading.Lock()
        self._progress: dict[int, SimulationProgress] = {}
        self._layout = layout
        self._idle_errors = self._execution == "native" if idle_errors is None else idle_errors
        # Built on the first estimate_fidelity() (it reads the whole Target), and dropped
        # again (_calibrated False) when the Target has no errors to estimate from.
        self._estimator: FidelityEstimator | None = None
        self._calibrated = True

        from qiskit.transpiler import generate_preset_pass_manager

        # Built once: a plain transpile() pays for building it on every call.
        self._pass_manager = generate_preset_pass_manager(
            optimization_level=optimization_level, backend=backend, seed_transpiler=seed
        )
        # The same passes for the same gates with no coupling map, built on first need: the
        # logical circuit routing overhead is measured against (routing_overhead()).
        self._logical_pass_manager: Any = None
        self._logical_lock = threading.Lock()

    # --- shape, capacity, quality -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The backend's name."""
        return self._name

    @property
    def num_qubits(self) -> int:
        """Qubits it has."""
        return self._num_qubits

    @property
    def coupling_map(self) -> frozenset[tuple[int, int]] | None:
        """Coupled physical qubit pairs (both directions), or None when unconstrained."""
        return self._coupling

    @property
    def max_concurrent_jobs(self) -> int:
        """Jobs it runs at once."""
        return self._max_concurrent_jobs

    @property
    def max_circuits_per_job(self) -> int:
        """Circuits one job may carry."""
        return self._max_circuits_per_job

    @property
    def error_rate(self) -> float | None:
        """Median two-qubit gate error from the Target, or None if it records none."""
        return self._error_rate

    @property
    def backend(self) -> Any:
        """The wrapped Qiskit backend."""
        return self._backend

    @property
    def execution(self) -> str:
        """How it runs circuits: ``"aer-active-noise"``, ``"aer-full-noise"``,
        ``"aer-ideal"`` (device models), ``"aer"`` (an AerSimulator) or ``"native"``."""
        if self._execution == "device":
            return {"active": "aer-active-noise", "full": "aer-full-noise", "none": "aer-ideal"}[
                self._noise
            ]
        return self._execution

    @property
    def isolation(self) -> Literal["thread", "process"]:
        """Where simulations run."""
        return self._isolation

    def estimate_job_seconds(self, circuits: int, shots: int) -> float:
        """A fixed cost plus a per-shot cost learned from this backend's own runs."""
        return self._fixed_seconds + self._seconds_per_shot * shots

    def estimate_fidelity(self, circuit: Any) -> float | None:
        """The circuit's expected success probability on this device's best qubits, from its
        Target's gate and readout errors (mapomatic's method; docs/fidelity.md), or None
        for a backend without calibration data (a plain ``AerSimulator``).

        The circuit is routed once per structure and device family (devices sharing a
        coupling graph and basis share it); the estimate is kept per structure.
        """
        estimate = self.fidelity_estimate(circuit)
        return None if estimate is None else estimate.fidelity

    def fidelity_estimate(self, circuit: Any) -> FidelityEstimate | None:
        """:meth:`estimate_fidelity` with the layout it found (physical qubits of the routed
        circuit) and how many layouts it scored."""
        if not self._calibrated:
            return None
        estimator = self._estimator
        if estimator is None:
            estimator = FidelityEstimator(self._backend, self._num_qubits, idle=self._idle_errors)
            if not estimator.available:
                self._calibrated = False
                return None
            self._estimator = estimator
        return estimator.estimate(normalize_circuit(circuit))

    def best_layout_circuit(self, circuit: Any) -> Any:
        """The circuit transpiled as :meth:`estimate_fidelity` assumes it runs: on the
        layout with the highest estimated fidelity (mapomatic's flow: route once, then
        place on the best matching qubits). None for a backend without calibration data.

        :meth:`prepare` places circuits so with ``layout="best"``; by default it keeps the
        preset pass manager's layout, which may be far worse (BENCHMARKS.md, "Expected
        fidelity").
        """
        if self.fidelity_estimate(circuit) is None:
            return None
        assert self._estimator is not None
        return self._estimator.laid_out(normalize_circuit(circuit))

    def properties(self) -> Mapping[str, Any]:
        """Facts about the backend worth recording (and signing) with a result."""
        import qiskit

        backend = self._backend
        target = backend.target
        try:
            from qiskit_aer import __version__ as aer_version
        except ImportError:
            aer_version = None
        return {
            **super().properties(),
            "backend_name": str(backend.name),
            "backend_class": f"{type(backend).__module__}.{type(backend).__qualname__}",
            "backend_version": str(getattr(backend, "backend_version", "") or ""),
            "basis_gates": sorted(str(n) for n in target.operation_names),
            "coupling_edges": len(self._coupling) // 2 if self._coupling else 0,
            "error_rate": self._error_rate,
            "execution": self.execution,
            "noise": self._noise if self._execution == "device" else None,
            "optimization_level": self._optimization_level,
            "seed": self._seed,
            "qiskit_version": qiskit.__version__,
            "qiskit_aer_version": aer_version,
        }

    # --- preparing --------------------------------------------------------------------------

    def prepare(self, circuit: Any) -> PreparedCircuit:
        """Transpile a circuit for this backend (kept pass manager, no new one per call).

        Accepts a ``QuantumCircuit``, OpenQASM text, or a :class:`PreparedCircuit` (returned
        as is if it was prepared here, prepared again from its source otherwise). Idle qubits
        are dropped first when the circuit declares more qubits than the backend has.

        Raises:
            InvalidTaskError: If OpenQASM text is malformed.
            PermanentBackendError: If the circuit is not a Qiskit circuit, measures nothing,
                or cannot be transpiled for this backend (too wide, unsupported operation).
        """
        found = self._lookup(circuit)
        if isinstance(found, PreparedCircuit):
            return found
        qc, source, fingerprint = found
        try:
            transpiled = self._transpile(qc, 1)
        except Exception as exc:
            raise PermanentBackendError(
                self._name, f"cannot transpile the circuit for this backend: {exc}"
            ) from exc
        return self._keep(transpiled, source, fingerprint)

    def prepare_many(self, circuits: Sequence[Any]) -> list[Any]:
        """:meth:`prepare` for a job's circuits: those not seen before are transpiled in one
        pass-manager call, which costs less than one call each (a circuit that fails it is
        then transpiled alone, so that it fails alone). Equal circuits in the job (by the
        transpile cache's fingerprint) are transpiled once."""
        out: list[Any] = []
        todo: list[tuple[int, Any, Any, Hashable | None]] = []
        # Later copies of a circuit in todo: its index there -> (index in out, source).
        copies: dict[int, list[tuple[int, Any]]] = {}
        first: dict[Hashable, int] = {}
        for i, circuit in enumerate(circuits):
            try:
                found = self._lookup(circuit)
            except Exception as exc:
                out.append(exc)
                continue
            out.append(found)
            if not isinstance(found, PreparedCircuit):
                fingerprint = found[2]
                if fingerprint is not None:
                    k = first.setdefault(fingerprint, len(todo))
                    if k != len(todo):
                        copies.setdefault(k, []).append((i, found[1]))
                        continue
                todo.append((i, *found))
        if len(todo) == 1:
            i, _, source, _ = todo[0]
            out[i] = self._prepare_one(source)
        elif todo:
            qcs = [qc for _, qc, _, _ in todo]
            try:
                transpiled = self._transpile(qcs, len(qcs))
            except Exception:
                for i, _, source, _ in todo:
                    out[i] = self._prepare_one(source)
            else:
                for (i, _, source, fingerprint), t in zip(todo, transpiled, strict=True):
                    out[i] = self._keep(t, source, fingerprint)
        for k, later in copies.items():
            done = out[todo[k][0]]
            for i, source in later:
                out[i] = (
                    dataclasses.replace(done, source=source)
                    if isinstance(done, PreparedCircuit)
                    else self._prepare_one(source)
                )
        return out

    def _prepare_one(self, circuit: Any) -> Any:
        try:
            return self.prepare(circuit)
        except Exception as exc:
            return exc

    def _lookup(self, circuit: Any) -> PreparedCircuit | tuple[Any, Any, Hashable | None]:
        """The circuit prepared already (a PreparedCircuit of this backend, or one in the
        transpile cache), or what transpiling it needs: the circuit to transpile, its source
        and its fingerprint. Raises what :meth:`prepare` raises for a circuit it refuses."""
        if isinstance(circuit, PreparedCircuit):
            if circuit.backend_token is self._token:
                return circuit
            circuit = circuit.source
        qc = normalize_circuit(circuit)
        if not _is_quantum_circuit(qc):
            raise PermanentBackendError(
                self._name,
                f"runs Qiskit circuits or OpenQASM text, not a {type(qc).__name__} "
                "(a CircuitSpec has no gates to run)",
            )
        if qc.num_clbits == 0:  # type: ignore[attr-defined]
            raise PermanentBackendError(
                self._name,
                "the circuit measures nothing, so it has no counts: add measurements "
                "(for example qc.measure_all())",
            )
        source = qc
        with self._transpile_lock:
            resting = self._cache_rest > 0
            if resting:
                self._cache_rest -= 1
        fingerprint = None if resting else _fingerprint(qc)
        cached = None
        if fingerprint is not None:
            with self._transpile_lock:
                cached = self._transpiled.get(fingerprint)
                if cached is not None:
                    self._transpiled.move_to_end(fingerprint)
                self._judge_cache(hit=cached is not None)
        if cached is not None:
            transpiled, physical, payload, memo = cached
            return PreparedCircuit(transpiled, source, physical, self._token, payload, memo)
        if qc.num_qubits > self._num_qubits:
            qc = _without_idle_qubits(qc)
        return qc, source, fingerprint

    def _transpile(self, circuits: Any, count: int) -> Any:
        """The kept pass manager on ``circuits`` (one circuit, or a list of ``count``), under
        ``_transpile_lock``; its time per circuit is folded into the estimate (EWMA) that
        decides whether a job is prepared on the event loop (see _INLINE_PREPARE_SECONDS)."""
        with self._transpile_lock:
            started = time.perf_counter()
            run = self._on_best_layouts if self._layout == "best" else self._pass_manager.run
            transpiled = call_guarding_panics(
                lambda: run(circuits, num_processes=1),
                what="Qiskit transpiler",
            )
            observed = (time.perf_counter() - started) / count
            known = self._transpile_seconds
            self._transpile_seconds = (
                observed if known is None else known + _EWMA_WEIGHT * (observed - known)
            )
        return transpiled

    def _on_best_layouts(self, circuits: Any, num_processes: int = 1) -> Any:
        """The pass manager's ``run`` for ``layout="best"``: each circuit on the layout with
        the highest estimated fidelity, or by the pass manager where there is none."""

        def place(qc: Any) -> Any:
            placed = self.best_layout_circuit(qc)
            return placed if placed is not None else self._pass_manager.run(qc)

        if isinstance(circuits, list):
            return [place(qc) for qc in circuits]
        return place(circuits)

    def _judge_cache(self, *, hit: bool) -> None:
        """Count a lookup in the current trial; rest the cache after a trial with too few
        hits. Called with ``_transpile_lock`` held."""
        self._cache_trial_lookups += 1
        self._cache_trial_hits += hit
        if self._cache_trial_lookups >= _CACHE_TRIAL:
            if self._cache_trial_hits < _CACHE_MIN_HITS:
                self._cache_rest = _CACHE_REST
            self._cache_trial_lookups = self._cache_trial_hits = 0

    def _keep(self, transpiled: Any, source: Any, fingerprint: Hashable | None) -> PreparedCircuit:
        """Wrap a freshly transpiled circuit, and remember it under its fingerprint."""
        # Only a device simulated on the qubits a job uses needs them; walking every
        # transpiled circuit for them is not free, so others find them lazily.
        physical = _physical_qubits(transpiled) if self._needs_physical else None
        payload = None
        if (
            self._isolation == "process"
            and fingerprint is not None
            and (self._templates is None or _structure_and_angles(transpiled) is None)
        ):
            # A circuit the cache keeps is serialised once, however often it runs; one it
            # does not keep travels in its job's bundle (QiskitBackend._request), as does
            # one that can go as a template (its first sighting only: it then goes as its
            # template's number and its angles), for which a QPY dump would be wasted.
            payload = _aer_worker.dump_circuit(transpiled)
        memo = Memo()
        if fingerprint is not None:
            with self._transpile_lock:
                self._transpiled[fingerprint] = (transpiled, physical, payload, memo)
                if len(self._transpiled) > _TRANSPILE_CACHE_SIZE:
                    self._transpiled.popitem(last=False)
        return PreparedCircuit(transpiled, source, physical, self._token, payload, memo)

    def routing_overhead(self, prepared: Any) -> RoutingOverhead | None:
        """What routing onto this backend's coupling map added to a prepared circuit:
        two-qubit gates and two-qubit depth as transpiled here, against the same circuit
        transpiled for the same gates with no coupling map.

        Measured on first read (one more transpilation, without layout or routing), once per
        circuit structure: equal circuits share it through the transpile cache. A backend
        without a coupling map routes nothing: its overhead is zero.

        Returns:
            The overhead, or None for what this backend did not prepare.
        """
        if not isinstance(prepared, PreparedCircuit) or prepared.backend_token is not self._token:
            return None
        memo = prepared.memo
        found = memo.overhead
        if found is None:
            circuit, source = prepared.circuit, prepared.source
            if self._coupling is None:

                def measure() -> Figures:
                    gates, depth = two_qubit_figures(circuit)
                    return (gates, gates, depth, depth)

            else:

                def measure() -> Figures:
                    try:
                        logical = self._logical(source)
                    except Exception:
                        # Transpiled once for the device, it should transpile without a
                        # coupling map too; if not, the circuit as written is the reference.
                        logical = source
                    return overhead_figures(circuit, logical)

            found = memo.overhead = RoutingOverhead(measure=measure)
        return found

    def _logical(self, source: Any) -> Any:
        """``source`` transpiled for this backend's gates with no coupling map."""
        qc = _without_idle_qubits(source) if source.num_qubits > self._num_qubits else source
        with self._logical_lock:
            if self._logical_pass_manager is None:
                from qiskit.transpiler import generate_preset_pass_manager

                self._logical_pass_manager = generate_preset_pass_manager(
                    optimization_level=self._optimization_level,
                    basis_gates=list(self._backend.target.operation_names),
                    seed_transpiler=self._seed,
                )
            return call_guarding_panics(
                lambda: self._logical_pass_manager.run(qc, num_processes=1),
                what="Qiskit transpiler",
            )

    async def aprepare(self, circuit: Any) -> PreparedCircuit:
        """:meth:`prepare`, in a worker thread for large circuits (their transpilation may
        take long); small ones are prepared inline, which is cheaper."""
        size = getattr(circuit, "size", None)
        if callable(size) and size() > _THREAD_TRANSPILE_SIZE:
            return await asyncio.to_thread(self.prepare, circuit)
        return self.prepare(circuit)

    # --- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker processes now rather than on the first job (process isolation)."""
        if self._isolation == "process":
            await self._workers().start()

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        """Run a job: one simulator call per group of circuits with equal shots and options.

        Circuits that are not yet :class:`PreparedCircuit` for this backend are prepared
        first; one that cannot be prepared fails alone. When a job needs several simulator
        calls and one of them fails, that call's circuits get its error as their outcome.

        Raises:
            TransientBackendError: The simulation failed as a whole for a passing reason
                (a worker process died, memory ran short).
            PermanentBackendError: It failed as a whole for a reason retrying cannot fix.
        """
        jobs = self._checked(jobs)
        entries: list[Any] = []
        for job in jobs:
            try:
                entries.append(self.prepare(job.circuit))
            except SchedulerError as exc:  # this circuit alone cannot run
                entries.append(exc)
        _, outcomes = await self._execute(jobs, entries, prepare=False)
        return outcomes

    async def prepare_and_run(
        self, jobs: Sequence[CircuitJob]
    ) -> tuple[list[Any], list[JobOutcome]]:
        """:meth:`prepare_many` and :meth:`run` in one hand-off: the job's circuits are
        transpiled in the thread that then simulates them (or, in process isolation, that
        then sends them to the worker process), so a job costs the event loop one thread
        hand-off, not two. Returns and raises what :meth:`Backend.prepare_and_run` does."""
        jobs = self._checked(jobs)
        return await self._execute(jobs, [job.circuit for job in jobs], prepare=True)

    def _checked(self, jobs: Sequence[CircuitJob]) -> list[CircuitJob]:
        jobs = list(jobs)
        if len(jobs) > self._max_circuits_per_job:
            raise PermanentBackendError(
                self._name,
                f"a job of {len(jobs)} circuits exceeds max_circuits_per_job="
                f"{self._max_circuits_per_job}",
            )
        return jobs

    async def _execute(
        self, jobs: list[CircuitJob], entries: list[Any], *, prepare: bool
    ) -> tuple[list[Any], list[JobOutcome]]:
        """Run ``jobs`` in one hand-off to a worker thread: their circuits (``entries``,
        prepared, or as submitted if ``prepare``; an exception for one that cannot run),
        one simulator call per group of equal shots and options. Returns the prepared
        circuits (None where preparing failed) and one outcome per job."""
        outcomes: list[JobOutcome | None] = [None] * len(jobs)
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, job in enumerate(jobs):
            if isinstance(entries[i], BaseException):
                outcomes[i] = entries[i]
                entries[i] = None
            elif job.shots < 1:
                outcomes[i] = PermanentBackendError(
                    self._name, f"shots must be >= 1, got {job.shots}"
                )
                if prepare:
                    entries[i] = None  # never prepared
            else:
                groups.setdefault(_group_key(job, i), []).append(i)
        # Options and seeds are settled here, on the loop, in the order jobs arrive, so that
        # a seeded backend draws the same seeds whatever the threads do.
        calls = [
            _Call(members, jobs[members[0]].shots, *self._run_options(jobs[members[0]]))
            for members in groups.values()
        ]
        if not calls:
            return entries, _all_set(outcomes)

        def ready() -> list[tuple[list[int], _Call]]:
            """In the worker thread: prepare if asked; then the calls to make, each with
            the jobs whose circuits are still to run."""
            if prepare:
                todo = [i for call in calls for i in call.members]
                prepared, errors = prepare_all(self, [entries[i] for i in todo])
                for k, i in enumerate(todo):
                    entries[i] = prepared[k]
                    if k in errors:
                        outcomes[i] = errors[k]
            left = []
            for call in calls:
                members = [i for i in call.members if outcomes[i] is None]
                if not members:
                    continue
                refusal = self._guard(call, [entries[i] for i in members])
                if isinstance(refusal, SimulationTooCostlyError) and len(members) > 1:
                    left.extend(self._apart(call, members, entries, outcomes))
                    continue
                if refusal is not None:
                    for i in members:
                        outcomes[i] = refusal
                    continue
                left.append((members, call))
            return left

        def absorb(members: list[int], result: list[_aer_worker.Outcome] | BackendError) -> None:
            """Record a call's outcomes; a failed call fails its circuits, or the whole
            job (raised) when it was the whole job."""
            if isinstance(result, BackendError):
                if len(members) == len(jobs):
                    raise result
                for i in members:  # one simulator call of several failed: others stand
                    outcomes[i] = result
                return
            for i, item in zip(members, result, strict=True):
                outcomes[i] = self._outcome(item)

        if self._isolation == "process":
            sent: list[tuple[list[int], _Call]] = []

            costly: list[tuple[list[int], _Call]] = []

            def requests() -> list[_aer_worker.Request]:
                """In the helper thread: the requests for the worker process (a costly
                call allowed to run goes later, in parts)."""
                for members, call in ready():
                    (costly if call.costly is not None else sent).append((members, call))
                return [
                    self._request([entries[i] for i in members], call.shots, call.options)
                    for members, call in sent
                ]

            # Prepared on the loop when the scheduler has nothing else to run and the
            # preparation is known to be short (see _INLINE_PREPARE_SECONDS).
            per_circuit = self._transpile_seconds
            inline = (
                prepare
                and sole_job.get()
                and per_circuit is not None
                and per_circuit * sum(len(call.members) for call in calls)
                <= _INLINE_PREPARE_SECONDS
            )
            replies = await self._workers().exchange(
                requests, self._source_payload, inline_for=self._source_key if inline else None
            )
            for (members, call), reply in zip(sent, replies, strict=True):
                if reply[0] == "ok":
                    self._learn(reply[2], call.shots * len(members))
                    self._learn_cost(call, reply[2])
                    absorb(members, reply[1])
                else:
                    absorb(members, _job_error(self._name, reply[1], reply[2]))
            for members, call in costly:

                async def part(shots: int, options: dict[str, Any], members: list[int]) -> Any:
                    request = self._request([entries[i] for i in members], shots, options)
                    replies = await self._workers().exchange(
                        lambda: [request], self._source_payload
                    )
                    reply = replies[0]
                    if reply[0] != "ok":
                        raise _job_error(self._name, reply[1], reply[2])
                    return reply[1]

                try:
                    absorb(members, await self._run_in_parts(call, members, jobs, part))
                except BackendError as exc:
                    absorb(members, exc)
            return entries, _all_set(outcomes)

        later: list[tuple[list[int], _Call]] = []

        def work() -> list[tuple[float, _Call, int]]:
            """In the worker thread: prepare, then one simulator call per group (a costly
            call allowed to run goes later, in parts)."""
            timings: list[tuple[float, _Call, int]] = []
            for members, call in ready():
                if call.costly is not None:
                    later.append((members, call))
                    continue
                started = time.perf_counter()
                try:
                    raw = self._simulate([entries[i] for i in members], call.shots, call.options)
                except BackendError as exc:
                    absorb(members, exc)
                    continue
                timings.append((time.perf_counter() - started, call, len(members)))
                absorb(members, raw)
            return timings

        if self._execution != "native" and not self._cache.has_source(self._source_key):
            self._cache.add_source(self._source_key, self._source())
        for seconds, call, count in await asyncio.to_thread(work):
            self._learn(seconds, call.shots * count)
            self._learn_cost(call, seconds)
        for members, call in later:

            async def part(shots: int, options: dict[str, Any], members: list[int]) -> Any:
                prepared = [entries[i] for i in members]
                return await asyncio.to_thread(self._simulate, prepared, shots, options)

            try:
                absorb(members, await self._run_in_parts(call, members, jobs, part))
            except BackendError as exc:
                absorb(members, exc)
        return entries, _all_set(outcomes)

    # --- the guard on costly simulations ----------------------------------------------------

    def estimate_simulation(
        self, circuits: Sequence[Any], shots: int, options: Mapping[str, Any] | None = None
    ) -> SimulationEstimate:
        """What simulating ``circuits`` with ``shots`` shots each in one call would cost here.

        What the guard on costly simulations holds against ``max_simulation_seconds`` and
        ``max_simulation_memory`` before a call starts (see :mod:`._cost` for the model).
        The circuits are prepared (transpiled) first, as a run would.

        Args:
            circuits: Circuits as :meth:`prepare` takes them.
            shots: Shots per circuit.
            options: Run options (``method``, ``max_parallel_threads``, ...).

        Returns:
            The estimate, corrected by what this backend learned from its runs.

        Raises:
            PermanentBackendError: A circuit cannot be prepared, or this backend runs
                circuits through their own ``run()`` (nothing is simulated here to estimate).
        """
        if self._execution == "native":
            raise PermanentBackendError(
                self._name, "runs circuits through the backend's own run(): nothing to estimate"
            )
        prepared = [self.prepare(c) for c in circuits]
        return self._estimate(prepared, shots, dict(options or {}))

    def simulations(self) -> tuple[SimulationProgress, ...]:
        """The costly simulations running now (let through by ``allow_costly``), with their
        estimate and progress; a snapshot."""
        now = time.monotonic()
        with self._progress_lock:
            running = list(self._progress.values())
        return tuple(dataclasses.replace(p, elapsed_seconds=now - p.started_at) for p in running)

    def _simulation_settings(self, options: Mapping[str, Any]) -> tuple[str, bool, int, int]:
        """(method, noisy, threads, qubits of a whole noise model shipped per call)."""
        method = options.get("method")
        noisy = self._noise != "none"
        if self._execution == "aer":
            configured = self._backend.options
            if method is None:
                method = getattr(configured, "method", None)
            noisy = getattr(configured, "noise_model", None) is not None
        threads = (
            options.get("max_parallel_threads") or self._simulator_threads or os.cpu_count() or 1
        )
        whole = self._num_qubits if self._execution == "device" and self._noise == "full" else 0
        return (str(method or "automatic"), noisy, int(threads), whole)

    def _estimate(
        self,
        prepared: Sequence[PreparedCircuit],
        shots: int,
        options: Mapping[str, Any],
        *,
        corrected: bool = True,
        **changes: Any,
    ) -> SimulationEstimate:
        """The cost of one call of ``prepared``; ``changes`` override the settings
        (``method``, ``noisy``, ``noise_qubits``) to price a way out."""
        method, noisy, threads, whole = self._simulation_settings(options)
        method = changes.get("method", method)
        noisy = changes.get("noisy", noisy)
        whole = changes.get("noise_qubits", whole)
        profiles = [self._profile(p) for p in prepared]
        modelled = estimate_cost(
            profiles, shots=shots, method=method, noisy=noisy, threads=threads, noise_qubits=whole
        )
        correction = self._costs.correction(modelled.method, noisy) if corrected else None
        if correction is None:
            return modelled
        return estimate_cost(
            profiles,
            shots=shots,
            method=method,
            noisy=noisy,
            threads=threads,
            noise_qubits=whole,
            correction=correction,
        )

    @staticmethod
    def _profile(prepared: PreparedCircuit) -> Any:
        memo = prepared.memo
        found = memo.profile
        if found is None:
            found = memo.profile = profile(prepared.circuit)
        return found

    @staticmethod
    def _quick_bound(
        prepared: Sequence[PreparedCircuit], shots: int, noisy: bool
    ) -> tuple[float, int]:
        """A cheap upper bound on a statevector call's seconds on one core, from each
        circuit's length and a bound on its qubits, without walking it; and that bound on
        the qubits of the widest."""
        total = 0.0
        widest = 0
        for p in prepared:
            known = p.known_physical_qubits
            n = len(known) if known is not None else p.circuit.num_qubits
            if n > 40:
                return math.inf, n
            widest = max(widest, n)
            total += _QUICK_SECONDS * len(p.circuit.data) * 2.0**n * (shots if noisy else 1)
        return total, widest

    def _guard(self, call: _Call, prepared: list[Any]) -> PermanentBackendError | None:
        """Hold a call to its budgets before it runs: None to run it (``call.costly`` set
        if it is over budget and allowed to run), or the error that refuses it
        (:class:`SimulationTooCostlyError`, or a bad guard option). Sets ``call.modelled``,
        the model's estimate, to learn from once it ran."""
        if call.bad_option is not None:
            return call.bad_option
        if self._execution == "native":
            return None
        budget = call.max_seconds if call.max_seconds is not None else self._max_simulation_seconds
        method, noisy, threads, whole = self._simulation_settings(call.options)
        if method in ("automatic", "statevector") and not whole:
            # Most calls are small: a bound from lengths alone clears them without a walk
            # (below _QUICK_CLEAR seconds there is nothing to guard, nor to learn from).
            bound, widest = self._quick_bound(prepared, call.shots, noisy)
            clear = _QUICK_CLEAR if budget is None else min(_QUICK_CLEAR, budget)
            if bound / threads < clear and widest <= 20:
                return None
        call.modelled = self._estimate(prepared, call.shots, call.options, corrected=False)
        found = self._estimate(prepared, call.shots, call.options)
        memory_budget = self._max_simulation_memory
        if memory_budget is None:
            available = available_memory()
            memory_budget = None if available is None else available // 2
        over = []
        if budget is not None and found.seconds > budget:
            over.append(f"the time budget of {format_seconds(budget)} (max_simulation_seconds)")
        if memory_budget is not None and found.memory_bytes > memory_budget:
            over.append(
                f"the memory budget of {format_bytes(memory_budget)} (max_simulation_memory"
                + (", half the memory available)" if self._max_simulation_memory is None else ")")
            )
        if not over:
            return None
        if call.allow_costly:
            call.costly = found
            return None
        return SimulationTooCostlyError(
            self._name,
            seconds=found.seconds,
            memory_bytes=found.memory_bytes,
            budget_seconds=budget,
            budget_bytes=memory_budget,
            estimate=found.describe(),
            over=" and ".join(over),
            ways_out=self._ways_out(prepared, call, found, budget, memory_budget),
        )

    def _apart(
        self,
        call: _Call,
        members: list[int],
        entries: list[Any],
        outcomes: list[JobOutcome | None],
    ) -> list[tuple[list[int], _Call]]:
        """A call of several circuits over its budget: each circuit is held to the budget
        alone, as if its task had come by itself. One over it is refused with its own
        estimate (and the scheduler may route it elsewhere); each of the others runs in a
        call of its own (a seeded call seeds each from its seed and the circuit's place)."""
        seed = call.options.get("seed_simulator")
        calls: list[tuple[list[int], _Call]] = []
        for k, i in enumerate(members):
            options = dict(call.options)
            if isinstance(seed, int):
                options["seed_simulator"] = (seed + k) % 2**31
            alone = dataclasses.replace(call, members=[i], options=options, modelled=None)
            refusal = self._guard(alone, [entries[i]])
            if refusal is not None:
                outcomes[i] = refusal
            else:
                calls.append(([i], alone))
        return calls

    def _ways_out(
        self,
        prepared: list[Any],
        call: _Call,
        found: SimulationEstimate,
        budget: float | None,
        memory_budget: int | None,
    ) -> tuple[str, ...]:
        """What would let a refused call run, each priced where it can be."""

        def fits(e: SimulationEstimate) -> bool:
            return (budget is None or e.seconds <= budget) and (
                memory_budget is None or e.memory_bytes <= memory_budget
            )

        ways: list[str] = []
        time_over = budget is not None and found.seconds > budget
        memory_over = memory_budget is not None and found.memory_bytes > memory_budget
        if time_over and not memory_over and found.per_shot_seconds > 0 and budget is not None:
            fixed = found.seconds - found.per_shot_seconds * found.shots
            fit = int((budget - fixed) // found.per_shot_seconds)
            if 1 <= fit < found.shots:
                ways.append(f"fewer shots (about {fit} fit the budget)")
        if found.method != "matrix_product_state":
            mps = self._estimate(prepared, call.shots, call.options, method="matrix_product_state")
            if fits(mps):
                ways.append(
                    "the matrix_product_state method, "
                    "with_run_options(method='matrix_product_state') "
                    f"({about(mps.seconds)}, {format_bytes(mps.memory_bytes)})"
                )
        if self._execution == "device" and self._noise == "full":
            cut = self._estimate(prepared, call.shots, call.options, noise_qubits=0)
            ways.append(
                "the device noise cut to the circuit's qubits, QiskitBackend(..., "
                f"noise='active') (same counts; {about(cut.seconds)}"
                + (")" if fits(cut) else ", still over: with another way)")
            )
        if self._execution == "device" and self._noise != "none":
            ideal = self._estimate(prepared, call.shots, call.options, noisy=False, noise_qubits=0)
            if fits(ideal):
                ways.append(f"no noise, QiskitBackend(..., noise='none') ({about(ideal.seconds)})")
        if time_over:
            ways.append(
                f"a larger budget: with_run_options(max_simulation_seconds="
                f"{math.ceil(found.seconds * 1.5)}) for this task, or "
                "QiskitBackend(..., max_simulation_seconds=...)"
            )
        if memory_over:
            ways.append("a larger memory budget: QiskitBackend(..., max_simulation_memory=...)")
        ways.append("with_run_options(allow_costly=True) to run it anyway, its progress logged")
        return tuple(ways)

    def _learn_cost(self, call: _Call, seconds: float) -> None:
        if call.modelled is not None:
            self._costs.learn(call.modelled, seconds)

    async def _run_in_parts(
        self,
        call: _Call,
        members: list[int],
        jobs: Sequence[CircuitJob],
        part: Callable[[int, dict[str, Any], list[int]], Awaitable[list[_aer_worker.Outcome]]],
    ) -> list[_aer_worker.Outcome]:
        """Run a costly call let through by ``allow_costly`` in up to
        :data:`_PROGRESS_PARTS` parts of its shots, its progress logged and shown by
        :meth:`simulations`; the parts' counts are added up. A seeded call seeds each part
        from its seed (its counts are reproducible, though not those of one whole call)."""
        found = call.costly
        assert found is not None
        shots = call.shots
        parts = min(_PROGRESS_PARTS, shots)
        sizes = [shots // parts + (1 if k < shots % parts else 0) for k in range(parts)]
        seed = call.options.get("seed_simulator")
        key = id(call)
        started = time.monotonic()
        progress = SimulationProgress(
            backend=self._name,
            task_ids=tuple(jobs[i].task_id for i in members),
            estimate=found,
            shots=shots,
            shots_done=0,
            started_at=started,
        )
        log.warning(
            "backend %r: running a simulation over its budget (allow_costly): %s; "
            "progress follows every %d shots",
            self._name,
            found.describe(),
            sizes[0],
        )
        with self._progress_lock:
            self._progress[key] = progress
        merged: list[_aer_worker.Outcome] | None = None
        done = 0
        try:
            for k, size in enumerate(sizes):
                options = dict(call.options)
                if isinstance(seed, int) and k:
                    options["seed_simulator"] = (seed + 7919 * k) % 2**31
                outcomes = await part(size, options, members)
                merged = outcomes if merged is None else _merge_outcomes(merged, outcomes)
                done += size
                elapsed = time.monotonic() - started
                with self._progress_lock:
                    self._progress[key] = dataclasses.replace(progress, shots_done=done)
                log.info(
                    "backend %r: %d/%d shots after %s, about %s left",
                    self._name,
                    done,
                    shots,
                    format_seconds(elapsed),
                    format_seconds(elapsed / done * (shots - done)),
                )
        finally:
            with self._progress_lock:
                del self._progress[key]
        self._learn_cost(call, time.monotonic() - started)
        assert merged is not None
        return merged

    def _run_options(
        self, job: CircuitJob
    ) -> tuple[dict[str, Any], bool, float | None, PermanentBackendError | None]:
        """A call's simulator options, and the guard's own options taken out of them:
        (options, allow_costly, max_simulation_seconds, the error of a bad value)."""
        options = dict(job.options)
        allow = options.pop("allow_costly", False)
        budget = options.pop("max_simulation_seconds", None)
        bad = None
        if not isinstance(allow, bool):
            bad = PermanentBackendError(
                self._name, f"run option allow_costly must be True or False, got {allow!r}"
            )
        elif budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or not budget > 0
        ):
            bad = PermanentBackendError(
                self._name,
                f"run option max_simulation_seconds must be a number of seconds > 0, "
                f"got {budget!r}",
            )
        if self._execution != "native":
            # Aer's options: a backend run through its own run() does not know them.
            if self._simulator_threads is not None:
                options.setdefault("max_parallel_threads", self._simulator_threads)
            options.setdefault("seed_simulator", self._run_seeds.getrandbits(31))
        return options, allow is True, None if budget is None else float(budget), bad

    def _simulate(
        self, prepared: list[PreparedCircuit], shots: int, options: dict[str, Any]
    ) -> list[_aer_worker.Outcome]:
        """Simulate prepared circuits in the calling thread (thread isolation).

        Raises:
            BackendError: The call failed as a whole.
        """
        if self._execution == "native":
            return self._run_native(prepared, shots, options)
        try:
            return _aer_worker.execute(self._cache, self._request(prepared, shots, options))
        except _aer_worker.JobFailure as failure:
            raise _job_error(self._name, failure.kind, failure.message) from failure

    def _request(
        self, prepared: list[PreparedCircuit], shots: int, options: dict[str, Any]
    ) -> _aer_worker.Request:
        """The simulator request for prepared circuits (Aer or a simulated device). For a
        worker process, circuits serialised already (those in the transpile cache) go as
        their bytes, the others together in one bundle."""
        if self._execution == "aer":
            mode: _aer_worker.Mode = "native"
            qubits = None
        else:
            mode = self._noise
            qubits = (
                tuple(sorted({q for p in prepared for q in p.physical_qubits}))
                if self._needs_physical
                else None
            )
        circuits: list[Any]
        bundle = None
        templates: dict[int, Any] = {}
        bound: list[_aer_worker.Bound | None] = (
            self._templates.bind([p.circuit for p in prepared], templates)
            if self._templates is not None
            else [None] * len(prepared)
        )
        if self._isolation == "process":
            circuits = []
            fresh: list[Any] = []
            index: dict[int, int] = {}
            for p, b in zip(prepared, bound, strict=True):
                if b is not None:
                    circuits.append(b)
                    continue
                if p.payload is not None:
                    circuits.append(p.payload)
                    continue
                k = index.setdefault(id(p.circuit), len(fresh))
                if k == len(fresh):
                    fresh.append(p.circuit)
                circuits.append(k)
            if fresh:
                bundle = _aer_worker.dump_circuits(fresh)
        else:
            circuits = [p.circuit if b is None else b for p, b in zip(prepared, bound, strict=True)]
        return _aer_worker.Request(
            source=self._source_key,
            sources={},
            mode=mode,
            qubits=qubits,
            circuits=circuits,
            shots=shots,
            options=options,
            bundle=bundle,
            templates=templates,
        )

    def _source(self) -> tuple[str, Any]:
        if self._execution == "aer":
            return ("aer", self._backend)
        return ("device", self._backend.target)

    def _source_payload(self) -> bytes:
        return pickle.dumps(self._source(), protocol=pickle.HIGHEST_PROTOCOL)

    def _run_native(
        self, prepared: list[PreparedCircuit], shots: int, options: dict[str, Any]
    ) -> list[_aer_worker.Outcome]:
        circuits = [p.circuit for p in prepared]
        try:
            result = call_guarding_panics(
                lambda: self._backend.run(circuits, shots=shots, **options).result(),
                what=f"{type(self._backend).__name__}.run",
            )
        except Exception as exc:
            raise _job_error(self._name, _aer_worker.classify(exc), str(exc)) from exc
        outcomes: list[_aer_worker.Outcome] = []
        for i in range(len(prepared)):
            try:
                counts = result.get_counts(i)
            except Exception as exc:
                outcomes.append(("error", "permanent", f"no counts: {exc}"))
                continue
            outcomes.append(("counts", {str(k): int(v) for k, v in counts.items()}))
        return outcomes

    def _outcome(self, item: _aer_worker.Outcome) -> JobOutcome:
        if item[0] == "counts":
            counts: Counts = item[1]
            return counts
        _, kind, message = item
        return _job_error(self._name, kind, message)

    def _learn(self, seconds: float, shots: int) -> None:
        if shots <= 0 or not math.isfinite(seconds):
            return
        observed = max(0.0, seconds - self._fixed_seconds) / shots
        self._seconds_per_shot += _EWMA_WEIGHT * (observed - self._seconds_per_shot)

    def _workers(self) -> _WorkerPool:
        pool = self._pool
        if pool is not None and pool.loop is not asyncio.get_running_loop():
            # Used from a new event loop (a second asyncio.run()): the old pool's queue is
            # bound to the old loop, and any job it ran died with it; start afresh.
            pool.abandon()
            pool = None
        if pool is None:
            pool = self._pool = _WorkerPool(self._name, self._max_concurrent_jobs)
        return pool

    async def aclose(self) -> None:
        """Stop the worker processes, if any."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.aclose()


# --- helpers --------------------------------------------------------------------------------


def default_backend() -> QiskitBackend:
    """The backend quantum tasks use when none is registered: Aer's ``AerSimulator``.

    Returns:
        A :class:`QiskitBackend` named ``"aer"`` over ``AerSimulator()``.

    Raises:
        MissingExtraError: If qiskit-aer is not installed.
    """
    try:
        from qiskit_aer import AerSimulator
    except ImportError as exc:
        raise MissingExtraError(
            "qiskit", "running quantum tasks with no backend registered (the local simulator)"
        ) from exc
    return QiskitBackend(AerSimulator(), name="aer")


def as_backend(backend: object, name: str | None = None) -> Backend:
    """What ``register_backend(name, backend)`` registers: a :class:`Backend` as it is, a
    Qiskit ``BackendV2`` wrapped in a :class:`QiskitBackend` named ``name``.

    Qiskit is imported only to recognise a Qiskit backend, never for a :class:`Backend`.

    Args:
        backend: A :class:`Backend` or a Qiskit ``BackendV2``.
        name: The name to give a wrapped Qiskit backend (default: its own name).

    Returns:
        The backend to register.

    Raises:
        InvalidConfigError: If ``backend`` is neither.
    """
    if isinstance(backend, Backend):
        return backend
    if sys.modules.get("qiskit") is not None:  # a BackendV2 cannot exist without qiskit
        from qiskit.providers import BackendV2

        if isinstance(backend, BackendV2):
            return QiskitBackend(backend, name=name)
    raise InvalidConfigError(
        "backend",
        "expected a logosq_os_scheduler Backend or a qiskit BackendV2, "
        f"got {type(backend).__name__}",
    )


@dataclasses.dataclass(slots=True)
class _Call:
    """One simulator call of a job: the jobs it runs (by index), their shots and options,
    and what the guard on costly simulations made of it."""

    members: list[int]
    shots: int
    options: dict[str, Any]
    allow_costly: bool = False
    max_seconds: float | None = None  # the task's own budget, if it set one
    bad_option: PermanentBackendError | None = None
    modelled: SimulationEstimate | None = None  # the model's estimate, to learn from
    costly: SimulationEstimate | None = None  # over budget and allowed: run in parts


@dataclasses.dataclass(frozen=True, slots=True)
class SimulationProgress:
    """A costly simulation running now (let through by ``allow_costly``), as
    :meth:`QiskitBackend.simulations` shows it.

    Attributes:
        backend: The backend's name.
        task_ids: The tasks whose circuits it runs.
        estimate: What it was expected to cost.
        shots: Shots per circuit in all.
        shots_done: Shots per circuit done so far.
        started_at: When it started, on ``time.monotonic()``.
        elapsed_seconds: Seconds since, when the snapshot was taken.
    """

    backend: str
    task_ids: tuple[int, ...]
    estimate: SimulationEstimate
    shots: int
    shots_done: int
    started_at: float
    elapsed_seconds: float = 0.0


def _merge_outcomes(
    first: list[_aer_worker.Outcome], second: list[_aer_worker.Outcome]
) -> list[_aer_worker.Outcome]:
    """Two parts' outcomes of the same circuits, added up (an error wins)."""
    merged: list[_aer_worker.Outcome] = []
    for a, b in zip(first, second, strict=True):
        if a[0] != "counts":
            merged.append(a)
        elif b[0] != "counts":
            merged.append(b)
        else:
            counts = dict(a[1])
            for bits, n in b[1].items():
                counts[bits] = counts.get(bits, 0) + n
            merged.append(("counts", counts))
    return merged


def _all_set(outcomes: list[JobOutcome | None]) -> list[JobOutcome]:
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(outcomes), "a job's circuit was left without an outcome"
    return done


def _job_error(backend: str, kind: str, message: str) -> BackendError:
    if kind == "transient":
        return TransientBackendError(backend, message)
    return PermanentBackendError(backend, message)


def _group_key(job: CircuitJob, index: int) -> tuple[Any, ...]:
    if "seed_simulator" in job.options:
        # Alone in its call, so that its counts do not depend on its place in a batch.
        return ("seeded", index)
    options: tuple[Any, ...]
    try:
        options = tuple(sorted(job.options.items()))
        hash(options)
    except TypeError:
        options = (repr(sorted(job.options.items(), key=lambda kv: kv[0])),)
    return (job.shots, options)


def _execution_kind(backend: Any) -> Literal["device", "aer", "native"]:
    try:
        from qiskit_aer import AerSimulator
    except ImportError:
        return "native"  # without Aer nothing is simulated here; the backend runs itself
    if isinstance(backend, AerSimulator):
        return "aer"
    from qiskit.providers.fake_provider import GenericBackendV2

    device_models: tuple[type, ...] = (GenericBackendV2,)
    with contextlib.suppress(ImportError):
        from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

        device_models += (FakeBackendV2,)
    if isinstance(backend, device_models):
        return "device"
    return "native"


def _coupling_of(backend: Any) -> frozenset[tuple[int, int]] | None:
    coupling = backend.coupling_map
    if coupling is None:
        return None
    edges: set[tuple[int, int]] = set()
    for a, b in coupling.get_edges():
        if a != b:
            edges.add((int(a), int(b)))
            edges.add((int(b), int(a)))
    n = int(backend.num_qubits)
    if len(edges) >= n * (n - 1):
        return None  # every pair is coupled: that is all-to-all
    return frozenset(edges)


def _median_two_qubit_error(target: Any) -> float | None:
    errors: list[float] = []
    for name in target.operation_names:
        operation = target.operation_from_name(name)
        if isinstance(operation, type) or getattr(operation, "num_qubits", 0) != 2:
            continue
        for properties in (target[name] or {}).values():
            error = getattr(properties, "error", None)
            if error is not None and math.isfinite(error):
                errors.append(float(error))
    return statistics.median(errors) if errors else None
