"""Qiskit's Sampler and Estimator V2 primitives, run through the scheduler.

:class:`SchedulerSampler` and :class:`SchedulerEstimator` implement ``BaseSamplerV2`` and
``BaseEstimatorV2``, so code written for Qiskit's primitives (qiskit-algorithms' VQE and QAOA,
for instance) gets the scheduler's priorities, routing, batching and retries unchanged. They
follow Qiskit's semantics: PUBs are coerced with ``SamplerPub.coerce`` / ``EstimatorPub.coerce``
(so malformed PUBs raise the same ``ValueError`` / ``TypeError`` as Qiskit's reference
primitives, at ``run()``), parameters broadcast as Qiskit broadcasts them, and results come
in Qiskit's containers with Qiskit's metadata.

How work reaches the scheduler: every circuit a job needs (every parameter set of every PUB,
and for the estimator every measurement basis) becomes one quantum task, and all of a job's
tasks are submitted together before any is awaited, so the scheduler batches them into as few
backend jobs as the backends allow and fans them out across backends. Once all are in, the
job flushes them (:meth:`~logosq_os_scheduler.QuantumScheduler.flush_batches`): none waits
out the batch window for circuits that are not coming.

Threads and loops: ``run()`` is synchronous in Qiskit's API and returns a job; the scheduler
lives on an event loop. ``run()`` may be called

* from a thread other than the scheduler's loop (plain scripts with
  :class:`~logosq_os_scheduler.BlockingScheduler`, or code handed to ``asyncio.to_thread``):
  the job is handed to the loop and ``job.result()`` blocks that thread until it is done;
* on the loop itself (inside a coroutine): the job starts at once; there, ``await job`` (or
  use :meth:`SchedulerEstimator.arun` / :meth:`SchedulerSampler.arun`), since a blocking
  ``job.result()`` on the loop would wait forever and raises instead.

Options: each primitive has a mutable ``options`` dataclass with the fields of the matching
Qiskit primitive's options (``BackendSamplerV2``: ``default_shots``, ``seed_simulator``,
``run_options``; ``BackendEstimatorV2``: ``default_precision``, ``abelian_grouping``,
``seed_simulator``, and ``run_options`` as the sampler has them), given as a dict or the
dataclass at construction and read at every ``run()``. ``run_options`` reach the backend
with every circuit (:meth:`~logosq_os_scheduler.TaskBuilder.with_run_options`). The
scheduler's quantum tasks return counts, so only ``meas_level=2`` (classified bits) can be
asked for; another ``meas_level`` raises ``QiskitError`` at ``run()``.

Seeds: ``seed_simulator`` (an int) seeds the simulation as ``BackendSamplerV2`` does on Aer:
the ``k``-th circuit of a job (in PUB order, then parameter order, then, for the estimator,
measurement basis) runs with ``seed_simulator + 2113 * k``, the seed Aer gives the ``k``-th
circuit of one call, so a job whose circuits fit one Aer call gives the counts
``backend.run(circuits, seed_simulator=...)`` gives. ``seed`` (an int or a NumPy
``Generator``, as ``StatevectorSampler`` / ``StatevectorEstimator`` take it) seeds a job's
randomness as a whole: an int makes every job start from the same state, so the same job
gives the same result every time; and, as those primitives re-seed with it, every PUB of the
estimator and every bound circuit of the sampler starts from the same seed again (equal
PUBs of one job give equal results, and a sampler PUB of several parameter sets gives what
the same parameter sets give as PUBs of their own); a ``Generator`` is drawn from and
advances, so repeated jobs and PUBs differ.
When ``seed`` is set and ``seed_simulator`` is not, the simulator seed is drawn
from ``seed``. A seeded circuit runs in a simulator call of its own (see
:class:`~logosq_os_scheduler.backends.QiskitBackend`), so its counts do not depend on how
the scheduler batches it; unseeded circuits batch freely.

Estimator precision: a PUB with ``precision > 0`` is estimated from samples, with
``ceil(1 / precision**2)`` shots per measurement basis, and its ``stds`` and metadata follow
Qiskit's ``BackendEstimatorV2``. ``precision == 0`` asks for the exact expectation value, as
it does of Qiskit's ``StatevectorEstimator``: the job's exact PUBs are computed together by
``StatevectorEstimator(seed=seed)`` in one classical task on the scheduler (no backend is
involved), with ``StatevectorEstimator``'s results and metadata. An estimator pinned to a
backend refuses ``precision == 0`` with the ``ValueError`` of ``BackendEstimatorV2``: a
backend can only estimate from shots, and an exact value computed elsewhere would silently
drop the backend's noise.

Sampler shot order: the scheduler's quantum tasks return counts, not per-shot memory, so a
``BitArray`` is built from counts and the order of shots is lost. Shots of one circuit are
exchangeable (independent and identically distributed), so each PUB's shots are put in a
random order (from the job's seeded randomness, see Seeds) rather than grouped by outcome;
joint statistics across classical registers are kept exactly, since every register is cut
from the same shots.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import math
import operator
import uuid
import warnings
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import numpy as np
from qiskit.circuit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.exceptions import QiskitError
from qiskit.primitives import (
    BaseEstimatorV2,
    BasePrimitiveJob,
    BaseSamplerV2,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
    StatevectorEstimator,
)
from qiskit.primitives.containers import BitArray, DataBin
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub
from qiskit.providers import JobStatus
from qiskit.quantum_info import Pauli, PauliList
from qiskit.result import sampled_expectation_value

from .._errors import SchedulerError
from .._task import Task, TaskPriority
from ..backends._base import CircuitRequirements
from ..backends._circuits import analyze_circuit

if TYPE_CHECKING:
    from .._blocking import BlockingScheduler
    from .._handle import TaskHandle
    from .._scheduler import QuantumScheduler

__all__ = [
    "SchedulerEstimator",
    "SchedulerEstimatorOptions",
    "SchedulerPrimitiveJob",
    "SchedulerSampler",
    "SchedulerSamplerOptions",
    "await_all",
]

# Jobs binding at least this many parameter sets are prepared (bound, measured) in a worker
# thread, so that the event loop keeps scheduling meanwhile; smaller ones are cheaper inline.
_OFFLOAD_BINDINGS = 32
# Observables whose measurement bases (_bases) are remembered, per process: a few hundred
# small circuits at most.
_BASES_CACHE_SIZE = 256

DEFAULT_PRECISION = 0.015625
"""The estimator's default precision, as Qiskit's ``BackendEstimatorV2``: 1 / sqrt(4096)."""

# Aer seeds the i-th circuit of one call with seed_simulator + i * 2113; the k-th circuit of
# a job is given that seed, so that it runs alone with the seed it would have had in a call.
_AER_SEED_STRIDE = 2113

Seed: TypeAlias = np.random.Generator | int | None


# --- options and seeds ----------------------------------------------------------------------


@dataclasses.dataclass
class SchedulerSamplerOptions:
    """Options of :class:`SchedulerSampler`: the fields of Qiskit's ``BackendSamplerV2``
    options, with the same meaning and defaults."""

    default_shots: int = 1024
    """Shots of PUBs that set none."""

    seed_simulator: int | None = None
    """Seed of the simulation (see the module documentation); None: unseeded."""

    run_options: dict[str, Any] | None = None
    """Options passed to the backend with every circuit (``shots`` excepted)."""


@dataclasses.dataclass
class SchedulerEstimatorOptions:
    """Options of :class:`SchedulerEstimator`: the fields of Qiskit's ``BackendEstimatorV2``
    options, with the same meaning and defaults, and ``run_options`` as
    ``BackendSamplerV2`` has them."""

    default_precision: float = DEFAULT_PRECISION
    """Precision of PUBs that set none; ``0`` asks for exact values (see the module
    documentation)."""

    abelian_grouping: bool = True
    """Measure qubit-wise commuting Paulis together (one circuit per group), or each Pauli
    on its own."""

    seed_simulator: int | None = None
    """Seed of the simulation (see the module documentation); None: unseeded."""

    run_options: dict[str, Any] | None = None
    """Options passed to the backend with every circuit (``shots`` excepted)."""


def _options_of(cls: type[Any], options: Any) -> Any:
    """``options`` (None, a mapping or a ``cls``) as a fresh ``cls``.

    Raises:
        TypeError: On a field ``cls`` does not have (as Qiskit's ``Options(**options)``).
    """
    if options is None:
        return cls()
    if isinstance(options, cls):
        return dataclasses.replace(options)
    if isinstance(options, Mapping):
        return cls(**options)
    raise TypeError(f"options must be a dict or {cls.__name__}, got {type(options).__name__}")


def _checked_run_options(run_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run options to pass with every circuit, checked before anything is submitted.

    Raises:
        QiskitError: If they ask for a ``meas_level`` other than 2 (counts are all the
            scheduler's quantum tasks return), as Qiskit raises for a level it cannot read.
        ValueError: If they set ``shots`` (PUBs and ``run(shots=)`` set shots).
    """
    opts = dict(run_options or {})
    level = opts.get("meas_level")
    if level is not None and int(level) != 2:
        raise QiskitError(
            f"Unsupported meas_level: {level}. The scheduler's quantum tasks return counts, "
            "so only meas_level=2 (classified bits) is available."
        )
    if "shots" in opts:
        raise ValueError("run_options cannot set shots: give them in the PUB or in run(shots=)")
    return opts


def _job_rng(seed: Seed, seed_simulator: int | None) -> np.random.Generator:
    """The randomness of one job. An int seed starts every job from the same state (the same
    job, the same result); a Generator is used as is and advances. Without ``seed``, the
    job's other randomness follows ``seed_simulator``, so that a job seeded either way is
    reproducible."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None:
        return np.random.default_rng(seed_simulator)
    return np.random.default_rng(seed)


def _seed_base(seed: Seed, seed_simulator: int | None, rng: np.random.Generator) -> int | None:
    """The simulator seed of a job's first circuit, or None for an unseeded job."""
    if seed_simulator is not None:
        return int(seed_simulator)
    if seed is None:
        return None
    return int(rng.integers(0, 2**31))


def _reseed(seed: Seed, seed_simulator: int | None) -> int | None:
    """The int ``seed`` that every PUB (estimator) or bound circuit (sampler) of a job starts
    from again, as Qiskit's Statevector primitives re-seed with it, so that equal PUBs of one
    job give equal results; None when the job is seeded otherwise, or not at all."""
    if seed_simulator is not None or seed is None or isinstance(seed, np.random.Generator):
        return None
    return operator.index(seed)


def _needs(
    known: dict[tuple[int, tuple[int, ...]], CircuitRequirements],
    key: tuple[int, tuple[int, ...]],
    circuit: QuantumCircuit,
) -> CircuitRequirements:
    """What ``circuit`` needs from a backend, analysed once per ``key``: the bound copies of
    one PUB circuit (``id`` of the PUB's circuit, alive for the whole job) measured on the
    same qubits differ only in parameter values and single-qubit basis changes on measured
    qubits, so they need the same qubits and connectivity. Spares the scheduler a walk of
    every bound circuit at submit."""
    found = known.get(key)
    if found is None:
        found = known[key] = analyze_circuit(circuit)
    return found


def _with_run_options(
    builder: Any, run_options: dict[str, Any], base: int | None, index: int
) -> Any:
    """``builder`` with the job's run options and, in a seeded job, circuit ``index``'s seed."""
    opts = dict(run_options)
    if base is not None:
        opts["seed_simulator"] = base + _AER_SEED_STRIDE * index
    return builder.with_run_options(**opts) if opts else builder


# --- the scheduler and its loop ------------------------------------------------------------


def _as_scheduler(scheduler: QuantumScheduler | BlockingScheduler) -> QuantumScheduler:
    from .._blocking import BlockingScheduler
    from .._scheduler import QuantumScheduler

    if isinstance(scheduler, BlockingScheduler):
        return scheduler.scheduler
    if isinstance(scheduler, QuantumScheduler):
        return scheduler
    raise TypeError(
        f"expected a QuantumScheduler or BlockingScheduler, got {type(scheduler).__name__}"
    )


def _loop_of(scheduler: QuantumScheduler) -> asyncio.AbstractEventLoop:
    """The loop the scheduler runs on.

    Raises:
        SchedulerError: If the scheduler has not started (it binds to a loop on first use).
    """
    loop: asyncio.AbstractEventLoop | None = scheduler._loop
    if loop is None:
        raise SchedulerError(
            "the scheduler has not started: use it in `async with QuantumScheduler()` first, "
            "or use a BlockingScheduler from synchronous code"
        )
    return loop


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _bindings(pubs: list[Any]) -> int:
    return sum(int(pub.parameter_values.size) for pub in pubs)


async def await_all(handles: Sequence[TaskHandle[Any]]) -> list[Any]:
    """Wait for every handle and return their values in order.

    If any task fails, or the waiting coroutine is cancelled, every task still unfinished is
    cancelled before the error propagates: nothing outlives the caller.

    Raises:
        TaskError: The first failure's error (TaskFailedError, TaskCancelledError, ...).
    """
    try:
        return [(await h).value for h in handles]
    except BaseException:
        for h in handles:
            if not h.done():
                h.cancel()
        raise


class SchedulerPrimitiveJob(BasePrimitiveJob[PrimitiveResult[Any], JobStatus]):  # type: ignore[misc]
    """The job a :class:`SchedulerSampler` or :class:`SchedulerEstimator` ``run()`` returns.

    ``result()`` blocks the calling thread (not the scheduler's loop) until the job is done;
    on the loop, ``await job`` instead. ``cancel()`` cancels every task of the job, from any
    thread. Statuses are Qiskit's ``JobStatus``: RUNNING while any of its tasks is in the
    scheduler, then DONE, ERROR or CANCELLED.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Coroutine[Any, Any, PrimitiveResult[Any]],
    ) -> None:
        super().__init__(str(uuid.uuid4()))
        self._loop = loop
        self._task: asyncio.Task[PrimitiveResult[Any]] | None = None
        self._future: concurrent.futures.Future[PrimitiveResult[Any]]
        if _on_loop(loop):
            # On the loop: start now and mirror the outcome for status() and result().
            task = loop.create_task(work)
            self._task = task
            self._future = concurrent.futures.Future()
            self._future.set_running_or_notify_cancel()
            task.add_done_callback(self._mirror)
        else:
            # From another thread: the loop runs the work; cancelling this future cancels it.
            self._future = asyncio.run_coroutine_threadsafe(work, loop)

    def _mirror(self, task: asyncio.Task[PrimitiveResult[Any]]) -> None:
        if task.cancelled():
            # A running concurrent future cannot be cancelled: record it as CancelledError.
            self._future.set_exception(concurrent.futures.CancelledError())
        elif (exc := task.exception()) is not None:
            self._future.set_exception(exc)
        else:
            self._future.set_result(task.result())

    def result(self) -> PrimitiveResult[Any]:
        """Block until the job is done and return its result.

        Raises:
            SchedulerError: If called on the scheduler's loop while the job is not done.
            TaskError: If one of its tasks failed (the backend's error is ``__cause__``).
            concurrent.futures.CancelledError: If the job was cancelled.
        """
        if not self._future.done() and _on_loop(self._loop):
            raise SchedulerError(
                "job.result() would block the scheduler's event loop: `await job` instead"
            )
        return self._future.result()

    def __await__(self) -> Any:
        if self._task is not None:
            return self._task.__await__()
        return asyncio.wrap_future(self._future).__await__()

    def status(self) -> JobStatus:
        """The job's status."""
        fut = self._future
        if self._task is not None and self._task.cancelled():
            return JobStatus.CANCELLED
        if fut.cancelled():
            return JobStatus.CANCELLED
        if not fut.done():
            return JobStatus.RUNNING
        exc = fut.exception()
        if isinstance(exc, concurrent.futures.CancelledError):
            return JobStatus.CANCELLED
        return JobStatus.DONE if exc is None else JobStatus.ERROR

    def done(self) -> bool:
        """Whether the job finished successfully."""
        return self.status() is JobStatus.DONE

    def running(self) -> bool:
        """Whether the job is still in the scheduler."""
        return self.status() is JobStatus.RUNNING

    def cancelled(self) -> bool:
        """Whether the job was cancelled."""
        return self.status() is JobStatus.CANCELLED

    def in_final_state(self) -> bool:
        """Whether the job is DONE, ERROR or CANCELLED."""
        return self._future.done()

    def cancel(self) -> bool:
        """Cancel the job and its unfinished tasks. Safe from any thread.

        Returns:
            True if the job was still running.
        """
        if self._future.done():
            return False
        if self._task is not None:
            task = self._task
            if _on_loop(self._loop):
                task.cancel()
            else:
                self._loop.call_soon_threadsafe(task.cancel)
            return True
        return self._future.cancel()


def _start_job(
    scheduler: QuantumScheduler, work: Coroutine[Any, Any, PrimitiveResult[Any]]
) -> SchedulerPrimitiveJob:
    try:
        loop = _loop_of(scheduler)
    except BaseException:
        work.close()
        raise
    return SchedulerPrimitiveJob(loop, work)


# --- the estimator --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Measurement:
    """One circuit an estimator PUB needs: the bound circuit measured in one Pauli basis.

    ``labels`` are the Pauli terms (full width) it estimates; ``diagonal`` their Z/I form on
    the measured qubits only, in the order of the measurement register's bits.
    """

    circuit: QuantumCircuit
    param_index: tuple[int, ...]
    labels: tuple[str, ...]
    diagonal: tuple[str, ...]
    width: int
    support: tuple[int, ...] = ()


def _measurement_circuit(num_qubits: int, basis: Any) -> tuple[QuantumCircuit, np.ndarray]:
    """A circuit rotating ``basis`` (a Pauli) to the Z basis and measuring its support.

    The same construction as Qiskit's ``BackendEstimatorV2``: ``H`` turns X into Z,
    ``Sdg`` then ``H`` turns Y into Z. A basis that is all identity measures qubit 0, so that
    the circuit still has counts.
    """
    support = np.arange(basis.num_qubits)[basis.z | basis.x]
    if support.size == 0:
        support = np.array([0])
    meas = QuantumCircuit(
        QuantumRegister(num_qubits, "q"),
        ClassicalRegister(len(support), f"__c_{basis.to_label()}"),
    )
    for clbit, qubit in enumerate(support):
        if basis.x[qubit]:
            if basis.z[qubit]:
                meas.sdg(qubit)
            meas.h(qubit)
        meas.measure(qubit, clbit)
    return meas, support


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class _Basis:
    """One measurement basis of a set of Paulis: the circuit that measures it (read only:
    it is shared by every bound circuit measured in it) and what its counts estimate."""

    circuit: QuantumCircuit
    labels: tuple[str, ...]
    diagonal: tuple[str, ...]
    width: int
    support: tuple[int, ...]


@functools.lru_cache(maxsize=_BASES_CACHE_SIZE)
def _bases(num_qubits: int, labels: tuple[str, ...], grouping: bool) -> tuple[_Basis, ...]:
    """The measurement bases of the Paulis ``labels`` (sorted) on ``num_qubits`` qubits: one
    per group of qubit-wise commuting Paulis (``PauliList.group_commuting(qubit_wise=True)``),
    or one per Pauli without ``grouping``. Remembered: an optimiser measures the same
    observable at every step, and grouping it costs more than measuring a circuit in it."""
    out: list[_Basis] = []
    paulis = PauliList(list(labels))
    groups = paulis.group_commuting(qubit_wise=True) if grouping else [p for p in paulis]
    for group in groups:
        group = PauliList(group)
        basis = Pauli((np.logical_or.reduce(group.z), np.logical_or.reduce(group.x)))
        meas, support = _measurement_circuit(num_qubits, basis)
        # Each term in Z form on the measured qubits; the label's leftmost character is the
        # highest measured qubit, matching the register's bitstring order.
        nonidentity = group.z[:, support] | group.x[:, support]
        out.append(
            _Basis(
                circuit=meas,
                labels=tuple(p.to_label() for p in group),
                diagonal=tuple(
                    "".join("Z" if bit else "I" for bit in row[::-1]) for row in nonidentity
                ),
                width=len(support),
                support=tuple(int(q) for q in support),
            )
        )
    return tuple(out)


def _measurements_for(
    circuit: QuantumCircuit,
    param_index: tuple[int, ...],
    labels: Iterable[str],
    grouping: bool = True,
) -> list[_Measurement]:
    """The circuits that estimate every Pauli in ``labels`` on ``circuit``: ``circuit``
    measured in each of the labels' bases (:func:`_bases`)."""
    out: list[_Measurement] = []
    for basis in _bases(circuit.num_qubits, tuple(sorted(labels)), grouping):
        register = basis.circuit.cregs[0]
        for creg in circuit.cregs:
            if creg.name == register.name:
                raise ValueError(
                    "Classical register for measurements conflict with those of the input "
                    f"circuit: {register}. Avoid register names starting with '__'."
                )
        measured = circuit.copy()
        measured.add_register(register)
        measured.compose(basis.circuit, clbits=register, inplace=True)
        out.append(
            _Measurement(
                circuit=measured,
                param_index=param_index,
                labels=basis.labels,
                diagonal=basis.diagonal,
                width=basis.width,
                support=basis.support,
            )
        )
    return out


def _expvals(counts: dict[str, int], m: _Measurement) -> list[tuple[str, float, float]]:
    """Expectation value and single-shot variance of each Pauli of ``m`` from its counts.

    Only the measurement register (the leftmost ``width`` bits of each key) matters; the
    circuit's own registers, if any, are summed over.
    """
    marginal: dict[str, int] = defaultdict(int)
    for key, n in counts.items():
        marginal[key.replace(" ", "")[: m.width]] += n
    out = []
    for label, diag in zip(m.labels, m.diagonal, strict=True):
        ev = float(sampled_expectation_value(marginal, diag))
        out.append((label, ev, 1.0 - ev * ev))
    return out


@dataclasses.dataclass(slots=True)
class _SampledPub:
    pub: Any
    shots: int
    param_indices: np.ndarray
    observables: np.ndarray
    measurements: list[_Measurement]


@dataclasses.dataclass(slots=True)
class _EstimatorWork:
    """A job's tasks, built before any is submitted."""

    exact_indices: list[int] = dataclasses.field(default_factory=list)
    exact_task: Any = None
    sampled: list[tuple[int, _SampledPub, list[Any]]] = dataclasses.field(default_factory=list)


def _exact_pubs(pubs: list[Any], seed: Seed) -> list[Any]:
    """Run a job's exact PUBs on Qiskit's reference StatevectorEstimator, in one call (on a
    worker thread), so that its seed is used as StatevectorEstimator uses it."""
    return list(StatevectorEstimator(seed=seed).run(pubs).result())


class SchedulerEstimator(BaseEstimatorV2):  # type: ignore[misc]
    """Qiskit's ``BaseEstimatorV2`` on top of the scheduler.

    Every measurement circuit of a job becomes a quantum task with the estimator's priority
    (and backend, if pinned); all are submitted together so that they batch. See the module
    documentation for options, seeds, precision, exact values and threads.

    Example (synchronous code)::

        with BlockingScheduler() as bs:
            bs.call(lambda s: s.register_backend("aer", AerSimulator()))
            estimator = SchedulerEstimator(bs, backend="aer")
            evs = estimator.run([(ansatz, hamiltonian, params)]).result()[0].data.evs

    Args:
        scheduler: A started :class:`~logosq_os_scheduler.QuantumScheduler`, or a
            :class:`~logosq_os_scheduler.BlockingScheduler`.
        default_precision: Precision of PUBs that set none; ``0`` means exact. Overrides
            ``options``' field when given.
        backend: Pin every circuit to this backend (default: the routing rules decide).
        priority: Priority of the estimator's tasks.
        seed: Seed of the job's randomness (``StatevectorEstimator``'s ``seed``).
        abelian_grouping: Overrides ``options``' field when given.
        options: A :class:`SchedulerEstimatorOptions` or a dict of its fields (as
            ``BackendEstimatorV2`` takes them).

    Raises:
        TypeError: If ``scheduler`` is not a scheduler, or ``options`` has an unknown field.
        ValueError: If ``default_precision`` is negative.
    """

    def __init__(
        self,
        scheduler: QuantumScheduler | BlockingScheduler,
        *,
        default_precision: float | None = None,
        backend: str | None = None,
        priority: TaskPriority = TaskPriority.NORMAL,
        seed: Seed = None,
        abelian_grouping: bool | None = None,
        options: SchedulerEstimatorOptions | Mapping[str, Any] | None = None,
    ) -> None:
        opts: SchedulerEstimatorOptions = _options_of(SchedulerEstimatorOptions, options)
        if default_precision is not None:
            opts.default_precision = default_precision
        if abelian_grouping is not None:
            opts.abelian_grouping = bool(abelian_grouping)
        precision = opts.default_precision
        if not isinstance(precision, (int, float)) or precision < 0:
            raise ValueError(f"default_precision must be >= 0, got {precision!r}")
        opts.default_precision = float(precision)
        self._scheduler = _as_scheduler(scheduler)
        self._options = opts
        self._backend = backend
        self._priority = priority
        self._seed = seed

    @property
    def options(self) -> SchedulerEstimatorOptions:
        """The options (mutable, read at every ``run()``), as ``BackendEstimatorV2.options``."""
        return self._options

    @property
    def default_precision(self) -> float:
        """The precision of PUBs that set none (0: exact)."""
        return float(self._options.default_precision)

    @property
    def abelian_grouping(self) -> bool:
        """Whether qubit-wise commuting Paulis are measured together."""
        return bool(self._options.abelian_grouping)

    @abelian_grouping.setter
    def abelian_grouping(self, value: bool) -> None:
        self._options.abelian_grouping = bool(value)

    @property
    def backend(self) -> str | None:
        """The backend the circuits are pinned to, or None."""
        return self._backend

    @property
    def priority(self) -> TaskPriority:
        """The priority of the estimator's tasks."""
        return self._priority

    @property
    def seed(self) -> Seed:
        """The seed of the job's randomness."""
        return self._seed

    def _coerce(self, pubs: Iterable[Any], precision: float | None) -> list[Any]:
        if precision is None:
            precision = self._options.default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        if self._backend is not None:
            for i, pub in enumerate(coerced):
                if pub.precision <= 0.0:
                    # BackendEstimatorV2's refusal: a backend can only estimate from shots.
                    raise ValueError(
                        f"The {i}-th pub has precision less than or equal to 0 "
                        f"({pub.precision}). But precision should be larger than 0. (This "
                        f"estimator is pinned to backend {self._backend!r}, which estimates "
                        "from shots; an unpinned estimator computes exact values.)"
                    )
        _checked_run_options(self._options.run_options)
        return coerced

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> SchedulerPrimitiveJob:
        """Estimate expectation values of PUBs ``(circuit, observables[, parameter values
        [, precision]])``; returns a job at once.

        Raises:
            ValueError, TypeError: If a PUB is malformed (as Qiskit's primitives raise), or
                a precision is 0 on an estimator pinned to a backend.
            QiskitError: If ``options.run_options`` asks for a ``meas_level`` other than 2.
            SchedulerError: If the scheduler has not started.
        """
        coerced = self._coerce(pubs, precision)
        return _start_job(self._scheduler, self._execute(coerced, None))

    async def arun(
        self, pubs: Iterable[Any], *, precision: float | None = None
    ) -> PrimitiveResult[PubResult]:
        """:meth:`run` for coroutines on the scheduler's loop: returns the result."""
        return await self._execute(self._coerce(pubs, precision), None)

    async def _execute(
        self, pubs: list[Any], task_ids: list[int] | None, shots: int | None = None
    ) -> PrimitiveResult[PubResult]:
        """Submit every task of every PUB, then wait.

        ``task_ids`` collects the ids of the tasks; ``shots``, if given, replaces
        ``ceil(1 / precision**2)`` as the shots of sampled PUBs (for callers that think in
        shots, where the round trip through a precision could add one).
        """
        # Build every circuit first, then submit them all in one burst: the scheduler holds
        # a partial batch only for batch_window from its first circuit, so circuits built
        # between submissions could miss the batch.
        if _bindings(pubs) >= _OFFLOAD_BINDINGS:
            work = await asyncio.to_thread(self._prepare, pubs, shots)
        else:
            work = self._prepare(pubs, shots)
        submitted: list[TaskHandle[Any]] = []
        try:
            exact_handle = (
                self._submit(work.exact_task, submitted, task_ids)
                if work.exact_task is not None
                else None
            )
            handles = [
                [self._submit(b, submitted, task_ids) for b in builders]
                for _, _, builders in work.sampled
            ]
            # The job's circuits are all in: send them without waiting out the batch window.
            self._scheduler.flush_batches()
            results: list[Any] = [None] * len(pubs)
            for (i, plan, _), pub_handles in zip(work.sampled, handles, strict=True):
                results[i] = self._postprocess(plan, await await_all(pub_handles))
            if exact_handle is not None:
                exact = (await await_all([exact_handle]))[0]
                for i, result in zip(work.exact_indices, exact, strict=True):
                    results[i] = result
        except BaseException:
            for h in submitted:
                if not h.done():
                    h.cancel()
            raise
        return PrimitiveResult(results, metadata={"version": 2})

    def _submit(
        self, builder: Any, submitted: list[TaskHandle[Any]], task_ids: list[int] | None
    ) -> TaskHandle[Any]:
        handle: TaskHandle[Any] = self._scheduler.submit_nowait(builder)
        submitted.append(handle)
        if task_ids is not None:
            task_ids.append(handle.task_id)
        return handle

    def _prepare(self, pubs: list[Any], shots: int | None) -> _EstimatorWork:
        """The job's tasks: one classical task for all exact PUBs, and for each sampled PUB
        its measurement plan and one quantum task per measurement circuit."""
        opts = self._options
        run_options = _checked_run_options(opts.run_options)
        work = _EstimatorWork()
        exact = [(i, pub) for i, pub in enumerate(pubs) if pub.precision == 0]
        if exact:
            work.exact_indices = [i for i, _ in exact]
            # A Generator seed is shared (it advances, as StatevectorEstimator's does); an
            # int seed gives the exact values StatevectorEstimator(seed) gives.
            work.exact_task = (
                Task.classical("estimator.exact")
                .with_function(_exact_pubs, [pub for _, pub in exact], self._seed)
                .with_priority(self._priority)
            )
        base = None
        if self._seed is not None or opts.seed_simulator is not None:
            # Only a seeded job draws from its randomness (an unseeded one makes no generator:
            # one from fresh entropy costs tens of microseconds, at every optimiser step).
            base = _seed_base(
                self._seed, opts.seed_simulator, _job_rng(self._seed, opts.seed_simulator)
            )
        restart = _reseed(self._seed, opts.seed_simulator) is not None
        needs: dict[tuple[int, tuple[int, ...]], CircuitRequirements] = {}
        k = 0
        for i, pub in enumerate(pubs):
            if pub.precision == 0:
                continue
            if restart:
                k = 0
            plan = self._plan(pub, shots, bool(opts.abelian_grouping))
            builders = []
            for j, m in enumerate(plan.measurements):
                builder = (
                    Task.quantum(f"estimator[{i}].{j}")
                    .with_circuit(m.circuit)
                    .with_shots(plan.shots)
                    .with_priority(self._priority)
                )
                if self._backend is not None:
                    builder = builder.with_backend(self._backend)
                builder._requirements = _needs(needs, (id(pub.circuit), m.support), m.circuit)
                builders.append(_with_run_options(builder, run_options, base, k))
                k += 1
            work.sampled.append((i, plan, builders))
        return work

    @staticmethod
    def _plan(pub: Any, shots: int | None, grouping: bool = True) -> _SampledPub:
        """Bind and measure, as Qiskit's BackendEstimatorV2 preprocesses a PUB."""
        if shots is None:
            shots = math.ceil(1.0 / pub.precision**2)
        parameter_values = pub.parameter_values
        param_shape = parameter_values.shape
        param_indices = np.fromiter(np.ndindex(param_shape), dtype=object).reshape(param_shape)
        bc_param_ind, bc_obs = np.broadcast_arrays(param_indices, pub.observables)
        needed: dict[tuple[int, ...], set[str]] = defaultdict(set)
        for index in np.ndindex(*bc_param_ind.shape):
            needed[tuple(bc_param_ind[index])].update(bc_obs[index])
        measurements: list[_Measurement] = []
        for param_index, labels in needed.items():
            bound = parameter_values.bind(pub.circuit, param_index)
            measurements.extend(_measurements_for(bound, param_index, labels, grouping))
        return _SampledPub(pub, shots, bc_param_ind, bc_obs, measurements)

    @staticmethod
    def _postprocess(plan: _SampledPub, counts: list[dict[str, int]]) -> PubResult:
        expval: dict[tuple[tuple[int, ...], str], tuple[float, float]] = {}
        for m, c in zip(plan.measurements, counts, strict=True):
            for label, ev, var in _expvals(c, m):
                expval[m.param_index, label] = (ev, var)
        shape = plan.param_indices.shape
        evs = np.zeros(shape, dtype=float)
        spread = np.zeros(shape, dtype=float)
        for index in np.ndindex(*shape):
            param_index = tuple(plan.param_indices[index])
            observable = cast("dict[str, float]", plan.observables[index])
            for label, coeff in observable.items():
                ev, var = expval[param_index, label]
                evs[index] += ev * coeff
                spread[index] += abs(coeff) * math.sqrt(max(var, 0.0))
        stds = spread / math.sqrt(plan.shots)
        return PubResult(
            DataBin(evs=evs, stds=stds, shape=evs.shape),
            metadata={
                "target_precision": plan.pub.precision,
                "shots": plan.shots,
                "circuit_metadata": plan.pub.circuit.metadata,
            },
        )


# --- the sampler ----------------------------------------------------------------------------


class SchedulerSampler(BaseSamplerV2):  # type: ignore[misc]
    """Qiskit's ``BaseSamplerV2`` on top of the scheduler.

    Each bound circuit of a job (every parameter set of every PUB) becomes one quantum task
    with the sampler's priority; all are submitted together so that they batch. Results hold
    one ``BitArray`` per classical register, shaped as the PUB; see the module documentation
    for options, seeds, threads and shot order.

    Args:
        scheduler: A started QuantumScheduler, or a BlockingScheduler.
        default_shots: Shots of PUBs that set none. Overrides ``options``' field when given.
        backend: Pin every circuit to this backend (default: the routing rules decide).
        priority: Priority of the sampler's tasks.
        seed: Seed of the job's randomness (``StatevectorSampler``'s ``seed``): the shot
            order and, unless ``options.seed_simulator`` is set, the simulator seeds.
        options: A :class:`SchedulerSamplerOptions` or a dict of its fields (as
            ``BackendSamplerV2`` takes them).

    Raises:
        TypeError: If ``scheduler`` is not a scheduler, or ``options`` has an unknown field.
        ValueError: If ``default_shots`` is not positive.
    """

    def __init__(
        self,
        scheduler: QuantumScheduler | BlockingScheduler,
        *,
        default_shots: int | None = None,
        backend: str | None = None,
        priority: TaskPriority = TaskPriority.NORMAL,
        seed: Seed = None,
        options: SchedulerSamplerOptions | Mapping[str, Any] | None = None,
    ) -> None:
        opts: SchedulerSamplerOptions = _options_of(SchedulerSamplerOptions, options)
        if default_shots is not None:
            opts.default_shots = default_shots
        shots = opts.default_shots
        if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
            raise ValueError(f"default_shots must be a positive integer, got {shots!r}")
        self._scheduler = _as_scheduler(scheduler)
        self._options = opts
        self._backend = backend
        self._priority = priority
        self._seed = seed

    @property
    def options(self) -> SchedulerSamplerOptions:
        """The options (mutable, read at every ``run()``), as ``BackendSamplerV2.options``."""
        return self._options

    @property
    def default_shots(self) -> int:
        """Shots of PUBs that set none."""
        return int(self._options.default_shots)

    @property
    def backend(self) -> str | None:
        """The backend the circuits are pinned to, or None."""
        return self._backend

    @property
    def priority(self) -> TaskPriority:
        """The priority of the sampler's tasks."""
        return self._priority

    @property
    def seed(self) -> Seed:
        """The seed of the job's randomness."""
        return self._seed

    def _coerce(self, pubs: Iterable[Any], shots: int | None) -> list[Any]:
        if shots is None:
            shots = self._options.default_shots
        coerced = [SamplerPub.coerce(pub, shots) for pub in pubs]
        _checked_run_options(self._options.run_options)
        for i, pub in enumerate(coerced):
            if len(pub.circuit.cregs) == 0:
                warnings.warn(
                    f"The {i}-th pub's circuit has no output classical registers and so the "
                    "result will be empty. Did you mean to add measurement instructions?",
                    UserWarning,
                    stacklevel=3,
                )
        return coerced

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> SchedulerPrimitiveJob:
        """Sample PUBs ``(circuit[, parameter values[, shots]])``; returns a job at once.

        Raises:
            ValueError, TypeError: If a PUB is malformed (as Qiskit's primitives raise).
            QiskitError: If ``options.run_options`` asks for a ``meas_level`` other than 2.
            SchedulerError: If the scheduler has not started.
        """
        coerced = self._coerce(pubs, shots)
        return _start_job(self._scheduler, self._execute(coerced, None))

    async def arun(
        self, pubs: Iterable[Any], *, shots: int | None = None
    ) -> PrimitiveResult[SamplerPubResult]:
        """:meth:`run` for coroutines on the scheduler's loop: returns the result."""
        return await self._execute(self._coerce(pubs, shots), None)

    async def _execute(
        self, pubs: list[Any], task_ids: list[int] | None
    ) -> PrimitiveResult[SamplerPubResult]:
        rng = _job_rng(self._seed, self._options.seed_simulator)
        # Bind everything first, then submit in one burst (see SchedulerEstimator._execute).
        if _bindings(pubs) >= _OFFLOAD_BINDINGS:
            work = await asyncio.to_thread(self._prepare, pubs, rng)
        else:
            work = self._prepare(pubs, rng)
        submitted: list[TaskHandle[Any]] = []
        try:
            handles = []
            for _, _, builders in work:
                pub_handles = []
                for builder in builders:
                    handle: TaskHandle[Any] = self._scheduler.submit_nowait(builder)
                    submitted.append(handle)
                    pub_handles.append(handle)
                    if task_ids is not None:
                        task_ids.append(handle.task_id)
                handles.append(pub_handles)
            self._scheduler.flush_batches()  # all in: see SchedulerEstimator._execute
            results = []
            # An int seed re-seeds every bound circuit: each shuffles its shots alike.
            reseed = _reseed(self._seed, self._options.seed_simulator)
            for (pub, shape, _), pub_handles in zip(work, handles, strict=True):
                if pub_handles:
                    counts = await await_all(pub_handles)
                else:
                    size = math.prod(shape)
                    counts = [{"0" * pub.circuit.num_clbits: pub.shots}] * size
                results.append(self._postprocess(pub, shape, counts, rng, reseed=reseed))
        except BaseException:
            for h in submitted:
                if not h.done():
                    h.cancel()
            raise
        return PrimitiveResult(results, metadata={"version": 2})

    def _prepare(
        self, pubs: list[Any], rng: np.random.Generator
    ) -> list[tuple[Any, tuple[int, ...], list[Any]]]:
        """For each PUB: the PUB, its shape, and a task builder per bound circuit."""
        opts = self._options
        run_options = _checked_run_options(opts.run_options)
        base = _seed_base(self._seed, opts.seed_simulator, rng)
        work: list[tuple[Any, tuple[int, ...], list[Any]]] = []
        # An int seed seeds every bound circuit alike, as StatevectorSampler(seed) does.
        same = _reseed(self._seed, opts.seed_simulator) is not None
        needs: dict[tuple[int, tuple[int, ...]], CircuitRequirements] = {}
        k = 0
        for i, pub in enumerate(pubs):
            bound = pub.parameter_values.bind_all(pub.circuit)
            builders = []
            # A circuit whose classical bits nothing writes reads all zeros (Qiskit's
            # reference samplers say so too); backends give no counts for it at all.
            if pub.circuit.cregs and any(inst.clbits for inst in pub.circuit.data):
                for j, circuit in enumerate(bound.ravel()):
                    builder = (
                        Task.quantum(f"sampler[{i}].{j}")
                        .with_circuit(circuit)
                        .with_shots(pub.shots)
                        .with_priority(self._priority)
                    )
                    if self._backend is not None:
                        builder = builder.with_backend(self._backend)
                    builder._requirements = _needs(needs, (id(pub.circuit), ()), circuit)
                    builders.append(_with_run_options(builder, run_options, base, k))
                    k += 0 if same else 1
            work.append((pub, tuple(bound.shape), builders))
        return work

    @staticmethod
    def _postprocess(
        pub: Any,
        shape: tuple[int, ...],
        counts: list[dict[str, int]],
        rng: np.random.Generator,
        *,
        reseed: int | None = None,
    ) -> SamplerPubResult:
        """The PUB's result from its circuits' counts, each circuit's shots in a random
        order drawn from ``rng``, or, given ``reseed`` (the sampler's int seed), from the
        job's first state again for every circuit."""
        circuit = pub.circuit
        num_clbits = circuit.num_clbits
        meas: dict[str, BitArray] = {}
        if circuit.cregs:
            # All registers are cut from one array of whole shots, so the joint statistics
            # across registers are those measured.
            rows = []
            # Re-seeded, every circuit of the PUB draws the same order: drawn once per size.
            reseeded: dict[int, np.ndarray] = {}
            for c in counts:
                samples = BitArray.from_counts(
                    {key.replace(" ", ""): n for key, n in c.items()}, num_clbits
                )
                n = samples.num_shots
                if reseed is None:
                    order = rng.permutation(n)
                elif n in reseeded:
                    order = reseeded[n]
                else:
                    fresh = _job_rng(reseed, None)
                    _seed_base(reseed, None, fresh)  # past the seed draw, as the job's is
                    order = reseeded[n] = fresh.permutation(n)
                rows.append(samples.array[order])
            whole = BitArray(np.stack(rows).reshape(*shape, pub.shots, -1), num_clbits)
            for creg in circuit.cregs:
                indices = [circuit.find_bit(bit).index for bit in creg]
                if indices:
                    meas[creg.name] = whole.slice_bits(indices)
                else:
                    meas[creg.name] = BitArray(np.zeros((*shape, pub.shots, 0), dtype=np.uint8), 0)
        return SamplerPubResult(
            DataBin(**meas, shape=shape),
            metadata={"shots": pub.shots, "circuit_metadata": circuit.metadata},
        )
