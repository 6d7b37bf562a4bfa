"""RemoteSampler and RemoteEstimator: Qiskit's V2 primitives, run by a scheduler service.

They are the local :class:`~logosq_os_scheduler.workflows.SchedulerSampler` and
:class:`~logosq_os_scheduler.workflows.SchedulerEstimator` with a server in place of the
scheduler, and share their logic: a job's PUBs are coerced as Qiskit coerces them, every
bound circuit (for the estimator, measured in each Pauli basis its observables need:
``plan_pub``) becomes one circuit task, the job's tasks go to the server in batch requests,
and the counts come back into Qiskit's containers (``pub_result``, ``sampler_pub_result``).
So code written for Qiskit's primitives (qiskit-algorithms' VQE, for instance) runs against
a server unchanged.

A server estimates from shots only: a PUB with ``precision == 0`` is refused with the
``ValueError`` of Qiskit's ``BackendEstimatorV2``. ``seed_simulator`` (and ``seed``) reach
the server as each circuit's ``run_options``, as the local primitives give them.

``run()`` returns a :class:`~logosq_os_scheduler.workflows.SchedulerPrimitiveJob` whose work
runs on the client's event loop: with a :class:`BlockingSchedulerClient`, from any thread
(``job.result()`` blocks); with a :class:`SchedulerClient`, ``await job`` on its loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
)
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.primitives.containers.sampler_pub import SamplerPub

from .._errors import SchedulerError, ServiceError
from .._task import Task, TaskPriority
from ..workflows._primitives._estimator import SampledPub, plan_pub, pub_result
from ..workflows._primitives._job import SchedulerPrimitiveJob
from ..workflows._primitives._options import (
    SchedulerEstimatorOptions,
    SchedulerSamplerOptions,
    checked_run_options,
    options_of,
)
from ..workflows._primitives._sampler import sampler_pub_result
from ..workflows._primitives._seeds import Seed, job_rng, reseed_of, seed_base, with_run_options
from ._blocking import BlockingSchedulerClient
from ._client import RemoteTaskHandle, SchedulerClient
from ._wire import TaskRequest

__all__ = ["RemoteEstimator", "RemoteSampler"]


def _async_client(client: SchedulerClient | BlockingSchedulerClient) -> SchedulerClient:
    if isinstance(client, BlockingSchedulerClient):
        return client.client
    if isinstance(client, SchedulerClient):
        return client
    raise TypeError(
        f"expected a SchedulerClient or BlockingSchedulerClient, got {type(client).__name__}"
    )


def _start(client: SchedulerClient | BlockingSchedulerClient, work: Any) -> SchedulerPrimitiveJob:
    """The job that runs ``work`` (a coroutine) on the client's loop."""
    loop = client.loop if isinstance(client, BlockingSchedulerClient) else client._loop
    if loop is None:
        work.close()
        raise SchedulerError(
            "the client has not run yet: use it in `async with SchedulerClient(...)` first, "
            "or give the primitive a BlockingSchedulerClient from synchronous code"
        )
    return SchedulerPrimitiveJob(loop, work)


async def _values(client: SchedulerClient, requests: list[TaskRequest]) -> list[Any]:
    """Submit a job's tasks and return their values, in order.

    If one fails, or the job is cancelled, the tasks still running are cancelled on the
    server before the error propagates: nothing outlives the job. A cancel that comes while
    the batch is on its way lets the submit finish first (its tasks may be on the server
    already), then cancels what it made.
    """
    submit = asyncio.ensure_future(client.submit_many(requests))
    try:
        handles = await asyncio.shield(submit)
    except asyncio.CancelledError:
        with contextlib.suppress(SchedulerError):
            await _cancel_all(await submit)
        raise
    try:
        return [(await h.result()).value for h in handles]
    except BaseException:
        await _cancel_all(handles)
        raise


async def _cancel_all(handles: Sequence[RemoteTaskHandle]) -> None:
    for h in handles:
        if not h.done():
            # Best effort: the first error is the one to report.
            with contextlib.suppress(ServiceError):
                await h.cancel()


class RemoteSampler(BaseSamplerV2):  # type: ignore[misc]
    """Qiskit's ``BaseSamplerV2`` run by a scheduler service.

    Each bound circuit of a job becomes one circuit task with the sampler's priority (and
    backend, if pinned); a job's tasks are sent in batch requests. Options and seeds as for
    :class:`~logosq_os_scheduler.workflows.SchedulerSampler`.

    Args:
        client: A :class:`BlockingSchedulerClient`, or a :class:`SchedulerClient` that has
            run on its loop.
        default_shots: Shots of PUBs that set none. Overrides ``options``' field when given.
        backend: Pin every circuit to this backend of the server.
        priority: Priority of the sampler's tasks.
        seed: Seed of the job's randomness (the shot order; the simulator seeds unless
            ``options.seed_simulator`` is set).
        options: A ``SchedulerSamplerOptions`` or a dict of its fields.

    Raises:
        TypeError: If ``client`` is not a client, or ``options`` has an unknown field.
        ValueError: If ``default_shots`` is not positive.
    """

    def __init__(
        self,
        client: SchedulerClient | BlockingSchedulerClient,
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
        _async_client(client)
        self._client = client
        self._options = opts
        self._backend = backend
        self._priority = priority
        self._seed = seed

    @property
    def options(self) -> SchedulerSamplerOptions:
        """The options (mutable, read at every ``run()``)."""
        return self._options

    def run(self, pubs: Iterable[Any], *, shots: int | None = None) -> SchedulerPrimitiveJob:
        """Sample PUBs ``(circuit[, parameter values[, shots]])``; returns a job at once.

        Raises:
            ValueError, TypeError: If a PUB is malformed (as Qiskit's primitives raise).
            SchedulerError: If the client has not run on its loop yet.
        """
        return _start(self._client, self._execute(self._coerce(pubs, shots)))

    async def arun(
        self, pubs: Iterable[Any], *, shots: int | None = None
    ) -> PrimitiveResult[SamplerPubResult]:
        """:meth:`run` for coroutines on the client's loop: returns the result."""
        return await self._execute(self._coerce(pubs, shots))

    def _coerce(self, pubs: Iterable[Any], shots: int | None) -> list[Any]:
        coerced = [SamplerPub.coerce(pub, shots or self._options.default_shots) for pub in pubs]
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

    async def _execute(self, pubs: list[Any]) -> PrimitiveResult[SamplerPubResult]:
        opts = self._options
        rng = job_rng(self._seed, opts.seed_simulator)
        run_options = checked_run_options(opts.run_options)
        base = seed_base(self._seed, opts.seed_simulator, rng)
        same = reseed_of(self._seed, opts.seed_simulator) is not None
        requests: list[TaskRequest] = []
        plan: list[tuple[Any, tuple[int, ...], int]] = []
        k = 0
        for i, pub in enumerate(pubs):
            bound = pub.parameter_values.bind_all(pub.circuit)
            first = len(requests)
            # A circuit whose classical bits nothing writes reads all zeros (as the local
            # sampler says): no task for it.
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
                    requests.append(TaskRequest.of(with_run_options(builder, run_options, base, k)))
                    k += 0 if same else 1
            plan.append((pub, tuple(bound.shape), len(requests) - first))
        values = await _values(_async_client(self._client), requests)
        reseed = reseed_of(self._seed, opts.seed_simulator)
        results = []
        at = 0
        for pub, shape, n in plan:
            if n:
                counts = values[at : at + n]
                at += n
            else:
                counts = [{"0" * pub.circuit.num_clbits: pub.shots}] * math.prod(shape)
            results.append(sampler_pub_result(pub, shape, counts, rng, reseed=reseed))
        return PrimitiveResult(results, metadata={"version": 2})


class RemoteEstimator(BaseEstimatorV2):  # type: ignore[misc]
    """Qiskit's ``BaseEstimatorV2`` run by a scheduler service.

    Every measurement circuit of a job (each parameter set in each Pauli basis) becomes one
    circuit task; a job's tasks are sent in batch requests. Options and seeds as for
    :class:`~logosq_os_scheduler.workflows.SchedulerEstimator`; a server estimates from
    shots, so ``precision`` must be positive.

    Example (synchronous code, qiskit-algorithms unchanged)::

        with BlockingSchedulerClient(url, token) as client:
            vqe = VQE(RemoteEstimator(client, default_precision=0.01), ansatz, COBYLA())
            print(vqe.compute_minimum_eigenvalue(hamiltonian).eigenvalue)

    Args:
        client: A :class:`BlockingSchedulerClient`, or a :class:`SchedulerClient` that has
            run on its loop.
        default_precision: Precision of PUBs that set none (> 0). Overrides ``options``'.
        backend: Pin every circuit to this backend of the server.
        priority: Priority of the estimator's tasks.
        seed: Seed of the job's randomness (the simulator seeds unless
            ``options.seed_simulator`` is set).
        abelian_grouping: Overrides ``options``' field when given.
        options: A ``SchedulerEstimatorOptions`` or a dict of its fields.

    Raises:
        TypeError: If ``client`` is not a client, or ``options`` has an unknown field.
        ValueError: If ``default_precision`` is not positive.
    """

    def __init__(
        self,
        client: SchedulerClient | BlockingSchedulerClient,
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
        if not isinstance(precision, (int, float)) or precision <= 0:
            raise ValueError(
                f"default_precision must be > 0, got {precision!r}: a scheduler service "
                "estimates from shots"
            )
        _async_client(client)
        self._client = client
        self._options = opts
        self._backend = backend
        self._priority = priority
        self._seed = seed

    @property
    def options(self) -> SchedulerEstimatorOptions:
        """The options (mutable, read at every ``run()``)."""
        return self._options

    def run(self, pubs: Iterable[Any], *, precision: float | None = None) -> SchedulerPrimitiveJob:
        """Estimate expectation values of PUBs ``(circuit, observables[, parameter values
        [, precision]])``; returns a job at once.

        Raises:
            ValueError, TypeError: If a PUB is malformed, or its precision is not positive.
            SchedulerError: If the client has not run on its loop yet.
        """
        return _start(self._client, self._execute(self._coerce(pubs, precision)))

    async def arun(
        self, pubs: Iterable[Any], *, precision: float | None = None
    ) -> PrimitiveResult[PubResult]:
        """:meth:`run` for coroutines on the client's loop: returns the result."""
        return await self._execute(self._coerce(pubs, precision))

    def _coerce(self, pubs: Iterable[Any], precision: float | None) -> list[Any]:
        if precision is None:
            precision = self._options.default_precision
        coerced = [EstimatorPub.coerce(pub, precision) for pub in pubs]
        for i, pub in enumerate(coerced):
            if pub.precision <= 0.0:
                # BackendEstimatorV2's refusal: a backend can only estimate from shots.
                raise ValueError(
                    f"The {i}-th pub has precision less than or equal to 0 ({pub.precision}). "
                    "But precision should be larger than 0. (A scheduler service estimates "
                    "from shots.)"
                )
        checked_run_options(self._options.run_options)
        return coerced

    async def _execute(self, pubs: list[Any]) -> PrimitiveResult[PubResult]:
        opts = self._options
        run_options = checked_run_options(opts.run_options)
        base = None
        if self._seed is not None or opts.seed_simulator is not None:
            base = seed_base(
                self._seed, opts.seed_simulator, job_rng(self._seed, opts.seed_simulator)
            )
        restart = reseed_of(self._seed, opts.seed_simulator) is not None
        plans: list[SampledPub] = []
        requests: list[TaskRequest] = []
        k = 0
        for i, pub in enumerate(pubs):
            if restart:
                k = 0
            plan = plan_pub(pub, None, bool(opts.abelian_grouping))
            plans.append(plan)
            for j, m in enumerate(plan.measurements):
                builder = (
                    Task.quantum(f"estimator[{i}].{j}")
                    .with_circuit(m.circuit)
                    .with_shots(plan.shots)
                    .with_priority(self._priority)
                )
                if self._backend is not None:
                    builder = builder.with_backend(self._backend)
                requests.append(TaskRequest.of(with_run_options(builder, run_options, base, k)))
                k += 1
        values = await _values(_async_client(self._client), requests)
        results = []
        at = 0
        for plan in plans:
            n = len(plan.measurements)
            results.append(pub_result(plan, values[at : at + n]))
            at += n
        return PrimitiveResult(results, metadata={"version": 2})
