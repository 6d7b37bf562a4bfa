"""BraketBackend on Braket's local simulators: circuits as OpenQASM 3 programs in Braket's
gate names, Bell circuits through the scheduler with the Braket task's ID on every result,
counts on the circuit's classical bits, and the circuits Braket cannot run refused."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("braket.devices")
pytest.importorskip("qiskit")

from braket.devices import LocalSimulator
from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.circuit.library import QFTGate
from qiskit.quantum_info import Statevector

from _provider_restart import kill_with_job_in_flight
from logosq_os_scheduler import (
    InvalidConfigError,
    PermanentBackendError,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskFailedError,
)
from logosq_os_scheduler.backends import BraketBackend, CircuitJob

pytestmark = [pytest.mark.braket, pytest.mark.qiskit]


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def bell_task(shots: int = 400) -> Any:
    return Task.quantum("bell").with_circuit(bell()).with_shots(shots)


async def run_one(backend: BraketBackend, circuit: QuantumCircuit, shots: int) -> dict[str, int]:
    (counts,) = await backend.run([CircuitJob(backend.prepare(circuit), shots, 1, "k")])
    assert isinstance(counts, dict)
    return counts


async def test_bell_through_the_scheduler_gives_only_00_and_11_with_the_task_id() -> None:
    backend = BraketBackend()
    assert not backend.supports_reattach and backend.supports_job_ids
    async with QuantumScheduler() as scheduler:
        await scheduler.register_backend("braket", backend)
        first = await (await scheduler.submit(bell_task()))
        second = await (await scheduler.submit(bell_task()))
    for result in (first, second):
        assert result.backend == "braket"
        assert set(result.counts) <= {"00", "11"} and sum(result.counts.values()) == 400
        assert 100 < result.counts["00"] < 300
        uuid.UUID(result.job_id)  # a local Braket task's ID is a UUID
    assert first.job_id != second.job_id


async def test_the_program_uses_braket_gate_names_and_no_include() -> None:
    backend = BraketBackend()
    qc = QuantumCircuit(3, 1)
    qc.sdg(0)
    qc.cx(0, 1)
    qc.p(0.25, 1)
    qc.measure(1, 0)
    program = backend.prepare(qc)
    assert program.qasm.splitlines()[:2] == ["OPENQASM 3.0;", "qubit[2] q;"]  # qubit 2 idle
    assert "si q[0];" in program.qasm and "cnot q[0], q[1];" in program.qasm
    assert "phaseshift(0.25) q[1];" in program.qasm
    assert program.qasm.endswith("bit[1] b;\nb[0] = measure q[1];\n")
    assert "include" not in program.qasm
    assert program.registers == ((1,),)


async def test_submit_job_returns_the_task_id_and_reattach_collects_it() -> None:
    backend = BraketBackend()
    job_id = await backend.submit_job([CircuitJob(backend.prepare(bell()), 100, 1, "k")])
    assert backend._jobs[job_id][0][0].id == job_id  # Braket's own task ID, unchanged
    (counts,) = await backend.reattach(job_id)
    assert isinstance(counts, dict) and sum(counts.values()) == 100
    # Collected: this process forgets it, and a local simulator cannot find it again.
    with pytest.raises(PermanentBackendError, match="local simulator") as caught:
        await backend.reattach(job_id)
    assert job_id in str(caught.value)


async def test_a_job_of_several_circuits_is_one_task_each_with_their_ids_joined() -> None:
    backend = BraketBackend(max_circuits_per_job=3)
    prepared = backend.prepare(bell())
    jobs = [CircuitJob(prepared, n, i, f"k{i}") for i, n in enumerate((10, 20, 30))]
    job_id = await backend.submit_job(jobs)
    assert job_id.split(",") == [task.id for task in backend._jobs[job_id][0]]
    outcomes = await backend.reattach(job_id)
    assert [sum(o.values()) for o in outcomes] == [10, 20, 30]  # type: ignore[union-attr]


async def test_counts_land_on_the_circuits_classical_bits_as_aer_writes_them() -> None:
    q = QuantumRegister(3)
    a = ClassicalRegister(1, "a")
    c = ClassicalRegister(3, "c")
    qc = QuantumCircuit(q, a, c)
    qc.x(1)
    qc.measure(1, a[0])
    qc.measure(0, c[0])
    qc.measure(2, c[2])  # c[1] is never measured: it reads 0
    assert await run_one(BraketBackend(), qc, 20) == {"000 1": 20}
    flipped = QuantumCircuit(3, 3)
    flipped.x(0)
    flipped.measure(0, 2)  # qubit 0 into the leftmost bit
    assert await run_one(BraketBackend(), flipped, 5) == {"100": 5}


async def test_rotations_survive_the_translation() -> None:
    # A QFT of a basis state spreads its probability by phases alone: any wrong angle or
    # sign in the translated program shows in the distribution.
    qc = QuantumCircuit(4)
    qc.x(0)
    qc.h(2)
    qc.append(QFTGate(4), range(4))
    qc.ry(0.7, 1)
    exact = Statevector(qc).probabilities_dict()
    qc.measure_all()
    counts = await run_one(BraketBackend(), qc, 8000)
    distance = sum(abs(counts.get(k, 0) / 8000 - p) for k, p in exact.items()) / 2
    assert distance < 0.05  # sampling alone gives about 0.02


# Braket warns that an ideal circuit runs faster on the state-vector simulator: this test
# runs one there on purpose.
@pytest.mark.filterwarnings(
    "ignore:You are running a noise-free circuit on the density matrix simulator:UserWarning"
)
async def test_the_density_matrix_simulator_by_name() -> None:
    backend = BraketBackend("braket_dm")
    assert isinstance(backend.device, LocalSimulator)
    counts = await run_one(backend, bell(), 200)
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 200


async def test_circuits_braket_cannot_run_fail_alone_with_the_reason() -> None:
    backend = BraketBackend()
    after = QuantumCircuit(1, 1)
    after.measure(0, 0)
    after.x(0)
    with pytest.raises(PermanentBackendError, match="after measuring it"):
        backend.prepare(after)
    twice = QuantumCircuit(1, 2)
    twice.measure(0, 0)
    twice.measure(0, 1)
    with pytest.raises(PermanentBackendError, match="twice"):
        backend.prepare(twice)
    with pytest.raises(PermanentBackendError, match="measures nothing"):
        backend.prepare(QuantumCircuit(2))
    reset = QuantumCircuit(1, 1)
    reset.reset(0)
    reset.measure(0, 0)
    with pytest.raises(PermanentBackendError, match="'reset'"):
        backend.prepare(reset)
    async with QuantumScheduler() as scheduler:
        await scheduler.register_backend("braket", backend)
        bad = await scheduler.submit(Task.quantum("bad").with_circuit(after).with_shots(10))
        good = await scheduler.submit(bell_task(10))
        assert sum((await good).counts.values()) == 10
        with pytest.raises(TaskFailedError, match="after measuring it") as failed:
            await bad
        assert isinstance(failed.value.__cause__, PermanentBackendError)


async def test_a_local_task_cut_off_by_a_restart_runs_again(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    lost = kill_with_job_in_flight("braket", journal)
    config = SchedulerConfig(workers=1, journal=journal)
    async with QuantumScheduler(config=config) as scheduler:
        await scheduler.register_backend("braket", BraketBackend(name="braket"))
        result = await scheduler.task("bell")
    assert result.recovery == "rerun"
    assert result.job_id is not None and result.job_id != lost
    assert set(result.counts) <= {"00", "11"} and sum(result.counts.values()) == 200


async def test_settings_are_checked() -> None:
    with pytest.raises(InvalidConfigError, match="device"):
        BraketBackend(object())
    with pytest.raises(InvalidConfigError, match="max_circuits_per_job"):
        BraketBackend(max_circuits_per_job=0)
    with pytest.raises(InvalidConfigError, match="poll_interval"):
        BraketBackend(poll_interval=math.nan)


async def test_counts_of_a_task_found_by_id_alone_read_the_same_for_one_register() -> None:
    # After a restart the circuit is gone and only the task's result is there: its bits,
    # read highest first, give what the circuit's register gives.
    from braket.ir.openqasm import Program

    from logosq_os_scheduler.backends._braket import _counts_of

    qc = QuantumCircuit(3, 3)
    qc.x(0)
    qc.measure([0, 1, 2], [0, 1, 2])
    program = BraketBackend().prepare(qc)
    result = LocalSimulator().run(Program(source=program.qasm), shots=10).result()
    assert dict(result.measurement_counts) == {"100": 10}  # Braket's: bit 0 leftmost
    assert _counts_of(result, None) == _counts_of(result, program.registers) == {"001": 10}


async def test_a_circuit_of_measurements_alone_runs() -> None:
    qc = QuantumCircuit(2, 2)
    qc.measure([0, 1], [0, 1])
    assert await run_one(BraketBackend(), qc, 7) == {"00": 7}
