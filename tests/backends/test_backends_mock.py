"""MockBackend: seeded counts, latency under a manual clock, faults, idempotency, records."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from logosq_os_scheduler import (
    BackendUnavailableError,
    InvalidConfigError,
    ManualClock,
    PermanentBackendError,
    TransientBackendError,
)
from logosq_os_scheduler.backends import (
    CircuitJob,
    CircuitRequirements,
    CircuitSpec,
    MockBackend,
    analyze_circuit,
)


def jobs(*sizes: int, shots: int = 100, prefix: str = "k") -> list[CircuitJob]:
    return [
        CircuitJob(CircuitSpec(n), shots=shots, task_id=i, idempotency_key=f"{prefix}{i}")
        for i, n in enumerate(sizes)
    ]


def manual_sleep(clock: ManualClock):  # type: ignore[no-untyped-def]
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return sleep


async def test_counts_sum_to_shots_with_the_circuit_width() -> None:
    backend = MockBackend(seed=1)
    outcomes = await backend.run(
        [
            CircuitJob(CircuitSpec(3), shots=1000, task_id=1, idempotency_key="a"),
            CircuitJob(CircuitSpec(1), shots=7, task_id=2, idempotency_key="b"),
            CircuitJob(CircuitSpec(30), shots=50, task_id=3, idempotency_key="c"),
        ]
    )
    assert [sum(o.values()) for o in outcomes if isinstance(o, dict)] == [1000, 7, 50]
    assert {len(k) for k in outcomes[0]} == {3}  # type: ignore[union-attr]
    assert {len(k) for k in outcomes[2]} == {30}  # type: ignore[union-attr]


async def test_same_seed_same_results_and_different_seed_differs() -> None:
    async def sample(seed: int) -> list[object]:
        backend = MockBackend(seed=seed, failure_rate=0.3, circuit_failure_rate=0.2)
        results: list[object] = []
        for round_ in range(10):
            try:
                out = await backend.run(jobs(2, 3, 4, prefix=f"r{round_}-"))
                results.append([o if isinstance(o, dict) else type(o).__name__ for o in out])
            except TransientBackendError:
                results.append("job failed")
        return results

    first = await sample(42)
    assert first == await sample(42)
    assert first != await sample(43)
    assert "job failed" in first  # the rates above do inject faults over ten jobs


async def test_latency_uses_the_injected_sleep_and_clock() -> None:
    clock = ManualClock()
    backend = MockBackend(latency=(0.05, 0.01), clock=clock, sleep=manual_sleep(clock))
    await backend.run(jobs(2, 2, 2, prefix="a"))
    await backend.run(jobs(2, prefix="b"))
    assert [(r.started, r.finished) for r in backend.records] == [
        (0.0, pytest.approx(0.08)),
        (pytest.approx(0.08), pytest.approx(0.14)),
    ]
    assert backend.estimate_job_seconds(circuits=3, shots=300) == pytest.approx(0.08)


async def test_transient_failure_rate_one_always_fails() -> None:
    backend = MockBackend(failure_rate=1.0, seed=0)
    with pytest.raises(TransientBackendError, match="injected transient job failure"):
        await backend.run(jobs(2))
    stats = backend.statistics()
    assert (stats.jobs, stats.failed_jobs, stats.completed_jobs, stats.active_jobs) == (1, 1, 0, 0)


async def test_a_hang_waits_until_cancelled() -> None:
    backend = MockBackend(hang_rate=1.0, seed=0)
    task = asyncio.create_task(backend.run(jobs(2)))
    await asyncio.sleep(0)  # the job starts and reaches its hang on its first step
    assert backend.statistics().hanging_jobs == 1
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = backend.statistics()
    assert (stats.hung_jobs, stats.hanging_jobs, stats.cancelled_jobs, stats.active_jobs) == (
        1,
        0,
        1,
        0,
    )
    assert backend.records[-1].outcome == "cancelled"


async def test_down_and_up() -> None:
    backend = MockBackend(seed=0)
    backend.go_down()
    assert backend.is_down and not await backend.check_health()
    with pytest.raises(BackendUnavailableError, match="is down"):
        await backend.run(jobs(1))
    backend.go_up()
    assert await backend.check_health()
    assert len(await backend.run(jobs(1))) == 1
    assert backend.statistics().unavailable == 1


async def test_going_down_while_a_job_runs_loses_that_job() -> None:
    release = asyncio.Event()

    async def sleep(_: float) -> None:
        await release.wait()

    backend = MockBackend(seed=0, sleep=sleep)
    task = asyncio.create_task(backend.run(jobs(1)))
    await asyncio.sleep(0)
    backend.go_down()
    release.set()
    with pytest.raises(BackendUnavailableError, match="went down while the job ran"):
        await task
    assert backend.records[-1].outcome == "unavailable"


async def test_one_circuit_failing_does_not_fail_its_neighbours() -> None:
    backend = MockBackend(seed=3, circuit_failure_rate=0.5)
    outcomes = await backend.run(jobs(*([2] * 40)))
    failures = [o for o in outcomes if isinstance(o, TransientBackendError)]
    counts = [o for o in outcomes if isinstance(o, dict)]
    assert len(failures) + len(counts) == 40
    assert 5 < len(failures) < 35
    assert all(sum(c.values()) == 100 for c in counts)
    assert backend.statistics().circuit_failures == len(failures)


async def test_a_circuit_too_wide_fails_alone_and_permanently() -> None:
    backend = MockBackend(num_qubits=4, seed=0)
    outcomes = await backend.run(jobs(2, 5, 4))
    assert isinstance(outcomes[0], dict) and isinstance(outcomes[2], dict)
    assert isinstance(outcomes[1], PermanentBackendError)
    assert "has 4 qubits, circuit needs 5" in str(outcomes[1])


async def test_a_dense_circuit_runs_on_a_coupling_map() -> None:
    # A triangle of two-qubit gates needs SWAPs on a line, not a different device.
    backend = MockBackend(num_qubits=5, all_to_all=False, seed=0)
    triangle = CircuitSpec(3, [(0, 1), (1, 2), (0, 2)])
    outcomes = await backend.run([CircuitJob(triangle, 10, 1, "t")])
    assert isinstance(outcomes[0], dict) and sum(outcomes[0].values()) == 10


async def test_an_oversized_job_is_refused() -> None:
    backend = MockBackend(max_circuits_per_job=2)
    with pytest.raises(PermanentBackendError, match="exceeds max_circuits_per_job=2"):
        await backend.run(jobs(1, 1, 1))
    assert backend.records[-1].outcome == "rejected"


async def test_idempotency_same_key_twice_runs_once() -> None:
    backend = MockBackend(seed=9)
    first = await backend.run(jobs(3, prefix="task-"))
    again = await backend.run(jobs(3, prefix="task-"))
    assert first == again
    stats = backend.statistics()
    assert (stats.circuits_run, stats.idempotent_replays) == (1, 1)


async def test_idempotency_within_one_job_and_across_running_jobs() -> None:
    release = asyncio.Event()

    async def sleep(_: float) -> None:
        await release.wait()

    backend = MockBackend(seed=9, sleep=sleep, max_concurrent_jobs=2)
    same = CircuitJob(CircuitSpec(2), 100, 1, "shared")
    first = asyncio.create_task(backend.run([same, same]))
    second = asyncio.create_task(backend.run([same]))
    await asyncio.sleep(0)
    release.set()
    a, b = await first
    (c,) = await second
    assert a == b == c
    assert backend.statistics().circuits_run == 1
    assert backend.statistics().max_concurrent_observed == 2


async def test_a_key_whose_job_was_lost_runs_on_retry() -> None:
    release = asyncio.Event()

    async def sleep(_: float) -> None:
        await release.wait()

    backend = MockBackend(seed=0, sleep=sleep)
    lost = asyncio.create_task(backend.run(jobs(2)))
    await asyncio.sleep(0)
    backend.go_down()
    release.set()
    with pytest.raises(BackendUnavailableError):
        await lost
    backend.go_up()
    (outcome,) = await backend.run(jobs(2))  # same key: it never completed, so it runs now
    assert isinstance(outcome, dict)
    stats = backend.statistics()
    assert (stats.circuits_run, stats.idempotent_replays) == (1, 0)


async def test_records_job_sizes_and_peak_concurrency() -> None:
    gate = asyncio.Event()

    async def sleep(_: float) -> None:
        await gate.wait()

    backend = MockBackend(seed=0, sleep=sleep, max_concurrent_jobs=3)
    tasks = [asyncio.create_task(backend.run(jobs(*([1] * n), prefix=f"{n}-"))) for n in (1, 2, 3)]
    await asyncio.sleep(0)
    assert backend.statistics().active_jobs == 3
    gate.set()
    await asyncio.gather(*tasks)
    assert backend.job_sizes == [1, 2, 3]
    assert backend.statistics().max_concurrent_observed == 3
    assert backend.statistics().active_jobs == 0


def test_declared_shape() -> None:
    line = MockBackend(num_qubits=3, all_to_all=False)
    assert line.coupling_map == frozenset({(0, 1), (1, 0), (1, 2), (2, 1)})
    assert not line.all_to_all
    custom = MockBackend(num_qubits=3, coupling_map=[(0, 2)])
    assert custom.coupling_map == frozenset({(0, 2), (2, 0)})
    assert MockBackend().all_to_all and MockBackend().coupling_map is None
    req = analyze_circuit(CircuitSpec(4, [(0, 1), (0, 2), (0, 3), (1, 2)]))
    assert req == CircuitRequirements(4, req.interactions, False, 3, dense=True)
    assert MockBackend(num_qubits=4).check_requirements(req) is None
    sparse = MockBackend(num_qubits=4, all_to_all=False)
    # A dense circuit is a cost on a coupling map, not a refusal; asking for all-to-all is.
    assert sparse.check_requirements(req) is None
    asked = dataclasses.replace(req, requires_all_to_all=True)
    assert "with_all_to_all() out" in (sparse.check_requirements(asked) or "")


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"hang_rate": -0.1}, "hang_rate"),
        ({"latency": -1.0}, "latency"),
        ({"latency": (0.1, -0.1)}, "latency"),
        ({"num_qubits": 0}, "num_qubits"),
        ({"max_circuits_per_job": 0}, "max_circuits_per_job"),
        ({"coupling_map": [(0, 9)], "num_qubits": 3}, "coupling_map"),
        ({"sampling": "magic"}, "sampling"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], setting: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        MockBackend(**kwargs)  # type: ignore[arg-type]
    assert info.value.setting == setting


@pytest.mark.qiskit
async def test_qiskit_circuits_uniform_and_exact_sampling() -> None:
    qiskit = pytest.importorskip("qiskit")
    bell = qiskit.QuantumCircuit(2, 2)
    bell.h(0)
    bell.cx(0, 1)
    bell.measure([0, 1], [0, 1])

    uniform = MockBackend(seed=1)
    (counts,) = await uniform.run([CircuitJob(bell, 4000, 1, "u")])
    assert isinstance(counts, dict) and set(counts) == {"00", "01", "10", "11"}

    exact = MockBackend(seed=1, sampling="exact")
    (counts,) = await exact.run([CircuitJob(bell, 4000, 1, "e")])
    assert isinstance(counts, dict) and set(counts) == {"00", "11"}
    assert sum(counts.values()) == 4000 and abs(counts["00"] - 2000) < 200

    # Two registers: Qiskit's key format separates them with a space, first register right.
    a, b = qiskit.ClassicalRegister(1, "a"), qiskit.ClassicalRegister(1, "b")
    qc = qiskit.QuantumCircuit(qiskit.QuantumRegister(2), a, b)
    qc.x(1)
    qc.measure(0, 0)
    qc.measure(1, 1)
    (counts,) = await exact.run([CircuitJob(qc, 10, 2, "r")])
    assert counts == {"1 0": 10}

    mid = qiskit.QuantumCircuit(1, 1)
    mid.measure(0, 0)
    mid.x(0)
    (outcome,) = await exact.run([CircuitJob(mid, 10, 3, "m")])
    assert isinstance(outcome, PermanentBackendError)

    # A circuit that measures nothing has no counts, on a mock as on Aer or a device; its
    # neighbours in the job run.
    silent = qiskit.QuantumCircuit(2)
    silent.h(0)
    unmeasured = qiskit.QuantumCircuit(2, 2)  # classical bits, but nothing written to them
    unmeasured.h(0)
    for backend in (uniform, exact):
        outcomes = await backend.run(
            [
                CircuitJob(silent, 10, 4, ""),
                CircuitJob(unmeasured, 10, 5, ""),
                CircuitJob(bell, 10, 6, ""),
            ]
        )
        for outcome in outcomes[:2]:
            assert isinstance(outcome, PermanentBackendError)
            assert "measures nothing" in str(outcome)
        assert isinstance(outcomes[2], dict) and sum(outcomes[2].values()) == 10


async def test_a_mock_cannot_reattach_its_jobs_die_with_the_process() -> None:
    backend = MockBackend("m")
    assert backend.supports_reattach is False
    with pytest.raises(PermanentBackendError, match="'m': cannot submit a job by ID"):
        await backend.submit_job(jobs(2))
    with pytest.raises(PermanentBackendError, match="cannot reattach to job 'j-1'"):
        await backend.reattach("j-1")
    assert backend.statistics().jobs == 0


@pytest.mark.qiskit
async def test_a_qiskit_circuit_is_checked_by_the_qubits_it_uses() -> None:
    qiskit = pytest.importorskip("qiskit")
    backend = MockBackend(num_qubits=3, seed=1)
    # Declared on 6 qubits, using 2: it runs on 3 (what it uses is what counts).
    sparse = qiskit.QuantumCircuit(6, 2)
    sparse.h(4)
    sparse.cx(4, 5)
    sparse.measure([4, 5], [0, 1])
    # Declared on 6, using 4: refused, alone, naming what it needs.
    wide = qiskit.QuantumCircuit(6, 4)
    wide.h(0)
    for t in range(1, 4):
        wide.cx(0, t)
    wide.measure(range(4), range(4))
    fits = qiskit.QuantumCircuit(3, 3)
    fits.h(0)
    fits.measure(range(3), range(3))
    ok, refused, small = await backend.run(
        [CircuitJob(sparse, 10, 1, "s"), CircuitJob(wide, 10, 2, "w"), CircuitJob(fits, 10, 3, "f")]
    )
    assert isinstance(ok, dict) and sum(ok.values()) == 10
    assert isinstance(refused, PermanentBackendError)
    assert "has 3 qubits, circuit needs 4" in str(refused)
    assert isinstance(small, dict) and sum(small.values()) == 10
