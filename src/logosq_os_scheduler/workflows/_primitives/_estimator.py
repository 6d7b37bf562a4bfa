"""SchedulerEstimator: Qiskit's ``BaseEstimatorV2`` on the scheduler.

See the package documentation (Estimator precision) for sampled and exact PUBs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from qiskit.primitives import BaseEstimatorV2, PrimitiveResult, PubResult, StatevectorEstimator
from qiskit.primitives.containers import DataBin
from qiskit.primitives.containers.estimator_pub import EstimatorPub

from ..._task import Task, TaskPriority, transient
from ...backends._base import CircuitRequirements
from ._job import SchedulerPrimitiveJob, as_scheduler, await_all, start_job
from ._measurements import Measurement, expvals, measurements_for
from ._options import SchedulerEstimatorOptions, checked_run_options, options_of
from ._pubs import OFFLOAD_BINDINGS, count_bindings, requirements_of
from ._seeds import Seed, job_rng, reseed_of, seed_base, with_run_options

if TYPE_CHECKING:
    from ..._handle import TaskHandle
    from ..._protocols import BlockingRuntime, WorkflowRuntime

__all__ = ["SampledPub", "SchedulerEstimator", "plan_pub", "pub_result"]


@dataclasses.dataclass(slots=True)
class SampledPub:
    """How one sampled PUB is measured: its shots, the broadcast parameter indices and
    observables, and one measurement circuit per parameter set and basis."""

    pub: Any
    shots: int
    param_indices: np.ndarray
    observables: np.ndarray
    measurements: list[Measurement]


@dataclasses.dataclass(slots=True)
class _EstimatorWork:
    """A job's tasks, built before any is submitted."""

    exact_indices: list[int] = dataclasses.field(default_factory=list)
    exact_task: Any = None
    sampled: list[tuple[int, SampledPub, list[Any]]] = dataclasses.field(default_factory=list)


def _exact_pubs(pubs: list[Any], seed: Seed) -> list[Any]:
    """Run a job's exact PUBs on Qiskit's reference StatevectorEstimator, in one call (on a
    worker thread), so that its seed is used as StatevectorEstimator uses it."""
    return list(StatevectorEstimator(seed=seed).run(pubs).result())


class SchedulerEstimator(BaseEstimatorV2):  # type: ignore[misc]
    """Qiskit's ``BaseEstimatorV2`` on top of the scheduler.

    Every measurement circuit of a job becomes a quantum task with the estimator's priority
    (and backend, if pinned); all are submitted together so that they batch. See the package
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
        scheduler: WorkflowRuntime | BlockingRuntime,
        *,
        default_precision: float | None = None,
        backend: str | None = None,
        priority: TaskPriority = TaskPriority.NORMAL,
        seed: Seed = None,
        abelian_grouping: bool | None = None,
        options: SchedulerEstimatorOptions | Mapping[str, Any] | None = None,
    ) -> None:
        opts: SchedulerEstimatorOptions = options_of(SchedulerEstimatorOptions, options)
        if default_precision is not None:
            opts.default_precision = default_precision
        if abelian_grouping is not None:
            opts.abelian_grouping = bool(abelian_grouping)
        precision = opts.default_precision
        if not isinstance(precision, (int, float)) or precision < 0:
            raise ValueError(f"default_precision must be >= 0, got {precision!r}")
        opts.default_precision = float(precision)
        self._scheduler = as_scheduler(scheduler)
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
        checked_run_options(self._options.run_options)
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
        return start_job(self._scheduler, self._execute(coerced, None))

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
        if count_bindings(pubs) >= OFFLOAD_BINDINGS:
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
                results[i] = pub_result(plan, await await_all(pub_handles))
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
        handle: TaskHandle[Any] = self._scheduler.submit_nowait(transient(builder))
        submitted.append(handle)
        if task_ids is not None:
            task_ids.append(handle.task_id)
        return handle

    def _prepare(self, pubs: list[Any], shots: int | None) -> _EstimatorWork:
        """The job's tasks: one classical task for all exact PUBs, and for each sampled PUB
        its measurement plan and one quantum task per measurement circuit."""
        opts = self._options
        run_options = checked_run_options(opts.run_options)
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
            # one from fresh entropy is not free, and this runs at every optimiser step).
            base = seed_base(
                self._seed, opts.seed_simulator, job_rng(self._seed, opts.seed_simulator)
            )
        restart = reseed_of(self._seed, opts.seed_simulator) is not None
        needs: dict[tuple[int, tuple[int, ...]], CircuitRequirements] = {}
        k = 0
        for i, pub in enumerate(pubs):
            if pub.precision == 0:
                continue
            if restart:
                k = 0
            plan = plan_pub(pub, shots, bool(opts.abelian_grouping))
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
                builder._requirements = requirements_of(
                    needs, (id(pub.circuit), m.support), m.circuit
                )
                builders.append(with_run_options(builder, run_options, base, k))
                k += 1
            work.sampled.append((i, plan, builders))
        return work


def plan_pub(pub: Any, shots: int | None, grouping: bool = True) -> SampledPub:
    """A sampled PUB's measurement plan: every parameter set bound and measured in each
    basis its observables need, as Qiskit's BackendEstimatorV2 preprocesses a PUB. Shared
    with the client's RemoteEstimator."""
    if shots is None:
        shots = math.ceil(1.0 / pub.precision**2)
    parameter_values = pub.parameter_values
    param_shape = parameter_values.shape
    param_indices = np.fromiter(np.ndindex(param_shape), dtype=object).reshape(param_shape)
    bc_param_ind, bc_obs = np.broadcast_arrays(param_indices, pub.observables)
    needed: dict[tuple[int, ...], set[str]] = defaultdict(set)
    for index in np.ndindex(*bc_param_ind.shape):
        needed[tuple(bc_param_ind[index])].update(bc_obs[index])
    measurements: list[Measurement] = []
    for param_index, labels in needed.items():
        bound = parameter_values.bind(pub.circuit, param_index)
        measurements.extend(measurements_for(bound, param_index, labels, grouping))
    return SampledPub(pub, shots, bc_param_ind, bc_obs, measurements)


def pub_result(plan: SampledPub, counts: list[dict[str, int]]) -> PubResult:
    """A sampled PUB's result from the counts of its plan's measurements, in order."""
    expval: dict[tuple[tuple[int, ...], str], tuple[float, float]] = {}
    for m, c in zip(plan.measurements, counts, strict=True):
        for label, ev, var in expvals(c, m):
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
