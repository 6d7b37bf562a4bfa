"""The guard on costly simulations: the cost model, refusals with their ways out, and
costly runs let through with their progress."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")

from qiskit import QuantumCircuit
from qiskit_ibm_runtime.fake_provider import FakeBrisbane

from logosq_os_scheduler import (
    InvalidConfigError,
    PermanentBackendError,
    QuantumScheduler,
    SimulationTooCostlyError,
    Task,
    TaskFailedError,
)
from logosq_os_scheduler.backends import QiskitBackend
from logosq_os_scheduler.backends._qiskit._cost import (
    CircuitProfile,
    CostModel,
    estimate,
    profile,
    resolve_method,
)

pytestmark = pytest.mark.qiskit


def chain(n: int) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
    qc.measure_all()
    return qc


@pytest.fixture(scope="module")
def brisbane() -> FakeBrisbane:
    return FakeBrisbane()


# --- the model ------------------------------------------------------------------------------


def test_profile_reads_qubits_operations_clifford_and_bond() -> None:
    p = profile(chain(6))
    assert (p.qubits, p.operations, p.clifford, p.bond_log2) == (6, 12, True, 1)
    t = QuantumCircuit(3)
    t.t(0)
    t.cx(0, 2)  # crosses both cuts of the line 0-1-2
    t.cx(0, 2)
    t.cx(1, 2)  # qubit 1 joins the line
    assert profile(t) == CircuitProfile(qubits=3, operations=4, clifford=False, bond_log2=1)
    r = QuantumCircuit(1)
    r.rz(3.141592653589793 / 2, 0)
    assert profile(r).clifford


def test_automatic_method_resolves_as_aer_does() -> None:
    clifford = CircuitProfile(qubits=20, operations=100, clifford=True, bond_log2=1)
    other = CircuitProfile(qubits=20, operations=100, clifford=False, bond_log2=1)
    small = CircuitProfile(qubits=6, operations=100, clifford=False, bond_log2=1)
    assert resolve_method("automatic", clifford, noisy=False, shots=100) == "stabilizer"
    assert resolve_method("automatic", clifford, noisy=True, shots=100) == "statevector"
    assert resolve_method("automatic", other, noisy=False, shots=100) == "statevector"
    assert resolve_method("automatic", small, noisy=True, shots=100) == "density_matrix"
    assert resolve_method("unitary", other, noisy=False, shots=1) == "statevector"


def test_a_noisy_statevector_costs_per_shot_and_doubles_with_each_qubit() -> None:
    def seconds(n: int, shots: int, noisy: bool = True) -> float:
        p = CircuitProfile(qubits=n, operations=100, clifford=False, bond_log2=1)
        return estimate([p], shots=shots, method="statevector", noisy=noisy, threads=1).seconds

    assert seconds(21, 10) / seconds(20, 10) == pytest.approx(2, rel=0.01)
    assert seconds(20, 20) / seconds(20, 10) == pytest.approx(2, rel=0.01)
    # Without noise the final state is sampled: the shots cost next to nothing.
    assert seconds(20, 1000, noisy=False) < 1.1 * seconds(20, 1, noisy=False)
    p = CircuitProfile(qubits=25, operations=10, clifford=False, bond_log2=1)
    assert estimate([p], shots=1, method="statevector", noisy=True, threads=1).memory_bytes == (
        16 * 2**25
    )


def test_the_cost_model_learns_only_from_calls_long_enough_to_teach_it() -> None:
    model = CostModel()
    p = CircuitProfile(qubits=20, operations=100, clifford=False, bond_log2=1)
    modelled = estimate([p], shots=10, method="statevector", noisy=True, threads=1)
    short = estimate([profile(chain(2))], shots=1, method="statevector", noisy=True, threads=1)
    model.learn(short, 5.0)
    assert model.correction("statevector", True) is None
    model.learn(modelled, modelled.seconds * 3)
    assert model.correction("statevector", True) == pytest.approx(3)
    assert model.correction("statevector", False) is None


# --- the guard ------------------------------------------------------------------------------


async def test_the_25_qubit_chain_on_brisbane_is_refused_at_once_with_its_estimate(
    brisbane: FakeBrisbane,
) -> None:
    """The issue's case: 25 qubits, 200 shots, the device's full noise model. It is refused
    in under a second, naming the estimate and the ways out; a small job passes."""
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", QiskitBackend(brisbane, noise="full"))
        started = time.perf_counter()
        handle = await s.submit(Task.quantum("ghz25").with_circuit(chain(25)).with_shots(200))
        with pytest.raises(TaskFailedError) as info:
            await handle
        elapsed = time.perf_counter() - started
        small = await s.submit(Task.quantum("ghz5").with_circuit(chain(5)).with_shots(64))
        counts = (await small).counts
    assert elapsed < 1.0
    error = info.value.__cause__
    assert isinstance(error, SimulationTooCostlyError)
    assert isinstance(error, PermanentBackendError)  # never retried: the same job costs the same
    assert error.budget_seconds == 300
    assert error.seconds > 300
    assert error.memory_bytes == 16 * 2**25
    message = str(error)
    assert "25 qubits, statevector with noise, 1 circuit x 200 shots" in message
    assert "512 MiB" in message and "max_simulation_seconds" in message
    ways = " | ".join(error.ways_out)
    assert "fewer shots" in ways
    assert "with_run_options(method='matrix_product_state')" in ways
    assert "noise='active'" in ways
    assert "allow_costly=True" in ways
    assert sum(counts.values()) == 64


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_a_costly_circuit_is_refused_alone_and_its_job_neighbours_run(
    brisbane: FakeBrisbane, isolation: str
) -> None:
    """One bad circuit never fails its batch neighbours: a job whose one circuit is over the
    budget (the 25-qubit chain) runs the others and refuses only that one. The same shots
    put them all in one simulator call, which as a whole is over the budget."""
    backend = QiskitBackend(brisbane, noise="full", isolation=isolation, seed=3)
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", backend)
        small = [
            Task.quantum(f"ghz3-{i}")
            .with_circuit(chain(3))
            .with_shots(200)
            .with_backend("ibm_brisbane")
            for i in range(3)
        ]
        big = Task.quantum("ghz25").with_circuit(chain(25)).with_shots(200)
        handles = await s.submit_many([*small, big.with_backend("ibm_brisbane")])
        results = [await h for h in handles[:3]]
        with pytest.raises(TaskFailedError) as info:
            await handles[3]
    assert [sum(r.counts.values()) for r in results] == [200, 200, 200]
    assert isinstance(info.value.__cause__, SimulationTooCostlyError)
    assert "1 circuit x 200 shots" in str(info.value.__cause__)


async def test_a_circuit_too_costly_on_one_backend_goes_to_another_unless_pinned(
    brisbane: FakeBrisbane,
) -> None:
    from qiskit_aer import AerSimulator

    from logosq_os_scheduler import RoutingRule

    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", QiskitBackend(brisbane, isolation="thread"))
        await s.register_backend("aer", AerSimulator())
        s.set_routing_rules([RoutingRule().when_qubit_count_exceeds(20).route_to("ibm_brisbane")])
        moved = await (
            await s.submit(Task.quantum("ghz25").with_circuit(chain(25)).with_shots(200))
        )
        pinned = await s.submit(
            Task.quantum("pinned")
            .with_circuit(chain(25))
            .with_shots(200)
            .with_backend("ibm_brisbane")
        )
        with pytest.raises(TaskFailedError) as info:
            await pinned
        reroutes = s.metrics().reroutes
    # Refused on the device model, it ran on the ideal simulator instead.
    assert moved.backend == "aer" and moved.backends_tried == ("ibm_brisbane", "aer")
    assert sum(moved.counts.values()) == 200 and reroutes == 1
    assert isinstance(info.value.__cause__, SimulationTooCostlyError)


async def test_a_task_sets_its_own_budget_and_a_bad_guard_option_fails_it(
    brisbane: FakeBrisbane,
) -> None:
    backend = QiskitBackend(brisbane, isolation="thread", max_simulation_seconds=None)
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", backend)
        tight = await s.submit(
            Task.quantum("tight")
            .with_circuit(chain(12))
            .with_shots(100)
            .with_run_options(max_simulation_seconds=0.001)
        )
        bad = await s.submit(
            Task.quantum("bad").with_circuit(chain(3)).with_run_options(allow_costly="yes")
        )
        with pytest.raises(TaskFailedError) as refused:
            await tight
        with pytest.raises(TaskFailedError) as invalid:
            await bad
    assert isinstance(refused.value.__cause__, SimulationTooCostlyError)
    assert "max_simulation_seconds=" in str(refused.value.__cause__)
    assert isinstance(invalid.value.__cause__, PermanentBackendError)
    assert "allow_costly must be True or False, got 'yes'" in str(invalid.value.__cause__)


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_a_costly_simulation_allowed_runs_in_parts_with_its_progress_logged(
    brisbane: FakeBrisbane, isolation: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A moderate job over a tight budget: refused as it stands, run when allowed, in ten
    parts whose counts add up to its shots, each part logged."""
    backend = QiskitBackend(brisbane, isolation=isolation, seed=7, max_simulation_seconds=0.001)
    task = Task.quantum("ghz8").with_circuit(chain(8)).with_shots(100)
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", backend)
        with pytest.raises(TaskFailedError) as info:
            await (await s.submit(task))
        with caplog.at_level(logging.INFO, logger="logosq_os_scheduler.backends.qiskit"):
            allowed = await s.submit(
                Task.quantum("ghz8")
                .with_circuit(chain(8))
                .with_shots(100)
                .with_run_options(allow_costly=True)
            )
            counts = (await allowed).counts
    assert isinstance(info.value.__cause__, SimulationTooCostlyError)
    assert sum(counts.values()) == 100
    assert max(counts, key=counts.__getitem__) in ("00000000", "11111111")
    messages = [r.getMessage() for r in caplog.records]
    assert any("over its budget (allow_costly)" in m and "8 qubits" in m for m in messages)
    progress = [m for m in messages if "shots after" in m]
    assert len(progress) == 10
    assert "10/100 shots" in progress[0] and "100/100 shots" in progress[-1]
    assert backend.simulations() == ()  # none running now


def test_estimate_simulation_prices_a_job_before_it_runs(brisbane: FakeBrisbane) -> None:
    backend = QiskitBackend(brisbane, isolation="thread", simulator_threads=2)
    noisy = backend.estimate_simulation([chain(25)], 200)
    mps = backend.estimate_simulation([chain(25)], 200, {"method": "matrix_product_state"})
    assert (noisy.qubits, noisy.method, noisy.noisy, noisy.shots) == (25, "statevector", True, 200)
    assert noisy.seconds > 300 > mps.seconds
    ideal = QiskitBackend(brisbane, noise="none", isolation="thread").estimate_simulation(
        [chain(25)], 200
    )
    assert ideal.method == "stabilizer" and ideal.seconds < 1


def test_budgets_are_checked() -> None:
    with pytest.raises(InvalidConfigError, match="max_simulation_seconds"):
        QiskitBackend(FakeBrisbane(), max_simulation_seconds=0)
    with pytest.raises(InvalidConfigError, match="max_simulation_memory"):
        QiskitBackend(FakeBrisbane(), max_simulation_memory=-1)


def test_equal_circuits_share_one_profile_through_the_transpile_cache(
    brisbane: FakeBrisbane,
) -> None:
    backend = QiskitBackend(brisbane, isolation="thread")
    first, second = backend.prepare(chain(18)), backend.prepare(chain(18))
    assert first.memo is second.memo
    backend.estimate_simulation([first], 100)
    assert second.memo.profile is not None and second.memo.profile.qubits == 18


async def test_a_costly_simulation_is_visible_while_it_runs(brisbane: FakeBrisbane) -> None:
    """simulations() shows the running part's progress (seen from inside each part)."""
    seen = []

    class Watched(QiskitBackend):
        def _simulate(self, prepared: Any, shots: int, options: Any) -> Any:
            seen.extend((p.shots_done, p.shots, p.task_ids) for p in self.simulations())
            return super()._simulate(prepared, shots, options)

    backend = Watched(brisbane, isolation="thread", max_simulation_seconds=0.001)
    async with QuantumScheduler(2) as s:
        await s.register_backend("ibm_brisbane", backend)
        handle = await s.submit(
            Task.quantum("ghz8")
            .with_circuit(chain(8))
            .with_shots(30)
            .with_run_options(allow_costly=True)
        )
        await handle
    assert [done for done, _, _ in seen] == list(range(0, 30, 3))
    assert {(total, ids) for _, total, ids in seen} == {(30, (handle.task_id,))}
    assert backend.simulations() == ()
