"""IBMRuntimeBackend in qiskit-ibm-runtime's local testing mode: Bell circuits through the
scheduler on an ideal AerSimulator and on offline IBM device models, in job, batch and
session execution modes, with the Sampler job's ID on every result."""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("qiskit_aer")
pytest.importorskip("qiskit_ibm_runtime")

from qiskit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime import Batch, Session
from qiskit_ibm_runtime.exceptions import RuntimeJobNotFound
from qiskit_ibm_runtime.fake_provider import FakeBrisbane, FakeManilaV2

from _provider_restart import kill_with_job_in_flight
from logosq_os_scheduler import (
    InvalidConfigError,
    PermanentBackendError,
    QuantumScheduler,
    SchedulerConfig,
    Task,
)
from logosq_os_scheduler.backends import CircuitJob, IBMRuntimeBackend

pytestmark = pytest.mark.qiskit


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def bell_task(shots: int = 400) -> Any:
    return Task.quantum("bell").with_circuit(bell()).with_shots(shots)


def correlated(counts: dict[str, int]) -> float:
    return (counts.get("00", 0) + counts.get("11", 0)) / sum(counts.values())


async def test_bell_on_an_ideal_simulator_gives_only_00_and_11_with_the_job_id() -> None:
    backend = IBMRuntimeBackend(AerSimulator(), seed=5)
    assert backend.local and not backend.supports_reattach and backend.supports_job_ids
    async with QuantumScheduler() as scheduler:
        await scheduler.register_backend("ibm", backend)
        first = await (await scheduler.submit(bell_task()))
        second = await (await scheduler.submit(bell_task()))
    for result in (first, second):
        assert result.backend == "ibm"
        assert set(result.counts) <= {"00", "11"} and sum(result.counts.values()) == 400
        assert 100 < result.counts["00"] < 300
        uuid.UUID(result.job_id)  # local testing mode's job IDs are UUIDs
    assert first.job_id != second.job_id


@pytest.mark.parametrize("execution", ["job", "batch", "session"])
async def test_bell_on_a_noisy_device_model_in_each_execution_mode(execution: str) -> None:
    backend = IBMRuntimeBackend(FakeManilaV2(), execution=execution, seed=11)  # type: ignore[arg-type]
    async with QuantumScheduler() as scheduler:
        await scheduler.register_backend("ibm", backend)
        results = [await (await scheduler.submit(bell_task())) for _ in range(2)]
        if execution == "job":
            assert backend._mode is None
        else:  # one Batch / Session, opened by the first job and shared by the next
            assert isinstance(backend._mode, Batch if execution == "batch" else Session)
    await backend.aclose()  # the scheduler closes only the backends it built
    assert backend._mode is None
    for result in results:
        assert sum(result.counts.values()) == 400
        assert correlated(result.counts) > 0.85  # noise: mostly 00 and 11, not only
        assert result.job_id is not None
    assert results[0].job_id != results[1].job_id


async def test_the_modes_run_the_same_sampler_so_a_seed_gives_the_same_counts() -> None:
    counts = []
    for execution in ("job", "batch", "session"):
        backend = IBMRuntimeBackend(FakeManilaV2(), execution=execution, seed=3)  # type: ignore[arg-type]
        async with QuantumScheduler() as scheduler:
            await scheduler.register_backend("ibm", backend)
            counts.append((await (await scheduler.submit(bell_task()))).counts)
    assert counts[0] == counts[1] == counts[2]


@pytest.mark.slow
async def test_bell_on_fake_brisbane() -> None:
    backend = IBMRuntimeBackend(FakeBrisbane(), seed=1)
    async with QuantumScheduler() as scheduler:
        await scheduler.register_backend("brisbane", backend)
        result = await (await scheduler.submit(bell_task(200)))
    assert backend.num_qubits == 127 and backend.coupling_map is not None
    assert sum(result.counts.values()) == 200 and correlated(result.counts) > 0.85
    assert result.job_id is not None


async def test_submit_job_returns_the_sampler_job_id_and_reattach_collects_it() -> None:
    backend = IBMRuntimeBackend(AerSimulator(), seed=2)
    job_id = await backend.submit_job([CircuitJob(backend.prepare(bell()), 100, 1, "k1")])
    assert backend._jobs[job_id][0].job_id() == job_id  # the provider's own ID, unchanged
    outcomes = await backend.reattach(job_id)
    assert len(outcomes) == 1 and sum(outcomes[0].values()) == 100  # type: ignore[union-attr]
    # Collected: this process forgets it, and local testing mode cannot find it again.
    with pytest.raises(PermanentBackendError, match="local testing mode") as caught:
        await backend.reattach(job_id)
    assert job_id in str(caught.value)


async def test_a_job_of_circuits_with_different_shots_is_one_sampler_job_per_run() -> None:
    backend = IBMRuntimeBackend(AerSimulator(), seed=2)
    jobs = [
        CircuitJob(backend.prepare(bell()), n, i, f"k{i}") for i, n in enumerate((100, 100, 30))
    ]
    job_id = await backend.submit_job(jobs)
    parts = job_id.split(",")
    assert len(parts) == 2 and [p.job_id() for p in backend._jobs[job_id]] == parts
    outcomes = await backend.reattach(job_id)
    assert [sum(o.values()) for o in outcomes] == [100, 100, 30]  # type: ignore[union-attr]


async def test_counts_keep_aers_register_order() -> None:
    q = QuantumRegister(3)
    a = ClassicalRegister(1, "a")
    c = ClassicalRegister(2, "c")
    qc = QuantumCircuit(q, a, c)
    qc.x(1)
    qc.measure(1, a[0])
    qc.measure(0, c[0])
    qc.measure(1, c[1])
    backend = IBMRuntimeBackend(AerSimulator())
    (counts,) = await backend.run([CircuitJob(backend.prepare(qc), 20, 1, "k")])
    assert counts == AerSimulator().run(qc, shots=20).result().get_counts() == {"10 1": 20}


class _JobsByID:
    """The service's job lookup (QiskitRuntimeService.job) over jobs that another backend
    submitted in local testing mode: the real service cannot be reached offline."""

    def __init__(self, jobs: dict[str, Any]) -> None:
        self._jobs = jobs

    def job(self, job_id: str) -> Any:
        if job_id not in self._jobs:
            raise RuntimeJobNotFound(f"Job not found: {job_id}")
        return self._jobs[job_id]


async def test_at_the_service_reattach_finds_a_job_it_did_not_submit_by_its_id() -> None:
    submitter = IBMRuntimeBackend(AerSimulator(), seed=4)
    jobs = [CircuitJob(submitter.prepare(bell()), n, i, f"k{i}") for i, n in enumerate((50, 80))]
    job_id = await submitter.submit_job(jobs)
    runtime_jobs = {job.job_id(): job for job in submitter._jobs[job_id]}
    # Another backend, as a restarted scheduler builds it, whose service path is taken: it
    # polls each job's status and reads the results of the jobs it retrieved by ID.
    collector = IBMRuntimeBackend(AerSimulator(), poll_interval=0.01)
    collector._local = False
    collector._service = _JobsByID(runtime_jobs)
    outcomes = await collector.reattach(job_id)
    assert [sum(o.values()) for o in outcomes] == [50, 80]  # type: ignore[union-attr]
    assert all(set(o) <= {"00", "11"} for o in outcomes)  # type: ignore[arg-type]
    with pytest.raises(PermanentBackendError, match="knows no job 'nope'"):
        await collector.reattach("nope")


async def test_a_local_job_cut_off_by_a_restart_runs_again(tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    lost = kill_with_job_in_flight("ibm", journal)
    config = SchedulerConfig(workers=1, journal=journal)
    async with QuantumScheduler(config=config) as scheduler:
        await scheduler.register_backend("ibm", IBMRuntimeBackend(FakeManilaV2(), name="ibm"))
        result = await scheduler.task("bell")
    # Local testing mode cannot find the old job by its ID: the task ran again, as a new job.
    assert result.recovery == "rerun"
    assert result.job_id is not None and result.job_id != lost
    assert sum(result.counts.values()) == 200 and correlated(result.counts) > 0.85


async def test_settings_are_checked() -> None:
    with pytest.raises(InvalidConfigError, match="execution"):
        IBMRuntimeBackend(AerSimulator(), execution="sessions")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match="backend"):
        IBMRuntimeBackend("ibm_brisbane")
    with pytest.raises(InvalidConfigError, match="poll_interval"):
        IBMRuntimeBackend(AerSimulator(), poll_interval=0)
    with pytest.raises(InvalidConfigError, match="poll_interval"):
        IBMRuntimeBackend(AerSimulator(), poll_interval=math.nan)
    with pytest.raises(PermanentBackendError, match="measures nothing"):
        IBMRuntimeBackend(AerSimulator()).prepare(QuantumCircuit(2))
