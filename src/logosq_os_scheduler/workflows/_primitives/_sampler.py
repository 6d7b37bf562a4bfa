"""SchedulerSampler: Qiskit's ``BaseSamplerV2`` on the scheduler.

See the package documentation (Sampler shot order) for how counts become a ``BitArray``.
"""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from qiskit.primitives import BaseSamplerV2, PrimitiveResult, SamplerPubResult
from qiskit.primitives.containers import BitArray, DataBin
from qiskit.primitives.containers.sampler_pub import SamplerPub

from ..._task import Task, TaskPriority, transient
from ...backends._base import CircuitRequirements
from ._job import SchedulerPrimitiveJob, as_scheduler, await_all, start_job
from ._options import SchedulerSamplerOptions, checked_run_options, options_of
from ._pubs import OFFLOAD_BINDINGS, count_bindings, requirements_of
from ._seeds import Seed, job_rng, reseed_of, seed_base, with_run_options

if TYPE_CHECKING:
    from ..._handle import TaskHandle
    from ..._protocols import BlockingRuntime, WorkflowRuntime

__all__ = ["SchedulerSampler", "sampler_pub_result"]


class SchedulerSampler(BaseSamplerV2):  # type: ignore[misc]
    """Qiskit's ``BaseSamplerV2`` on top of the scheduler.

    Each bound circuit of a job (every parameter set of every PUB) becomes one quantum task
    with the sampler's priority; all are submitted together so that they batch. Results hold
    one ``BitArray`` per classical register, shaped as the PUB; see the package documentation
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
        scheduler: WorkflowRuntime | BlockingRuntime,
        *,
        default_shots: int | None = None,
        backend: str | None = None,
        priority: TaskPriority = TaskPriority.NORMAL,
        seed: Seed = None,
        options: SchedulerSamplerOptions | Mapping[str, Any] | None = None,
    ) -> None:
        opts: SchedulerSamplerOptions = options_of(SchedulerSamplerOptions, options)
        if default_shots is not None:
            opts.default_shots = default_shots
        shots = opts.default_shots
        if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
            raise ValueError(f"default_shots must be a positive integer, got {shots!r}")
        self._scheduler = as_scheduler(scheduler)
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
        checked_run_options(self._options.run_options)
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
        return start_job(self._scheduler, self._execute(coerced, None))

    async def arun(
        self, pubs: Iterable[Any], *, shots: int | None = None
    ) -> PrimitiveResult[SamplerPubResult]:
        """:meth:`run` for coroutines on the scheduler's loop: returns the result."""
        return await self._execute(self._coerce(pubs, shots), None)

    async def _execute(
        self, pubs: list[Any], task_ids: list[int] | None
    ) -> PrimitiveResult[SamplerPubResult]:
        rng = job_rng(self._seed, self._options.seed_simulator)
        # Bind everything first, then submit in one burst (see SchedulerEstimator._execute).
        if count_bindings(pubs) >= OFFLOAD_BINDINGS:
            work = await asyncio.to_thread(self._prepare, pubs, rng)
        else:
            work = self._prepare(pubs, rng)
        submitted: list[TaskHandle[Any]] = []
        try:
            handles = []
            for _, _, builders in work:
                pub_handles = []
                for builder in builders:
                    handle: TaskHandle[Any] = self._scheduler.submit_nowait(transient(builder))
                    submitted.append(handle)
                    pub_handles.append(handle)
                    if task_ids is not None:
                        task_ids.append(handle.task_id)
                handles.append(pub_handles)
            self._scheduler.flush_batches()  # all in: see SchedulerEstimator._execute
            results = []
            # An int seed re-seeds every bound circuit: each shuffles its shots alike.
            reseed = reseed_of(self._seed, self._options.seed_simulator)
            for (pub, shape, _), pub_handles in zip(work, handles, strict=True):
                if pub_handles:
                    counts = await await_all(pub_handles)
                else:
                    size = math.prod(shape)
                    counts = [{"0" * pub.circuit.num_clbits: pub.shots}] * size
                results.append(sampler_pub_result(pub, shape, counts, rng, reseed=reseed))
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
        run_options = checked_run_options(opts.run_options)
        base = seed_base(self._seed, opts.seed_simulator, rng)
        work: list[tuple[Any, tuple[int, ...], list[Any]]] = []
        # An int seed seeds every bound circuit alike, as StatevectorSampler(seed) does.
        same = reseed_of(self._seed, opts.seed_simulator) is not None
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
                    builder._requirements = requirements_of(needs, (id(pub.circuit), ()), circuit)
                    builders.append(with_run_options(builder, run_options, base, k))
                    k += 0 if same else 1
            work.append((pub, tuple(bound.shape), builders))
        return work


def sampler_pub_result(
    pub: Any,
    shape: tuple[int, ...],
    counts: list[dict[str, int]],
    rng: np.random.Generator,
    *,
    reseed: int | None = None,
) -> SamplerPubResult:
    """The PUB's result from its circuits' counts, each circuit's shots in a random order
    drawn from ``rng``, or, given ``reseed`` (the sampler's int seed), from the job's first
    state again for every circuit. Shared with the client's RemoteSampler."""
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
                fresh = job_rng(reseed, None)
                seed_base(reseed, None, fresh)  # past the seed draw, as the job's is
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
