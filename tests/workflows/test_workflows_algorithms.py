"""VQE and QAOA through the scheduler: H2 to chemical accuracy, MaxCut on a ring, batching
per iteration, parameter-shift gradients, hybrid tasks and cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("qiskit")
pytest.importorskip("qiskit_aer")
pytest.importorskip("scipy")

import numpy as np
from _workflow_helpers import Recording, aer_backend
from qiskit.circuit.library import qaoa_ansatz, real_amplitudes
from qiskit.quantum_info import SparsePauliOp, Statevector

from logosq_os_scheduler import (
    InvalidTaskError,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskPriority,
)
from logosq_os_scheduler.workflows import (
    COBYLA,
    QAOA,
    SPSA,
    VQE,
    Adam,
    AlgorithmResult,
    HybridAlgorithm,
    h2_ansatz,
    h2_hamiltonian,
    maxcut_hamiltonian,
    run_hybrid,
)
from logosq_os_scheduler.workflows._gradients import ParameterShift
from logosq_os_scheduler.workflows._problems import (
    H2_FCI_ELECTRONIC_ENERGY,
    H2_FCI_TOTAL_ENERGY,
    H2_NUCLEAR_REPULSION,
    cut_value,
)

pytestmark = pytest.mark.qiskit

CHEMICAL_ACCURACY = 1.6e-3  # Hartree
RING = [(0, 1), (1, 2), (2, 3), (3, 0)]


def config(**kw: object) -> SchedulerConfig:
    base: dict[str, object] = {"workers": 2, "batch_window": 0.05}
    base.update(kw)
    return SchedulerConfig(**base)  # type: ignore[arg-type]


def test_the_h2_hamiltonian_has_the_fci_ground_state() -> None:
    h2 = h2_hamiltonian()
    ground = float(np.linalg.eigvalsh(h2.to_matrix())[0])
    assert ground == pytest.approx(H2_FCI_ELECTRONIC_ENERGY, abs=1e-6)
    assert ground + H2_NUCLEAR_REPULSION == pytest.approx(H2_FCI_TOTAL_ENERGY, abs=1e-6)


async def test_h2_by_vqe_with_cobyla_reaches_chemical_accuracy() -> None:
    iterations: list[int] = []
    vqe = VQE(
        h2_hamiltonian(),
        real_amplitudes(2, reps=1),
        optimizer=COBYLA(maxiter=150),
        shots=None,  # exact energies: no shot noise bounds the accuracy
        seed=1,
        callback=lambda i, _x, _e: iterations.append(i),
    )
    async with QuantumScheduler(config=config()) as s:
        result = await vqe.run(s)
        completed = s.metrics().completed
    assert abs(result.energy - H2_FCI_ELECTRONIC_ENERGY) < CHEMICAL_ACCURACY
    assert isinstance(result, AlgorithmResult) and result.value == result.energy
    assert result.converged and result.metadata["estimation"] == "exact"
    assert iterations == list(range(result.iterations)) == list(range(len(result.history)))
    # One evaluation per COBYLA step plus the fresh evaluation at the optimum, each a task.
    assert result.evaluations == result.iterations + 1 == len(result.task_ids) == completed


async def test_h2_by_vqe_with_adam_on_parameter_shift_gradients() -> None:
    ansatz = real_amplitudes(2, reps=1)  # 4 parameters, each in one RY: 9 points per step
    vqe = VQE(h2_hamiltonian(), ansatz, optimizer=Adam(maxiter=150, lr=0.1), shots=None, seed=1)
    async with QuantumScheduler(config=config()) as s:
        result = await vqe.run(s)
    assert abs(result.energy - H2_FCI_ELECTRONIC_ENERGY) < CHEMICAL_ACCURACY
    assert result.evaluations in (9 * result.iterations, 9 * result.iterations + 1)
    # Adam's energies fall from the start to the end.
    assert result.history[-1] < result.history[0]


async def test_h2_on_aer_with_shot_noise_and_spsa_reaches_chemical_accuracy() -> None:
    # Every energy is sampled on Aer: 4096 shots per basis while optimising, 200,000 for the
    # final estimate (its standard error is about 0.3 mHa).
    recording = Recording(aer_backend(seed=3))
    maxiter = 40
    vqe = VQE(
        h2_hamiltonian(),
        h2_ansatz(),
        optimizer=SPSA(maxiter=maxiter, last_avg=10, seed=1),
        shots=4096,
        final_shots=200_000,
        initial_point=[0.8],
    )
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", recording)
        result = await vqe.run(s, backend="aer")
    assert abs(result.energy - H2_FCI_ELECTRONIC_ENERGY) < CHEMICAL_ACCURACY
    assert result.metadata["estimation"] == "sampled"
    # Jobs: the calibration (25 pairs of points), one per iteration (2 points), SPSA's own
    # estimate at its result, the final estimate; every point is 2 circuits (the
    # Hamiltonian's two qubit-wise commuting groups), all of a request in one job.
    assert recording.jobs == [100] + [4] * maxiter + [2, 2]
    assert result.iterations == maxiter == len(result.history)


async def test_qaoa_finds_the_maximum_cut_of_a_four_node_ring() -> None:
    cost = maxcut_hamiltonian(RING)
    qaoa = QAOA(cost, reps=2, optimizer=COBYLA(maxiter=60), shots=2048, final_shots=2048)
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend(seed=8))
        result = await qaoa.run(s)
    assert result.best_bitstring in ("0101", "1010")
    assert cut_value(result.best_bitstring, RING) == 4 and result.best_cost == -4.0
    assert sum(result.counts.values()) == 2048
    # The optimised state cuts more than a random partition does (2 edges on average).
    assert result.energy < -2.5


def test_parameter_shift_matches_finite_differences_with_repeated_parameters() -> None:
    cost = maxcut_hamiltonian(RING)
    ansatz = qaoa_ansatz(cost, reps=2)  # each gamma drives 4 rzz gates, each beta 4 rx gates
    shift = ParameterShift(ansatz)
    assert shift.num_occurrences == 16
    theta = np.array([0.3, -0.2, 0.7, 0.4])
    energy = lambda x: Statevector(ansatz.assign_parameters(x)).expectation_value(cost).real  # noqa: E731
    values = np.array(
        [
            Statevector(shift.circuit.assign_parameters(p)).expectation_value(cost).real
            for p in shift.points(theta)
        ]
    )
    eps = 1e-6
    numeric = np.array(
        [(energy(theta + eps * e) - energy(theta - eps * e)) / (2 * eps) for e in np.eye(4)]
    )
    assert values[0] == pytest.approx(energy(theta), abs=1e-12)
    np.testing.assert_allclose(shift.gradient(values), numeric, atol=1e-6)


def test_parameter_shift_refuses_gates_it_cannot_differentiate() -> None:
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    a = Parameter("a")
    qc = QuantumCircuit(2)
    qc.ry(a * a, 0)
    with pytest.raises(InvalidTaskError, match="not linear"):
        ParameterShift(qc)


async def test_a_hybrid_task_runs_vqe_through_the_scheduler() -> None:
    task = (
        Task.hybrid("vqe_h2")
        .with_algorithm(VQE(h2_hamiltonian(), real_amplitudes(2, reps=1), shots=None, seed=1))
        .with_optimizer(COBYLA(maxiter=150))
        .with_priority(TaskPriority.HIGH)
    )
    async with QuantumScheduler(config=config(workers=1)) as s:
        handle = await s.submit(task)
        result = await handle
        by_priority = dict(s.metrics().by_priority)
    assert abs(result.value.energy - H2_FCI_ELECTRONIC_ENERGY) < CHEMICAL_ACCURACY
    assert result.backend is None  # exact estimation: classical work, no backend
    # The hybrid task and every evaluation it ran carry its priority; with one worker the
    # evaluations still ran, so the hybrid task held no worker slot while it waited.
    assert by_priority[TaskPriority.HIGH] == 1 + len(result.value.task_ids)


async def test_a_hybrid_task_pinned_to_a_backend_runs_its_circuits_there() -> None:
    recording = Recording(aer_backend())
    task = (
        Task.hybrid("qaoa_ring")
        .with_algorithm(QAOA(maxcut_hamiltonian(RING), reps=1, shots=1024))
        .with_optimizer(SPSA(maxiter=5, seed=1))
        .with_backend("aer")
    )
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", recording)
        await s.register_backend("other", aer_backend("other"))
        try:
            handle = await s.submit(task)
        except InvalidTaskError as exc:
            if exc.field == "algorithm":
                pytest.skip("this scheduler does not run hybrid algorithms yet")
            raise
        done = await handle
        result = done.value
        other = s.metrics().backends["other"].completed
    assert other == 0
    assert sum(recording.jobs) == len(result.task_ids)
    # The hybrid task's result names the backend its circuits ran on, as a circuit's does.
    assert done.backend == "aer"


def test_a_hybrid_task_names_each_backend_its_circuits_ran_on() -> None:
    from types import SimpleNamespace

    from logosq_os_scheduler._context import _current_task
    from logosq_os_scheduler.workflows._primitives._job import _ran_on

    hybrid = Task.hybrid("qaoa").with_algorithm(QAOA(maxcut_hamiltonian(RING), reps=1)).build()
    classical = Task.classical("c").with_function(int).build()
    results: list[Any] = [SimpleNamespace(backend=b) for b in ("aer", None, "aer", "fake")]
    token = _current_task.set(classical)
    try:
        _ran_on(results)  # a primitive inside a classical task: nothing to record
        assert classical.quantum_part is None
        _current_task.set(hybrid)
        _ran_on(results[:2])
        assert hybrid.backend_used == "aer"
        _ran_on(results)
        assert hybrid.backend_used == "aer,fake"
    finally:
        _current_task.reset(token)


async def test_cancelling_an_algorithm_cancels_its_outstanding_tasks() -> None:
    recording = Recording(aer_backend())
    vqe = VQE(
        h2_hamiltonian(),
        real_amplitudes(2, reps=1),
        optimizer=SPSA(maxiter=1000, calibration_samples=10, seed=1),
        shots=256,
    )
    async with QuantumScheduler(config=config(batch_window=5.0)) as s:
        await s.register_backend("aer", recording)
        runner = asyncio.ensure_future(vqe.run(s))
        # One pass of the loop: the runner submits SPSA's calibration batch (small enough to
        # be prepared inline), which waits in the queue for the 5 s batch window to fill.
        await asyncio.sleep(0)
        assert s.metrics().queued == 40
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await s.join()
        metrics = s.metrics()
    assert metrics.cancelled == 40  # the calibration batch: 10 pairs x 2 groups
    assert metrics.queued == 0 and metrics.running == 0
    assert recording.jobs == []


async def test_cancelling_a_hybrid_task_cancels_the_tasks_it_submitted() -> None:
    recording = Recording(aer_backend())
    task = Task.hybrid("vqe").with_algorithm(
        VQE(
            h2_hamiltonian(),
            real_amplitudes(2, reps=1),
            optimizer=SPSA(maxiter=1000, calibration_samples=10, seed=1),
            shots=256,
        )
    )
    async with QuantumScheduler(config=config(batch_window=5.0)) as s:
        await s.register_backend("aer", recording)
        try:
            handle = await s.submit(task)
        except InvalidTaskError as exc:
            if exc.field == "algorithm":
                pytest.skip("this scheduler does not run hybrid algorithms yet")
            raise
        await asyncio.sleep(0)  # one pass of the loop: the algorithm submits its first batch
        assert s.metrics().queued == 40
        assert handle.cancel() is True
        await s.join()
        metrics = s.metrics()
    assert metrics.cancelled == 41  # the hybrid task and its 40 circuits
    assert recording.jobs == []


async def test_cancelling_cobyla_stops_scipy_and_its_evaluation() -> None:
    started = asyncio.Event()
    calls = 0  # SciPy's thread reports through the loop, so this is only touched there

    def count(*_: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            started.set()

    vqe = VQE(
        h2_hamiltonian(),
        real_amplitudes(2, reps=1),
        optimizer=COBYLA(maxiter=10_000, tol=1e-12),
        shots=None,
        seed=1,
        callback=count,
    )
    async with QuantumScheduler(config=config()) as s:
        runner = asyncio.ensure_future(vqe.run(s))
        await started.wait()
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
        await s.join()
        metrics = s.metrics()
    # Every evaluation it started has ended (the one in flight, if any, cancelled).
    assert metrics.submitted == metrics.completed + metrics.cancelled
    assert metrics.queued == metrics.running == 0
    assert calls >= 3


async def test_run_hybrid_accepts_any_algorithm_and_refuses_other_objects() -> None:
    class Constant:
        async def run(
            self,
            scheduler: QuantumScheduler,
            *,
            priority: TaskPriority,
            backend: str | None,
            optimizer: object | None,
        ) -> AlgorithmResult:
            return AlgorithmResult(
                energy=-1.0,
                parameters=(),
                history=(),
                iterations=0,
                evaluations=0,
                task_ids=(),
                elapsed=0.0,
                converged=True,
                metadata={"priority": priority, "backend": backend},
            )

    assert isinstance(Constant(), HybridAlgorithm)
    async with QuantumScheduler(config=config()) as s:
        result = await run_hybrid(s, Constant(), priority=TaskPriority.LOW, backend="x")
        assert result.metadata == {"priority": TaskPriority.LOW, "backend": "x"}
        with pytest.raises(InvalidTaskError, match="not a hybrid algorithm"):
            await run_hybrid(s, object())


def test_algorithms_validate_their_inputs() -> None:
    h2 = h2_hamiltonian()
    with pytest.raises(InvalidTaskError, match="3 qubits"):
        VQE(h2, real_amplitudes(3, reps=1))
    measured = real_amplitudes(2, reps=1)
    measured.measure_all()
    with pytest.raises(InvalidTaskError, match="must not measure"):
        VQE(h2, measured)
    with pytest.raises(InvalidTaskError, match="initial_point"):
        VQE(h2, real_amplitudes(2, reps=1), initial_point=[0.0])
    with pytest.raises(InvalidTaskError, match="diagonal"):
        QAOA(SparsePauliOp("XZ"))
    with pytest.raises(InvalidTaskError, match="unknown optimizer"):
        VQE(h2, real_amplitudes(2, reps=1), optimizer="bfgs")
    with pytest.raises(InvalidTaskError, match="not an optimizer"):
        VQE(h2, real_amplitudes(2, reps=1), optimizer=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidTaskError, match="edges"):
        maxcut_hamiltonian([(0, 0)])
