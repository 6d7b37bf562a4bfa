"""SchedulerSampler and SchedulerEstimator: Qiskit's primitive semantics on the scheduler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math

import pytest

pytest.importorskip("qiskit")
pytest.importorskip("qiskit_aer")
pytest.importorskip("scipy")

import numpy as np
from _workflow_helpers import Recording, aer_backend
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives import (
    BaseEstimatorV2,
    BaseSamplerV2,
    PrimitiveResult,
    PubResult,
    SamplerPubResult,
    StatevectorEstimator,
)
from qiskit.primitives.containers import BitArray
from qiskit.providers import JobStatus
from qiskit.quantum_info import SparsePauliOp

from logosq_os_scheduler import (
    BlockingScheduler,
    QuantumScheduler,
    SchedulerConfig,
    SchedulerError,
    TaskPriority,
    TaskType,
)
from logosq_os_scheduler.workflows import SchedulerEstimator, SchedulerSampler, h2_hamiltonian

pytestmark = pytest.mark.qiskit

THETA = [0, 1, 1, 2, 3, 5]


def ansatz() -> QuantumCircuit:
    return real_amplitudes(2, reps=2)


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def config() -> SchedulerConfig:
    return SchedulerConfig(workers=2, batch_window=0.05)


# --- estimator ------------------------------------------------------------------------------


async def test_exact_estimates_equal_qiskits_reference_estimator_with_no_backend() -> None:
    hamiltonians = [SparsePauliOp.from_list([("II", 1), ("IZ", 2), ("XI", 3)]), h2_hamiltonian()]
    params = np.array([THETA, [1, 2, 3, 4, 5, 6]], dtype=float)
    pub = (ansatz(), [[hamiltonians[0]], [hamiltonians[1]]], params)  # broadcasts to (2, 2)
    reference = StatevectorEstimator().run([pub]).result()[0]
    async with QuantumScheduler(config=config()) as s:
        estimator = SchedulerEstimator(s, default_precision=0.0)
        assert isinstance(estimator, BaseEstimatorV2)
        result = await estimator.arun([pub])
        by_type = dict(s.metrics().by_type)
    assert by_type[TaskType.CLASSICAL] == 1 and by_type[TaskType.QUANTUM] == 0
    assert isinstance(result, PrimitiveResult) and isinstance(result[0], PubResult)
    assert result[0].data.evs.shape == (2, 2)
    np.testing.assert_allclose(result[0].data.evs, reference.data.evs, rtol=0, atol=1e-12)
    assert result[0].metadata == {"target_precision": 0.0, "circuit_metadata": {}}
    assert result.metadata == {"version": 2}


async def test_sampled_estimates_agree_with_exact_values_within_their_stds() -> None:
    observables = [[SparsePauliOp("XX")], [SparsePauliOp("ZI")], [h2_hamiltonian()]]
    params = np.array([THETA, [0.5] * 6], dtype=float)
    pub = (ansatz(), observables, params)  # (3, 1) x (2,) -> (3, 2)
    exact = StatevectorEstimator().run([pub]).result()[0].data.evs
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        estimator = SchedulerEstimator(s, default_precision=0.01)
        result = (await estimator.arun([pub]))[0]
    assert result.data.evs.shape == (3, 2) and result.data.stds.shape == (3, 2)
    assert result.metadata == {"target_precision": 0.01, "shots": 10_000, "circuit_metadata": {}}
    assert np.all(result.data.stds > 0) and np.all(result.data.stds < 0.01)
    # Each estimate is within five of its own standard errors of the exact value.
    assert np.all(np.abs(result.data.evs - exact) <= 5 * result.data.stds + 1e-9)


async def test_one_job_sends_every_circuit_together_so_they_batch() -> None:
    recording = Recording(aer_backend())
    h2 = h2_hamiltonian()  # two qubit-wise commuting groups: {II, IZ, ZI, ZZ} and {XX}
    points = np.random.default_rng(7).uniform(-1, 1, size=(5, 6))
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", recording)
        estimator = SchedulerEstimator(s, default_precision=0.05, priority=TaskPriority.LOW)
        result = await estimator.arun([(ansatz(), h2, points)])
        by_priority = dict(s.metrics().by_priority)
    assert result[0].data.evs.shape == (5,)
    assert recording.jobs == [10]  # 5 points x 2 groups, one backend job
    assert by_priority[TaskPriority.LOW] == 10


async def test_grouping_can_be_turned_off() -> None:
    recording = Recording(aer_backend())
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", recording)
        estimator = SchedulerEstimator(s, default_precision=0.05)
        estimator.abelian_grouping = False
        await estimator.arun([(ansatz(), h2_hamiltonian(), THETA)])
    assert recording.jobs == [5]  # one circuit per Pauli term


@pytest.mark.parametrize(
    ("pub", "kw"),
    [
        ((QuantumCircuit(1), SparsePauliOp("II")), {}),  # observable wider than the circuit
        ((QuantumCircuit(1), SparsePauliOp("I"), [[1e4]]), {}),  # values for no parameter
        ((real_amplitudes(2, reps=2), SparsePauliOp("ZZ"), [[1, 2]]), {}),  # too few values
        ((QuantumCircuit(1), SparsePauliOp("I")), {"precision": -1}),
        ((QuantumCircuit(1), 1j * SparsePauliOp("I")), {"precision": 0.1}),
    ],
)
async def test_bad_pubs_raise_what_qiskits_reference_raises(
    pub: object, kw: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        StatevectorEstimator().run([pub], **kw).result()
    async with QuantumScheduler(config=config()) as s:
        with pytest.raises(ValueError):
            SchedulerEstimator(s).run([pub], **kw)


async def test_a_pub_not_in_a_list_is_refused_with_qiskits_message() -> None:
    async with QuantumScheduler(config=config()) as s:
        with pytest.raises(ValueError, match="An invalid Estimator pub-like was given"):
            SchedulerEstimator(s).run((QuantumCircuit(1), SparsePauliOp("Z")))  # type: ignore[arg-type]


async def test_on_the_loop_a_job_is_awaited_and_result_refuses_to_block() -> None:
    async with QuantumScheduler(config=config()) as s:
        estimator = SchedulerEstimator(s, default_precision=0.0)
        job = estimator.run([(ansatz(), SparsePauliOp("ZZ"), THETA)])
        assert job.status() is JobStatus.RUNNING and not job.in_final_state()
        with pytest.raises(SchedulerError, match="await job"):
            job.result()
        result = await job
        assert job.status() is JobStatus.DONE and job.done() and job.in_final_state()
        assert job.result() is result
        assert job.cancel() is False
        assert isinstance(job.job_id(), str)


async def test_cancelling_a_job_cancels_its_tasks() -> None:
    recording = Recording(aer_backend())
    async with QuantumScheduler(config=SchedulerConfig(workers=2, batch_window=5.0)) as s:
        await s.register_backend("aer", recording)
        estimator = SchedulerEstimator(s, default_precision=0.05)
        # A long batch window holds the circuits in the queue; cancel them there.
        job = estimator.run([(ansatz(), h2_hamiltonian(), THETA)])
        await asyncio.sleep(0)
        assert job.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await job
        await s.join()
        metrics = s.metrics()
    assert job.status() is JobStatus.CANCELLED and job.cancelled()
    assert metrics.cancelled == 2 and metrics.completed == 0
    assert recording.jobs == []


def test_run_from_another_thread_blocks_in_result() -> None:
    with BlockingScheduler(2) as bs:
        bs.call(lambda s: s.register_backend("aer", aer_backend()))
        estimator = SchedulerEstimator(bs, default_precision=0.02)
        job = estimator.run([(ansatz(), h2_hamiltonian(), [THETA, THETA])])
        result = job.result()
        assert job.status() is JobStatus.DONE
        sampler = SchedulerSampler(bs, default_shots=500)
        counts = sampler.run([bell()]).result()[0].data.meas.get_counts()
    assert result[0].data.evs.shape == (2,)
    assert result[0].metadata["shots"] == 2500
    assert sum(counts.values()) == 500 and set(counts) <= {"00", "11"}


async def _barrier(_: QuantumScheduler) -> None:
    """Runs on the loop after every callback queued before it (the loop is FIFO)."""


def test_cancel_from_another_thread() -> None:
    with BlockingScheduler(config=SchedulerConfig(workers=2, batch_window=5.0)) as bs:
        bs.call(lambda s: s.register_backend("aer", aer_backend()))
        job = SchedulerSampler(bs).run([bell()])
        bs.call(_barrier)  # the job has submitted its task, which waits in the queue
        assert bs.metrics().queued == 1
        assert job.cancel() is True
        with pytest.raises(concurrent.futures.CancelledError):
            job.result()
        bs.join(timeout=10)
        assert job.status() is JobStatus.CANCELLED
        assert bs.metrics().cancelled == 1


def test_an_unstarted_scheduler_is_refused() -> None:
    with pytest.raises(SchedulerError, match="has not started"):
        SchedulerSampler(QuantumScheduler(2)).run([bell()])


# --- sampler --------------------------------------------------------------------------------


async def test_sampler_counts_shapes_and_metadata_follow_qiskit() -> None:
    qc = real_amplitudes(2, reps=1)
    qc.measure_all()
    qc.metadata = {"label": "ra"}
    params = np.array([[0.0] * 4, [np.pi, 0, 0, 0], [0, np.pi, 0, 0]])
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        sampler = SchedulerSampler(s, default_shots=256, seed=3)
        assert isinstance(sampler, BaseSamplerV2)
        result = await sampler.arun([(qc, params), (bell(), None, 100)])
    first, second = result
    assert isinstance(first, SamplerPubResult)
    meas = first.data.meas
    assert isinstance(meas, BitArray)
    assert meas.shape == (3,) and meas.num_shots == 256 and meas.num_bits == 2
    # RY(pi) on qubit 0 flips it and the CX then flips qubit 1; RY(pi) on qubit 1 flips only
    # that one (Qiskit order: qubit 0 rightmost).
    assert [meas.get_counts(i) for i in range(3)] == [{"00": 256}, {"11": 256}, {"10": 256}]
    assert first.metadata == {"shots": 256, "circuit_metadata": {"label": "ra"}}
    assert second.data.meas.num_shots == 100 and second.metadata["shots"] == 100
    assert result.metadata == {"version": 2}


async def test_registers_are_cut_from_the_same_shots() -> None:
    # GHZ measured into two registers: in every shot, register a equals register b.
    a = ClassicalRegister(2, "a")
    b = ClassicalRegister(1, "b")
    qc = QuantumCircuit(QuantumRegister(3), a, b)
    qc.h(0)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.measure([0, 1], a)
    qc.measure(2, b)
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        data = (await SchedulerSampler(s, seed=1).arun([qc], shots=400))[0].data
    bits_a = data.a.get_bitstrings()
    bits_b = data.b.get_bitstrings()
    assert len(bits_a) == len(bits_b) == 400
    assert all(x == y * 2 for x, y in zip(bits_a, bits_b, strict=True))
    assert 100 < bits_b.count("1") < 300
    # Shots come in a random (seeded) order, not grouped by outcome.
    assert bits_b[:200].count("1") not in (0, 200)


async def test_unwritten_registers_read_zero_and_no_registers_warns() -> None:
    qc = QuantumCircuit(QuantumRegister(2), ClassicalRegister(3, "c"))
    qc.h(0)
    async with QuantumScheduler(config=config()) as s:
        sampler = SchedulerSampler(s)
        result = await sampler.arun([qc], shots=10)
        with pytest.warns(UserWarning, match="no output classical registers"):
            empty = await sampler.arun([QuantumCircuit(2)])
    assert result[0].data.c.get_counts() == {"000": 10}
    assert len(empty[0].data) == 0


def test_sampler_and_estimator_validate_their_settings() -> None:
    with pytest.raises(TypeError, match="QuantumScheduler or BlockingScheduler"):
        SchedulerSampler(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default_shots"):
        SchedulerSampler(QuantumScheduler(1), default_shots=0)
    with pytest.raises(ValueError, match="default_precision"):
        SchedulerEstimator(QuantumScheduler(1), default_precision=-1.0)
    assert math.isclose(SchedulerEstimator(QuantumScheduler(1)).default_precision, 1 / 64)


# --- existing Qiskit code, unchanged --------------------------------------------------------


def test_qiskit_algorithms_vqe_runs_unchanged_and_matches_the_reference_estimator() -> None:
    qa = pytest.importorskip("qiskit_algorithms")
    from qiskit_algorithms.optimizers import COBYLA as QACOBYLA

    h2 = h2_hamiltonian()
    x0 = [0.1, 0.2, 0.3, 0.4]

    def solve(estimator: BaseEstimatorV2) -> object:
        vqe = qa.VQE(estimator, real_amplitudes(2, reps=1), QACOBYLA(maxiter=200), initial_point=x0)
        return vqe.compute_minimum_eigenvalue(h2)

    reference = solve(StatevectorEstimator())
    with BlockingScheduler(2) as bs:
        ours = solve(SchedulerEstimator(bs, default_precision=0.0))
        evaluations = bs.metrics().completed
    assert ours.eigenvalue == pytest.approx(reference.eigenvalue, abs=1e-9)  # type: ignore[attr-defined]
    np.testing.assert_allclose(ours.optimal_point, reference.optimal_point, atol=1e-9)  # type: ignore[attr-defined]
    assert ours.cost_function_evals == reference.cost_function_evals == evaluations  # type: ignore[attr-defined]


def test_qiskit_algorithms_vqe_on_sampled_estimates_from_aer() -> None:
    qa = pytest.importorskip("qiskit_algorithms")
    from qiskit_algorithms.optimizers import COBYLA as QACOBYLA

    from logosq_os_scheduler.workflows import h2_ansatz

    h2 = h2_hamiltonian()
    reference = qa.VQE(
        StatevectorEstimator(), h2_ansatz(), QACOBYLA(maxiter=40), initial_point=[0.5]
    ).compute_minimum_eigenvalue(h2)
    with BlockingScheduler(2) as bs:
        bs.call(lambda s: s.register_backend("aer", aer_backend(seed=5)))
        estimator = SchedulerEstimator(bs, default_precision=0.01, backend="aer")
        ours = qa.VQE(
            estimator, h2_ansatz(), QACOBYLA(maxiter=40), initial_point=[0.5]
        ).compute_minimum_eigenvalue(h2)
    # 10,000 shots per basis: each estimate's standard error is below 3 mHa.
    assert ours.eigenvalue == pytest.approx(reference.eigenvalue, abs=0.015)
    assert ours.optimal_point[0] == pytest.approx(reference.optimal_point[0], abs=0.2)
