"""QiskitBackend: any Qiskit ``BackendV2`` as a scheduler backend.

Works with ``AerSimulator()``, ``GenericBackendV2(n)`` and the offline device models of
``qiskit_ibm_runtime.fake_provider`` (``FakeBrisbane``, ``FakeTorino``, ``FakeManilaV2``,
...), fully offline. What it adds to ``backend.run``:

* **Transpilation with a kept pass manager, and a transpile cache.** A plain
  ``transpile()`` builds its pass manager anew on every call; :meth:`QiskitBackend.prepare`
  reuses one per backend, and remembers the result for circuits it has seen (by a
  structural fingerprint), so a repeated circuit costs a fingerprint, not a transpilation.
  (``benchmarks/bench_backend_cost.py`` measures the three; see BENCHMARKS.md.)
* **Active-qubit noise for device models.** Aer ships the whole device noise model on every
  run, which makes even a small circuit slow. Device models are simulated here with noise
  restricted to the physical qubits the circuits use (much faster, same counts for the same
  seed; see BENCHMARKS.md); see :mod:`._aer_worker`.
* **One simulator call per batch.** :meth:`QiskitBackend.run` sends every circuit of a job
  with the same shots and options in one call. A circuit given its own ``seed_simulator``
  runs in a call of its own: Aer seeds the i-th circuit of a call with the seed plus
  ``i * 2113``, so a seeded circuit would give other counts in a batch than alone.
* **Copies of one circuit as one experiment.** An optimiser's step sends circuits that differ
  only in their angles. On an ``AerSimulator``, each goes as a template (made once per
  structure) and its angles, and the copies of one template in a call run as one experiment
  with a parameter bind each: Aer prepares the circuit once, and a worker process receives
  angles instead of a circuit (see :class:`_Templates`). The simulator is called in the
  worker's own thread, not handed on to the thread Aer's ``run()`` would start.
* **Simulation off the event loop.** Aer's Python side holds the GIL for much of a run: with
  a 1,000-circuit batch in a worker thread, a pure-Python event loop ran at 2% of its idle
  speed; with the batch in a worker process, at 74 to 87%. Local simulations therefore run
  in worker processes by default (``isolation``).

This module imports Qiskit only when a :class:`QiskitBackend` is built, so importing it is
free.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import math
import os
import pickle
import random
import statistics
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._errors import (
    BackendError,
    InvalidConfigError,
    MissingExtraError,
    PermanentBackendError,
    SchedulerError,
    TransientBackendError,
)
from . import _aer_worker
from ._base import Backend, CircuitJob, Counts, JobOutcome, prepare_all, sole_job
from ._circuits import _collect, _is_quantum_circuit, call_guarding_panics, normalize_circuit

if TYPE_CHECKING:
    from qiskit import QuantumCircuit


__all__ = [
    "MissingExtraError",
    "PreparedCircuit",
    "QiskitBackend",
    "as_backend",
    "default_backend",
]

NoiseMode = Literal["active", "full", "none"]
Isolation = Literal["auto", "thread", "process"]

# Circuits larger than this are transpiled in a thread by aprepare(); smaller ones cost less
# than the hop to a thread.
_THREAD_TRANSPILE_SIZE = 200
# Distinct circuits whose transpilation is remembered per backend. A small circuit on a
# 127-qubit device is slow to transpile even with a kept pass manager (layout scoring looks
# at the whole device); a repeat costs only a fingerprint.
_TRANSPILE_CACHE_SIZE = 256
# The cache pays for itself only if circuits repeat: every lookup costs a fingerprint, and
# only a hit saves a transpilation (which costs far more). Circuits that never repeat
# (freshly bound parameters, every step of an optimiser) gain nothing from it. So the cache
# is judged over trials of _CACHE_TRIAL lookups: one with fewer than _CACHE_MIN_HITS hits
# rests the cache for the next _CACHE_REST circuits (no fingerprint, no lookup, no insert),
# after which a new trial starts. Entries stay while it rests, so a workload that cycles
# through up to _TRANSPILE_CACHE_SIZE circuits finds hits again in a later trial.
_CACHE_TRIAL = 64
_CACHE_MIN_HITS = 2
_CACHE_REST = 192
# Non-gate instructions whose meaning is fixed by their name, parameters and operands.
_PLAIN_INSTRUCTIONS = frozenset({"measure", "barrier", "reset", "delay"})
# A worker's reply up to this size is unpickled on the event loop (a small one is quick to
# read); a larger one in a thread, where the loop keeps turning while it is read.
_INLINE_REPLY_BYTES = 256 * 1024
# Bytes asked of a worker's pipe per read. os.read allocates what it is asked for: 1 MiB
# comes from mmap, which is slow to do for every reply; 64 KiB comes from the heap, cheaply.
# A longer reply takes several reads (the loop calls the reader while the pipe has data).
_READ_SIZE = 64 * 1024
# The learned per-shot cost moves this far towards each new observation.
_EWMA_WEIGHT = 0.2
# In process isolation, a job the scheduler runs alone (sole_job) whose preparation is
# expected to take at most this long is prepared and sent from the event loop itself. The
# hand-off to a thread costs a wake-up (slow on a virtual machine), and while a thread
# transpiles, the loop holds the GIL only now and then anyway (with the transpiler in a
# thread, a short sleep on the main thread oversleeps by far, more so at the tail): the
# thread keeps a loop with other work responsive, but saves a loop with none nothing.
_INLINE_PREPARE_SECONDS = 0.005
# Distinct templates (see _Templates) remembered per backend, and the largest circuit made
# one: the saving is per experiment, small beside a large circuit's simulation.
_TEMPLATES = 256
_TEMPLATE_MAX_SIZE = 2000
# Structures seen once, remembered so that a second sighting makes a template.
_SEEN = 1024


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PreparedCircuit:
    """A circuit transpiled for one :class:`QiskitBackend`, as :meth:`QiskitBackend.prepare`
    returns it and :meth:`QiskitBackend.run` takes it.

    Prepared circuits belong to the backend that prepared them: another QiskitBackend given
    one prepares its ``source`` again.

    Attributes:
        circuit: The transpiled circuit, on the device's physical qubits. Equal circuits
            share one transpiled object (the backend's transpile cache, which stands aside
            while circuits do not repeat): treat it as read-only.
        source: The circuit as submitted (after :func:`normalize_circuit`).
        physical_qubits: The physical qubits it acts on, sorted (found on first use when the
            backend did not need them to simulate).
        backend_token: Identifies the backend that prepared it.
        payload: The transpiled circuit as bytes (:func:`._aer_worker.dump_circuit`), when
            the backend runs in a worker process and keeps the circuit in its transpile
            cache, and the circuit cannot go as a template (others are serialised with the
            rest of their job, or go as a template's number and angles).
    """

    circuit: QuantumCircuit
    source: QuantumCircuit
    known_physical_qubits: tuple[int, ...] | None
    backend_token: object
    payload: bytes | None = None

    @property
    def physical_qubits(self) -> tuple[int, ...]:
        """The physical qubits the transpiled circuit acts on, sorted."""
        found = self.known_physical_qubits
        if found is None:
            found = _physical_qubits(self.circuit)
            object.__setattr__(self, "known_physical_qubits", found)
        return found

    @property
    def num_qubits(self) -> int:
        """Physical qubits it acts on (at least 1)."""
        return max(1, len(self.physical_qubits))


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
        optimization_level: The preset pass manager's level, 0 to 3.
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
        optimization_level: int = 1,
        seed: int | None = None,
        isolation: Isolation = "auto",
        simulator_threads: int | None = None,
        num_qubits: int | None = None,
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
        if optimization_level not in (0, 1, 2, 3):
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
        if simulator_threads is not None and simulator_threads < 1:
            raise InvalidConfigError("simulator_threads", f"must be >= 1, got {simulator_threads}")

        self._backend = backend
        self._name = name or str(backend.name)
        self._noise: NoiseMode = noise
        self._optimization_level = optimization_level
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
            Hashable, tuple[QuantumCircuit, tuple[int, ...] | None, bytes | None]
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

        from qiskit.transpiler import generate_preset_pass_manager

        # Built once: a plain transpile() pays for building it on every call.
        self._pass_manager = generate_preset_pass_manager(
            optimization_level=optimization_level, backend=backend, seed_transpiler=seed
        )

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
        then transpiled alone, so that it fails alone)."""
        out: list[Any] = []
        todo: list[tuple[int, Any, Any, Hashable | None]] = []
        for i, circuit in enumerate(circuits):
            try:
                found = self._lookup(circuit)
            except Exception as exc:
                out.append(exc)
                continue
            out.append(found)
            if not isinstance(found, PreparedCircuit):
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
            transpiled, physical, payload = cached
            return PreparedCircuit(transpiled, source, physical, self._token, payload)
        if qc.num_qubits > self._num_qubits:
            qc = _without_idle_qubits(qc)
        return qc, source, fingerprint

    def _transpile(self, circuits: Any, count: int) -> Any:
        """The kept pass manager on ``circuits`` (one circuit, or a list of ``count``), under
        ``_transpile_lock``; its time per circuit is folded into the estimate (EWMA) that
        decides whether a job is prepared on the event loop (see _INLINE_PREPARE_SECONDS)."""
        with self._transpile_lock:
            started = time.perf_counter()
            transpiled = call_guarding_panics(
                lambda: self._pass_manager.run(circuits, num_processes=1),
                what="Qiskit transpiler",
            )
            observed = (time.perf_counter() - started) / count
            known = self._transpile_seconds
            self._transpile_seconds = (
                observed if known is None else known + _EWMA_WEIGHT * (observed - known)
            )
        return transpiled

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
        if fingerprint is not None:
            with self._transpile_lock:
                self._transpiled[fingerprint] = (transpiled, physical, payload)
                if len(self._transpiled) > _TRANSPILE_CACHE_SIZE:
                    self._transpiled.popitem(last=False)
        return PreparedCircuit(transpiled, source, physical, self._token, payload)

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
            _Call(members, jobs[members[0]].shots, self._run_options(jobs[members[0]]))
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
                if members:
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

            def requests() -> list[_aer_worker.Request]:
                """In the helper thread: the requests for the worker process."""
                sent.extend(ready())
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
                    absorb(members, reply[1])
                else:
                    absorb(members, _job_error(self._name, reply[1], reply[2]))
            return entries, _all_set(outcomes)

        def work() -> list[tuple[float, int]]:
            """In the worker thread: prepare, then one simulator call per group."""
            timings: list[tuple[float, int]] = []
            for members, call in ready():
                started = time.perf_counter()
                try:
                    raw = self._simulate([entries[i] for i in members], call.shots, call.options)
                except BackendError as exc:
                    absorb(members, exc)
                    continue
                timings.append((time.perf_counter() - started, call.shots * len(members)))
                absorb(members, raw)
            return timings

        if self._execution != "native" and not self._cache.has_source(self._source_key):
            self._cache.add_source(self._source_key, self._source())
        for seconds, shots in await asyncio.to_thread(work):
            self._learn(seconds, shots)
        return entries, _all_set(outcomes)

    def _run_options(self, job: CircuitJob) -> dict[str, Any]:
        options = dict(job.options)
        if self._execution != "native":
            # Aer's options: a backend run through its own run() does not know them.
            if self._simulator_threads is not None:
                options.setdefault("max_parallel_threads", self._simulator_threads)
            options.setdefault("seed_simulator", self._run_seeds.getrandbits(31))
        return options

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


class _Templates:
    """The templates of the circuits one backend runs on its AerSimulator.

    A transpiled circuit whose only angles are those of standard gates is sent as a template
    (the circuit with each angle a parameter) and its angles (:class:`._aer_worker.Bound`). The
    copies of one template in a job, the circuits of an optimiser's step that differ only in
    their angles, then run as one simulator experiment with a parameter bind each, and a worker
    process receives their angles rather than each circuit in QPY. Finding a circuit's structure
    (the instructions and the bits they act on) and angles is cheap; making a template costs
    more, and is done for a structure seen before, so circuits that never repeat their structure
    (random circuits, say) go as they are and do not pay it. Safe to use from several threads.

    Invariant: ``_by_structure`` holds at most ``_TEMPLATES`` entries, each with a number
    never given to another template of this backend; ``_seen`` at most ``_SEEN``
    structures, none of them in ``_by_structure``.
    """

    def __init__(self, *, serialise: bool) -> None:
        self._serialise = serialise
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self._by_structure: collections.OrderedDict[Hashable, tuple[int, Any]] = (
            collections.OrderedDict()
        )
        self._seen: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

    def bind(
        self, circuits: Sequence[Any], templates: dict[int, Any]
    ) -> list[_aer_worker.Bound | None]:
        """Each circuit as a template and its angles, or None for one that cannot be a
        template; the templates used are added to ``templates`` (bytes if serialised)."""
        out: list[_aer_worker.Bound | None] = []
        seen: dict[int, _aer_worker.Bound | None] = {}
        for circuit in circuits:
            key = id(circuit)
            if key not in seen:  # a circuit sent many times (the transpile cache's) once
                seen[key] = self._bound(circuit, templates)
            out.append(seen[key])
        return out

    def _bound(self, circuit: Any, templates: dict[int, Any]) -> _aer_worker.Bound | None:
        shape = _structure_and_angles(circuit)
        if shape is None:
            return None
        structure, angles = shape
        with self._lock:
            found = self._by_structure.get(structure)
            if found is not None:
                self._by_structure.move_to_end(structure)
            elif structure not in self._seen:
                # First sighting: remembered; a template if the structure comes again.
                self._seen[structure] = None
                if len(self._seen) > _SEEN:
                    self._seen.popitem(last=False)
                return None
        if found is None:
            template = _template_of(circuit)
            payload = _aer_worker.dump_circuit(template) if self._serialise else template
            with self._lock:
                self._seen.pop(structure, None)
                found = self._by_structure.setdefault(structure, (next(self._numbers), payload))
                if len(self._by_structure) > _TEMPLATES:
                    self._by_structure.popitem(last=False)
        number, payload = found
        templates[number] = payload
        return _aer_worker.Bound(number, angles)


def _structure_and_angles(circuit: Any) -> tuple[Hashable, tuple[float, ...]] | None:
    """A transpiled circuit's structure (what two circuits of one template share) and its
    angles in order; None if it cannot be a template: too large, no angles, or an
    instruction other than a standard gate with float angles, a measurement, a barrier or
    a reset (a custom gate, a unitary, control flow, a delay)."""
    if len(circuit) > _TEMPLATE_MAX_SIZE:
        return None
    # The registers and bit counts fix the layout of the counts' bitstrings.
    structure: list[Any] = [
        circuit.num_qubits,
        circuit.num_clbits,
        tuple(circuit.qregs),
        tuple(circuit.cregs),
    ]
    angles: list[float] = []
    for instruction in circuit.data:
        params = instruction.params
        if instruction.is_standard_gate():
            for value in params:
                if type(value) is not float:
                    return None
            angles.extend(params)
        elif params or not _is_plain(instruction):  # a delay has a parameter
            return None
        structure.append(instruction.name)
        structure.append(instruction.qubits)
        structure.append(instruction.clbits)
    if not angles:
        return None
    return tuple(structure), tuple(angles)


def _template_of(circuit: Any) -> Any:
    """The circuit with each gate angle a parameter, in order (:func:`_structure_and_angles`
    accepted it)."""
    from qiskit.circuit import CircuitInstruction, ParameterVector

    count = sum(len(instruction.params) for instruction in circuit.data)
    vector = iter(ParameterVector("angle", count))
    template = circuit.copy_empty_like()
    for instruction in circuit.data:
        if instruction.params:
            operation = instruction.operation.copy()
            operation.params = [next(vector) for _ in instruction.params]
            instruction = CircuitInstruction(operation, instruction.qubits, instruction.clbits)
        template._append(instruction)
    return template


# --- worker processes ----------------------------------------------------------------------


class _Worker:
    """One worker process (``python _aer_worker.py``) and the sources it already holds.

    Requests are written by a helper thread (which prepares them first: transpiling, QPY),
    replies read by the event loop, which watches the process's stdout: a job costs the loop
    one thread hand-off and one wake-up when the reply lands, as a job in a worker thread
    does. The stdout pipe is only ever read with ``os.read`` on its descriptor.

    Invariant: ``known`` lists the sources this process has been sent; a new process
    starts with none.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, _aer_worker.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        self.replies = self.process.stdout.fileno()
        self.known: set[str] = set()

    def send(self, request: bytes) -> bool:
        """Write a framed request; False if the process is gone."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(request)
            stdin.flush()
        except (OSError, ValueError):  # a broken pipe, or pipes closed under us by kill()
            return False
        return True

    def kill(self) -> None:
        """Stop the process now and reap it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        self.process.wait()
        self._close_pipes()

    def close(self, timeout: float) -> None:
        """Let the process finish its request and exit (end of input), else kill it."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class _Replies:
    """The framed replies of one exchange with a worker, as they arrive on its stdout.

    Read by the event loop (``add_reader``), or, where the loop cannot watch a pipe (the
    Windows proactor loop), by the helper thread after it sent the requests
    (:meth:`read_blocking`). ``frames`` holds the bodies of the replies complete so far.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._loop = loop
        self._buffer = bytearray()
        self.frames: list[bytes] = []
        self._ended = False
        self._watching = False
        self._waiter: asyncio.Future[None] | None = None

    def watch(self) -> bool:
        """Have the loop read the replies; False if it cannot watch a pipe."""
        try:
            self._loop.add_reader(self._fd, self._readable)
        except NotImplementedError:
            return False
        self._watching = True
        return True

    def stop(self) -> None:
        if self._watching:
            self._watching = False
            self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        self._take()
        if self._ended:
            self.stop()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _take(self) -> None:
        """Read what is there (the descriptor is readable, or this is the helper thread)
        and split off complete frames."""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self._ended = True
            return
        self._buffer += data
        self.frames += _aer_worker.split_frames(self._buffer)

    def read_blocking(self, count: int) -> None:
        """In the helper thread: read until ``count`` replies are complete or the pipe ends."""
        while len(self.frames) < count and not self._ended:
            self._take()

    async def wait(self, count: int) -> list[bytes]:
        """The first ``count`` replies, once they are complete.

        Raises:
            _WorkerDied: The pipe ended first.
        """
        while len(self.frames) < count:
            if self._ended:
                raise _WorkerDied()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self.frames[:count]


class _WorkerPool:
    """``size`` worker processes, each serving one exchange at a time.

    Invariant: a worker is in ``_idle`` iff no exchange is using it; a worker whose exchange
    was interrupted (cancelled, or its process died) is killed and replaced by a fresh
    process on next use, so a half-read reply can never be taken for the next one's.
    ``_idle`` is an asyncio queue, bound to the loop the pool was made on (``loop``).
    """

    def __init__(self, backend: str, size: int) -> None:
        self._backend = backend
        self.loop = asyncio.get_running_loop()
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # None: a slot whose process is not started yet
        self._all: set[_Worker] = set()
        self._closed = False
        # Workers of a pool dropped without aclose() (its backend garbage-collected) are
        # still stopped: their end of input makes them exit.
        self._finalizer = weakref.finalize(self, _stop_all, self._all)

    async def start(self) -> None:
        slots = [self._idle.get_nowait() for _ in range(self._idle.qsize())]
        try:
            for i, worker in enumerate(slots):
                if worker is None:
                    slots[i] = self._spawn()
        finally:
            for worker in slots:
                self._idle.put_nowait(worker)

    def _spawn(self) -> _Worker:
        # Popen returns once the child exists; the worker imports Aer on its own time.
        worker = _Worker()
        self._all.add(worker)
        return worker

    async def exchange(
        self,
        requests: Callable[[], list[_aer_worker.Request]],
        source_payload: Callable[[], bytes],
        *,
        inline_for: str | None = None,
    ) -> list[tuple[Any, ...]]:
        """Make ``requests()`` in a helper thread and send them to one worker process, which
        is this exchange's alone; return its replies, one per request, in order.

        The event loop reads the replies itself, watching the worker's stdout from before
        the helper thread starts: the thread's own return is not waited for on the way
        (it lands while the worker simulates), so a job costs the loop one thread hand-off
        and one wake-up by the reply. With ``inline_for``, a source the worker holds
        already, ``requests()`` is made and sent on the loop instead (no hand-off), where
        the loop reads the replies and the worker has that source.

        Raises:
            TransientBackendError: The worker process died (it is replaced on next use), or
                the pool is closed.
            What ``requests`` raises.
        """
        if self._closed:
            raise TransientBackendError(self._backend, "the backend was closed")
        worker = await self._idle.get()
        healthy = False
        replies: _Replies | None = None
        try:
            if worker is None:
                worker = self._spawn()
            leased = worker
            replies = _Replies(leased.replies, self.loop)
            watched = replies.watch()
            sent = 0

            def send() -> int:
                nonlocal sent
                made = requests()
                for request in made:
                    if request.source not in leased.known:
                        # The first request to this process carries the simulation source
                        # (pickling a device Target is slow: here, off the loop).
                        request = dataclasses.replace(
                            request, sources={request.source: source_payload()}
                        )
                    sent += 1
                    if not leased.send(_aer_worker.frame(request)):
                        raise _WorkerDied()
                    leased.known.add(request.source)
                if not watched:
                    replies.read_blocking(len(made))
                return len(made)

            try:
                if watched and inline_for is not None and inline_for in leased.known:
                    count = send()
                else:
                    count = await asyncio.to_thread(send)
                bodies = await replies.wait(count)
            except _WorkerDied:
                code = leased.process.poll()
                raise TransientBackendError(
                    self._backend,
                    "the simulator worker process died"
                    + (f" (exit code {code})" if code is not None else "")
                    + "; the job can be retried",
                ) from None
            except Exception:
                healthy = sent == 0  # the process was never asked
                raise
            healthy = True  # every reply is in: nothing is left half-read in the pipe
            return [
                # A large reply (thousands of counts) is unpickled off the loop.
                pickle.loads(body)
                if len(body) < _INLINE_REPLY_BYTES
                else await asyncio.to_thread(pickle.loads, body)
                for body in bodies
            ]
        finally:
            if replies is not None:
                replies.stop()
            if not healthy and worker is not None:
                # Cancelled or broken mid-exchange: its pipe may hold half a reply. Killing
                # and reaping a process is quick: done here, not awaited,
                # so that a second cancellation cannot lose the slot.
                self._all.discard(worker)
                worker.kill()
                worker = None
            self._idle.put_nowait(worker)

    def abandon(self) -> None:
        """Stop every worker now (the pool's event loop is gone)."""
        self._closed = True
        for worker in list(self._all):
            worker.kill()
        self._all.clear()

    async def aclose(self) -> None:
        self._closed = True
        workers = list(self._all)
        self._all.clear()
        for worker in workers:
            await asyncio.to_thread(worker.close, 5.0)


def _stop_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.close(timeout=1.0)
    workers.clear()


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


class _WorkerDied(Exception):
    """A worker process died mid-exchange (its pipe broke or ended)."""


@dataclasses.dataclass(slots=True)
class _Call:
    """One simulator call of a job: the jobs it runs (by index), their shots and options."""

    members: list[int]
    shots: int
    options: dict[str, Any]


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


@functools.cache
def _plain_instruction_types() -> tuple[type, ...]:
    from qiskit.circuit import Barrier, Delay, Measure, Reset

    return (Barrier, Delay, Measure, Reset)


def _is_plain(instruction: Any) -> bool:
    """Whether a circuit instruction is Qiskit's own measure, barrier, reset or delay, whose
    meaning its name, parameters and operands fix (a custom instruction may share a name)."""
    return instruction.name in _PLAIN_INSTRUCTIONS and isinstance(
        instruction.operation, _plain_instruction_types()
    )


def _fingerprint(qc: QuantumCircuit) -> Hashable | None:
    """A key equal for two circuits iff they transpile the same way, or None if unsure.

    Only circuits made of standard gates and plain instructions (measure, barrier, reset,
    delay) get a key: a custom gate's name says nothing about its definition, and control
    flow carries blocks. Registers, operands and parameters are all part of the key.
    """
    if qc.layout is not None:
        return None  # already laid out: transpile it for real
    qubit = {bit: i for i, bit in enumerate(qc.qubits)}.__getitem__
    clbit = {bit: i for i, bit in enumerate(qc.clbits)}.__getitem__
    parts: list[Hashable] = [
        tuple((r.name, r.size) for r in qc.qregs),
        tuple((r.name, r.size) for r in qc.cregs),
        qc.num_qubits,
        qc.num_clbits,
    ]
    try:
        parts.append(qc.global_phase)
        for instruction in qc.data:
            name = instruction.name
            if not instruction.is_standard_gate() and not _is_plain(instruction):
                return None
            # `.operation` builds a Python gate object: read it only for a delay's unit.
            unit = getattr(instruction.operation, "unit", None) if name == "delay" else None
            parts.append(
                (
                    name,
                    tuple(instruction.params),
                    unit,
                    tuple(map(qubit, instruction.qubits)),
                    tuple(map(clbit, instruction.clbits)),
                )
            )
        key = tuple(parts)
        hash(key)
    except TypeError:
        return None  # an unhashable parameter
    return key


def _physical_qubits(circuit: QuantumCircuit) -> tuple[int, ...]:
    active: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    _collect(circuit, list(range(circuit.num_qubits)), active, pairs)
    return tuple(sorted(active))


def _without_idle_qubits(qc: QuantumCircuit) -> QuantumCircuit:
    """``qc`` on a fresh register holding only the qubits something acts on, in order (so it
    fits a smaller device). Classical bits and registers are kept."""
    active: set[int] = set()
    _collect(qc, list(range(qc.num_qubits)), active, set())
    return _aer_worker.compact_circuit(qc, tuple(sorted(active)))
