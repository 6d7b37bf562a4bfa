"""SchedulerSampler and SchedulerEstimator: Qiskit's primitive semantics on the scheduler."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import math
from collections.abc import Sequence

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
    Task,
    TaskPriority,
    TaskStatus,
    TaskType,
)
from logosq_os_scheduler.backends import Backend, CircuitJob, JobOutcome
from logosq_os_scheduler.workflows import (
    SchedulerEstimator,
    SchedulerEstimatorOptions,
    SchedulerSampler,
    SchedulerSamplerOptions,
    h2_hamiltonian,
)

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
    # An hour's batch window: a primitive flushes its circuits once all are submitted, so a
    # job never waits the window out (a test would time out if one did).
    return SchedulerConfig(workers=2, batch_window=3600.0)


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


def test_an_observables_measurement_bases_are_made_once() -> None:
    """An optimiser measures one observable at every step: its grouping and basis circuits
    are made once, and each bound circuit is measured in copies of them (the shared basis
    circuits never change). A circuit with a register of a basis's name is still refused."""
    from logosq_os_scheduler.workflows._primitives._measurements import _bases, measurements_for

    _bases.cache_clear()
    circuit = ansatz().assign_parameters(THETA)
    labels = list(h2_hamiltonian().paulis.to_labels())
    first = measurements_for(circuit, (0,), labels)
    shared = _bases(circuit.num_qubits, tuple(sorted(labels)), True)
    before = [basis.circuit.copy() for basis in shared]
    second = measurements_for(circuit, (1,), reversed(labels))  # the same set
    assert _bases.cache_info().misses == 1
    assert len(first) == 2  # H2's terms fall into two qubit-wise commuting groups
    assert [m.circuit for m in first] == [m.circuit for m in second]
    assert [(m.labels, m.diagonal, m.support) for m in first] == [
        (m.labels, m.diagonal, m.support) for m in second
    ]
    assert all(a.circuit is not b.circuit for a, b in zip(first, second, strict=True))
    assert [m.param_index for m in second] == [(1,), (1,)]
    assert [basis.circuit for basis in shared] == before
    clash = circuit.copy()
    clash.add_register(ClassicalRegister(1, first[0].circuit.cregs[-1].name))
    with pytest.raises(ValueError, match="conflict"):
        measurements_for(clash, (0,), labels)


async def test_bound_copies_of_a_circuit_are_walked_once_and_routed_by_what_they_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every bound copy of one PUB circuit needs the same qubits and connectivity, so the
    circuit is walked once per job and measured basis, not once per task; the tasks are
    still routed by what they need (three qubits do not fit a two-qubit line)."""
    from logosq_os_scheduler.backends import MockBackend, _circuits

    walks: list[int] = []
    walk = _circuits._analyze_quantum_circuit

    def counted(qc: QuantumCircuit) -> object:
        walks.append(qc.num_qubits)
        return walk(qc)

    monkeypatch.setattr(_circuits, "_analyze_quantum_circuit", counted)
    triangle = real_amplitudes(3, reps=1, entanglement="full")  # cx 0-1, 0-2, 1-2
    points = np.random.default_rng(3).uniform(-1, 1, size=(6, triangle.num_parameters))
    handles = []
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("line", MockBackend("line", num_qubits=2, all_to_all=False))
        await s.register_backend("aer", aer_backend())
        submit = s.submit_nowait

        def recorded(task: object) -> object:
            handle = submit(task)  # type: ignore[arg-type]
            handles.append(handle)
            return handle

        monkeypatch.setattr(s, "submit_nowait", recorded)
        estimator = SchedulerEstimator(s, default_precision=0.05)
        observables = SparsePauliOp.from_list([("ZZI", 1.0), ("IXX", 0.5)])  # two bases
        result = await estimator.arun([(triangle, observables, points)])
        routed = [(await h).routing for h in handles]
    assert result[0].data.evs.shape == (6,)
    assert len(handles) == 12  # 6 points x 2 bases
    assert walks == [3, 3]  # one walk per measured basis, not one per task
    for decision in routed:
        assert decision is not None and decision.backend == "aer"
        assert decision.considered["line"] == "has 2 qubits, circuit needs 3"


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


class _Held(Recording):
    """Runs each job only once the test opens the backend."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.opened = asyncio.Event()

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        await self.opened.wait()
        return await super().run(jobs)


def test_cancel_from_another_thread() -> None:
    held = _Held(aer_backend())

    async def open_backend(_: QuantumScheduler) -> None:
        held.opened.set()

    config = SchedulerConfig(workers=2, batch_window=0, max_concurrent_quantum=1)
    with BlockingScheduler(config=config) as bs:
        bs.call(lambda s: s.register_backend("aer", held))
        blocker = bs.submit(Task.quantum("blocker").with_circuit(bell()))
        job = SchedulerSampler(bs).run([bell()])
        bs.call(_barrier)  # its task waits: the one quantum slot holds the blocker's job
        assert bs.metrics().queued == 1
        assert job.cancel() is True
        with pytest.raises(concurrent.futures.CancelledError):
            job.result()
        bs.call(open_backend)
        bs.join(timeout=10)
        assert job.status() is JobStatus.CANCELLED
        assert blocker.status is TaskStatus.COMPLETED
        assert (bs.metrics().cancelled, bs.metrics().completed) == (1, 1)
    assert held.jobs == [1]  # the cancelled task never reached the backend


def test_an_unstarted_scheduler_is_refused() -> None:
    with pytest.raises(SchedulerError, match="has not started"):
        SchedulerSampler(QuantumScheduler(2)).run([bell()])


# --- sampler --------------------------------------------------------------------------------


async def test_sampler_counts_shapes_and_metadata_follow_qiskit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from logosq_os_scheduler.backends import _circuits

    walks: list[int] = []
    walk = _circuits._analyze_quantum_circuit
    monkeypatch.setattr(
        _circuits, "_analyze_quantum_circuit", lambda qc: walks.append(qc.num_qubits) or walk(qc)
    )
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
    assert walks == [2, 2]  # each PUB's circuit is walked once, not once per bound copy


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


# --- Qiskit's options, seeds and precision semantics ----------------------------------------


class OptionsLog(Recording):
    """Recording, plus the run options each circuit reached the backend with."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.options: list[dict[str, object]] = []

    async def run(self, jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        self.options.extend(dict(job.options) for job in jobs)
        return await super().run(jobs)


def plain_aer(name: str = "aer") -> Backend:
    """Aer as Qiskit's own primitives see it: an AerSimulator with no seed of its own."""
    from qiskit_aer import AerSimulator

    from logosq_os_scheduler.backends._qiskit import QiskitBackend

    return QiskitBackend(AerSimulator(), name=name, isolation="thread", simulator_threads=1)


def test_options_have_the_fields_and_defaults_of_qiskits_backend_primitives() -> None:
    from qiskit.primitives import backend_estimator_v2, backend_sampler_v2

    assert dataclasses.asdict(SchedulerSamplerOptions()) == dataclasses.asdict(
        backend_sampler_v2.Options()
    )
    # BackendEstimatorV2 has no run_options; ours takes them as BackendSamplerV2 does.
    theirs = dataclasses.asdict(backend_estimator_v2.Options())
    assert dataclasses.asdict(SchedulerEstimatorOptions()) == {**theirs, "run_options": None}
    s = QuantumScheduler(1)
    sampler = SchedulerSampler(s, options={"default_shots": 10, "seed_simulator": 4})
    assert sampler.options == SchedulerSamplerOptions(default_shots=10, seed_simulator=4)
    assert sampler.default_shots == 10
    # A keyword wins over the options it names; the dataclass given is copied, not shared.
    given = SchedulerEstimatorOptions(default_precision=0.1)
    estimator = SchedulerEstimator(s, default_precision=0.2, abelian_grouping=False, options=given)
    assert estimator.options == SchedulerEstimatorOptions(0.2, False, None, None)
    assert given.default_precision == 0.1
    estimator.abelian_grouping = True
    assert estimator.options.abelian_grouping is True
    with pytest.raises(TypeError):
        SchedulerSampler(s, options={"default_precision": 0.1})
    with pytest.raises(TypeError):
        SchedulerEstimator(s, options={"default_shots": 10})


async def test_options_are_read_at_every_run() -> None:
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        sampler = SchedulerSampler(s, options={"default_shots": 50})
        first = (await sampler.arun([bell()]))[0]
        sampler.options.default_shots = 70
        second = (await sampler.arun([bell()]))[0]
    assert first.data.meas.num_shots == 50 and first.metadata["shots"] == 50
    assert second.data.meas.num_shots == 70 and second.metadata["shots"] == 70


async def test_seeded_sampler_gives_the_counts_of_qiskits_backend_sampler_on_aer() -> None:
    from qiskit.primitives import BackendSamplerV2
    from qiskit_aer import AerSimulator

    qc = real_amplitudes(2, reps=1)
    qc.measure_all()
    params = np.random.default_rng(3).uniform(-2, 2, size=(3, 4))
    pubs = [(qc, params), (bell(), None)]
    reference = (
        BackendSamplerV2(backend=AerSimulator(), options={"seed_simulator": 11})
        .run([(qc.decompose(), params), bell()], shots=300)
        .result()
    )
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", plain_aer())
        sampler = SchedulerSampler(s, backend="aer", options={"seed_simulator": 11})
        ours = await sampler.arun(pubs, shots=300)
    # Circuit k of the job ran with seed 11 + 2113 k: Aer's seed for the k-th circuit of one
    # call, which is what BackendSamplerV2 makes.
    for index in range(3):
        assert ours[0].data.meas.get_counts(index) == reference[0].data.meas.get_counts(index)
    assert ours[1].data.meas.get_counts() == reference[1].data.meas.get_counts()
    assert [r.metadata for r in ours] == [r.metadata for r in reference]


@pytest.mark.parametrize("grouping", [True, False])
async def test_seeded_estimator_gives_the_values_of_qiskits_backend_estimator_on_aer(
    grouping: bool,
) -> None:
    from qiskit.primitives import BackendEstimatorV2
    from qiskit_aer import AerSimulator

    points = np.random.default_rng(5).uniform(-2, 2, size=(2, 6))
    options = {"seed_simulator": 7, "abelian_grouping": grouping}
    reference = (
        BackendEstimatorV2(backend=AerSimulator(), options=options)
        .run([(ansatz().decompose(), h2_hamiltonian(), points)], precision=0.05)
        .result()[0]
    )
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", plain_aer())
        estimator = SchedulerEstimator(s, backend="aer", options=options)
        ours = (await estimator.arun([(ansatz(), h2_hamiltonian(), points)], precision=0.05))[0]
    np.testing.assert_array_equal(ours.data.evs, reference.data.evs)
    np.testing.assert_array_equal(ours.data.stds, reference.data.stds)
    assert (
        ours.metadata
        == reference.metadata
        == {
            "target_precision": 0.05,
            "shots": 400,
            "circuit_metadata": {},
        }
    )


async def test_an_int_seed_repeats_a_job_and_a_generator_seed_advances() -> None:
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        by_int = SchedulerSampler(s, seed=5)
        first = (await by_int.arun([bell()], shots=200))[0].data.meas
        again = (await by_int.arun([bell()], shots=200))[0].data.meas
        by_generator = SchedulerSampler(s, seed=np.random.default_rng(5))
        twin = SchedulerSampler(s, seed=np.random.default_rng(5))
        g1 = (await by_generator.arun([bell()], shots=200))[0].data.meas
        g2 = (await by_generator.arun([bell()], shots=200))[0].data.meas
        t1 = (await twin.arun([bell()], shots=200))[0].data.meas
    # Same shots in the same order; not all alike, so the equality says something.
    np.testing.assert_array_equal(first.array, again.array)
    assert set(first.get_counts()) == {"00", "11"}
    np.testing.assert_array_equal(g1.array, t1.array)
    assert not np.array_equal(g1.array, g2.array)


async def test_an_int_seed_gives_equal_pubs_of_one_job_equal_results() -> None:
    """As Qiskit's Statevector primitives re-seed every PUB with an int seed; a Generator
    seed advances from PUB to PUB."""
    pub = (ansatz(), h2_hamiltonian(), THETA)
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        evs = await SchedulerEstimator(s, default_precision=0.05, seed=4).arun([pub, pub])
        meas = await SchedulerSampler(s, seed=4).arun([bell(), bell()], shots=200)
        advancing = await SchedulerSampler(s, seed=np.random.default_rng(4)).arun(
            [bell(), bell()], shots=200
        )
    assert evs[0].data.evs == evs[1].data.evs
    np.testing.assert_array_equal(meas[0].data.meas.array, meas[1].data.meas.array)
    assert set(meas[0].data.meas.get_counts()) == {"00", "11"}
    assert not np.array_equal(advancing[0].data.meas.array, advancing[1].data.meas.array)


async def test_a_seeded_job_gives_the_same_result_however_it_is_batched() -> None:
    points = np.random.default_rng(2).uniform(-1, 1, size=(3, 6))
    pub = (ansatz(), h2_hamiltonian(), points)
    log = OptionsLog(aer_backend())
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", log)
        seeded = SchedulerEstimator(s, default_precision=0.05, seed=9)
        alone = (await seeded.arun([pub]))[0].data.evs
        crowd = SchedulerEstimator(s, default_precision=0.05)
        with_others, _ = await asyncio.gather(seeded.arun([pub]), crowd.arun([pub, pub]))
    # The second time its six circuits shared one backend job with twelve unseeded ones.
    assert log.jobs == [6, 18]
    np.testing.assert_array_equal(with_others[0].data.evs, alone)


async def test_run_options_reach_the_backend_with_each_circuits_seed() -> None:
    qc = real_amplitudes(2, reps=1)
    qc.measure_all()
    log = OptionsLog(aer_backend())
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", log)
        sampler = SchedulerSampler(
            s,
            options={"seed_simulator": 3, "run_options": {"max_parallel_shots": 1}},
        )
        await sampler.arun([(qc, np.zeros((2, 4))), bell()], shots=20)
    expected = [{"max_parallel_shots": 1, "seed_simulator": 3 + 2113 * k} for k in range(3)]
    assert sorted(log.options, key=lambda o: int(o["seed_simulator"])) == expected  # type: ignore[call-overload]


async def test_only_meas_level_2_is_accepted_and_refusals_come_before_any_task() -> None:
    from qiskit.exceptions import QiskitError

    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        level1 = {"run_options": {"meas_level": 1, "meas_return": "single"}}
        with pytest.raises(QiskitError, match="Unsupported meas_level: 1"):
            SchedulerSampler(s, options=level1).run([bell()])
        with pytest.raises(QiskitError, match="Unsupported meas_level: 1"):
            SchedulerEstimator(s, options=level1).run([(ansatz(), "ZZ", THETA)])
        with pytest.raises(ValueError, match="cannot set shots"):
            SchedulerSampler(s, options={"run_options": {"shots": 5}}).run([bell()])
        assert s.metrics().submitted == 0
        level2 = SchedulerSampler(s, options={"run_options": {"meas_level": 2}})
        counts = (await level2.arun([bell()], shots=30))[0].data.meas.get_counts()
    assert sum(counts.values()) == 30 and set(counts) <= {"00", "11"}


async def test_precision_zero_is_exact_unpinned_and_refused_pinned() -> None:
    # A reset of half a Bell pair makes even the exact values random: seeded, the job's
    # exact PUBs give what StatevectorEstimator(seed) gives them in one call.
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.reset(0)
    pubs = [(qc, [SparsePauliOp("ZI")] * 50), (ansatz(), h2_hamiltonian(), THETA)]
    reference = StatevectorEstimator(seed=12).run(pubs).result()
    async with QuantumScheduler(config=config()) as s:
        await s.register_backend("aer", aer_backend())
        exact = await SchedulerEstimator(s, default_precision=0.0, seed=12).arun(pubs)
        by_type = dict(s.metrics().by_type)
        pinned = SchedulerEstimator(s, backend="aer")
        with pytest.raises(ValueError, match=r"0-th pub has precision less than or equal to 0"):
            pinned.run(pubs, precision=0)
        with pytest.raises(ValueError, match=r"1-th pub has precision less than or equal to 0"):
            pinned.run([(qc, "ZI"), (qc, "ZI", None, 0.0)])
    assert by_type[TaskType.CLASSICAL] == 1 and by_type[TaskType.QUANTUM] == 0
    for ours, theirs in zip(exact, reference, strict=True):
        np.testing.assert_array_equal(ours.data.evs, theirs.data.evs)
        assert ours.metadata == theirs.metadata
    assert 0 < np.count_nonzero(exact[0].data.evs == 1.0) < 50
