"""The mock QPU service in a process of its own, and RemoteMockBackend: jobs by ID that outlive
the process that submitted them, idempotent submission, deterministic counts, faults, and a
scheduler running on it end to end with a job listener."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import logosq_os_scheduler
from logosq_os_scheduler import (
    BackendUnavailableError,
    InvalidConfigError,
    MockBackend,
    MockQPUService,
    PermanentBackendError,
    QuantumScheduler,
    RemoteMockBackend,
    RoutingRule,
    SchedulerConfig,
    Task,
    TransientBackendError,
)
from logosq_os_scheduler.backends import CircuitJob, CircuitSpec
from logosq_os_scheduler.backends._mock_qpu import counts_for

SRC = Path(logosq_os_scheduler.__file__).resolve().parent.parent


def circuits(n: int, *, width: int = 3, shots: int = 100, prefix: str = "k") -> list[CircuitJob]:
    return [
        CircuitJob(CircuitSpec(width), shots=shots, task_id=i, idempotency_key=f"{prefix}{i}")
        for i in range(n)
    ]


@pytest.fixture
def service() -> Iterator[MockQPUService]:
    with MockQPUService(latency=0.05, max_running_jobs=4) as running:
        yield running


async def test_a_job_outlives_the_process_that_submitted_it() -> None:
    with MockQPUService(latency=1.5) as service:
        host, port = service.address
        child = textwrap.dedent(
            f"""
            import asyncio, sys, time
            from logosq_os_scheduler.backends import CircuitJob, CircuitSpec, RemoteMockBackend

            async def main():
                backend = RemoteMockBackend(({host!r}, {port}))
                jobs = [
                    CircuitJob(CircuitSpec(4), shots=200, task_id=i, idempotency_key=f"run-1-{{i}}")
                    for i in range(3)
                ]
                print(await backend.submit_job(jobs), flush=True)

            asyncio.run(main())
            time.sleep(600)  # killed long before
            """
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            child,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 60.0)
            job_id = line.decode().strip()
            backend = RemoteMockBackend(service.address)
            assert await backend.job_status(job_id) in ("QUEUED", "RUNNING")
            process.send_signal(signal.SIGKILL)
            assert await process.wait() == -signal.SIGKILL
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        outcomes = await backend.reattach(job_id)
        assert outcomes == [counts_for(f"run-1-{i}", 4, 200) for i in range(3)]
        assert service.executions() == {f"run-1-{i}": 1 for i in range(3)}
        stats = service.stats()
        assert stats["executed"] == 3 and stats["duplicate_keys"] == 0
        # A successor that sends the job again (it never learned the ID) gets the same job.
        again = await backend.submit_job(
            [
                CircuitJob(CircuitSpec(4), shots=200, task_id=i, idempotency_key=f"run-1-{i}")
                for i in range(3)
            ]
        )
        assert again == job_id
        assert service.stats()["executed"] == 3


async def test_an_idempotent_resubmission_gets_the_same_job_and_runs_nothing_twice(
    service: MockQPUService,
) -> None:
    backend = RemoteMockBackend(service.address)
    jobs = circuits(3)
    first = await backend.submit_job(jobs)
    assert await backend.submit_job(jobs) == first
    outcomes = await backend.reattach(first)
    assert await backend.reattach(first) == outcomes
    assert outcomes == [counts_for(f"k{i}", 3, 100) for i in range(3)]
    # Overlapping keys in another job are taken from the first, not run again.
    mixed = [jobs[1], *circuits(1, prefix="new")]
    second = await backend.submit_job(mixed)
    assert second != first
    assert await backend.reattach(second) == [outcomes[1], counts_for("new0", 3, 100)]
    assert await backend.submit_job(mixed) == second
    stats = service.stats()
    assert stats["submits"] == 4 and stats["existing"] == 2 and stats["jobs"] == 2
    assert stats["executed"] == 4 and stats["replayed"] == 1 and stats["duplicate_keys"] == 0
    assert set(service.executions().values()) == {1}


async def test_counts_depend_only_on_key_width_and_shots(service: MockQPUService) -> None:
    backend = RemoteMockBackend(service.address)
    same = await backend.run(
        [CircuitJob(CircuitSpec(5), shots=300, task_id=9, idempotency_key="a", options={"x": 1})]
    )
    with MockQPUService(seed=99) as other:
        again = await RemoteMockBackend(other.address).run(
            [CircuitJob(CircuitSpec(5), shots=300, task_id=1, idempotency_key="a")]
        )
    assert same == again == [counts_for("a", 5, 300)]
    (counts,) = same
    assert isinstance(counts, dict) and sum(counts.values()) == 300
    assert all(len(bits) == 5 for bits in counts)
    assert counts_for("b", 5, 300) != counts


async def test_a_circuit_it_cannot_run_fails_alone(service: MockQPUService) -> None:
    backend = RemoteMockBackend(service.address)
    good = circuits(1)[0]
    outcomes = await backend.run(
        [good, CircuitJob(object(), shots=10, task_id=1, idempotency_key="x")]
    )
    assert outcomes[0] == counts_for("k0", 3, 100)
    assert isinstance(outcomes[1], PermanentBackendError)
    assert "num_qubits" in str(outcomes[1])
    (zero,) = await backend.run(
        [CircuitJob(CircuitSpec(2), shots=0, task_id=2, idempotency_key="z")]
    )
    assert isinstance(zero, PermanentBackendError) and "shots" in str(zero)


async def test_an_unknown_job_id_is_a_permanent_error_that_names_it(
    service: MockQPUService,
) -> None:
    backend = RemoteMockBackend(service.address)
    with pytest.raises(PermanentBackendError, match="no job with ID 'job-nope'"):
        await backend.reattach("job-nope")
    with pytest.raises(PermanentBackendError, match="'job-nope'"):
        await backend.job_status("job-nope")


async def test_a_stopped_service_is_unavailable() -> None:
    with MockQPUService() as service:
        backend = RemoteMockBackend(service.address)
        assert await backend.check_health()
    assert not service.running
    assert not await backend.check_health()
    with pytest.raises(BackendUnavailableError, match="cannot reach the mock QPU service"):
        await backend.submit_job(circuits(1))
    with pytest.raises(BackendUnavailableError):
        await backend.reattach("job-1")
    with pytest.raises(BackendUnavailableError):
        service.stats()


async def test_a_job_that_fails_as_a_whole_releases_its_keys_for_a_retry() -> None:
    # Seed 3: the first job fails (failures are drawn per job from the seed and its number).
    with MockQPUService(failure_rate=0.5, seed=3) as service:
        backend = RemoteMockBackend(service.address)
        jobs = circuits(2)
        failures = 0
        for _ in range(20):
            job_id = await backend.submit_job(jobs)
            try:
                outcomes = await backend.reattach(job_id)
            except TransientBackendError as exc:
                assert job_id in str(exc) and "failed" in str(exc)
                failures += 1
                continue
            break
        assert failures >= 1
        assert outcomes == [counts_for(f"k{i}", 3, 100) for i in range(2)]
        stats = service.stats()
        assert stats["failed_jobs"] == failures and stats["jobs"] == failures + 1
        assert stats["executed"] == 2 and stats["duplicate_keys"] == 0


async def test_the_service_keeps_its_jobs_across_its_own_restart(tmp_path: Path) -> None:
    service = MockQPUService(latency=0.3, state_dir=tmp_path)
    with service:
        backend = RemoteMockBackend(service.address)
        done = await backend.run(circuits(1, prefix="done"))
        pending = await backend.submit_job(circuits(2))
    assert not service.running  # killed with the job unfinished
    with service:  # same state, same port
        assert await backend.reattach(pending) == [counts_for(f"k{i}", 3, 100) for i in range(2)]
        assert await backend.submit_job(circuits(1, prefix="done")) != pending
        assert service.executions() == {"done0": 1, "k0": 1, "k1": 1}
    assert done == [counts_for("done0", 3, 100)]


async def test_a_scheduler_runs_on_it_and_its_listener_hears_each_job_in_order(
    service: MockQPUService,
) -> None:
    class Recorder:
        def __init__(self) -> None:
            self.events: list[tuple[Any, ...]] = []

        def job_intent(self, backend: str, job_key: str, task_ids: Sequence[int]) -> None:
            self.events.append(("intent", job_key, backend, tuple(task_ids)))

        def job_acknowledged(self, job_key: str, job_id: str) -> None:
            self.events.append(("acknowledged", job_key, job_id))

        def job_done(self, job_key: str) -> None:
            self.events.append(("done", job_key))

    listener = Recorder()
    backend = RemoteMockBackend(service.address, "qpu", max_concurrent_jobs=2)
    config = SchedulerConfig(workers=1, batch_window=0.0, retry_backoff=0.0)
    async with QuantumScheduler(config=config) as s:
        s._quantum.job_listener = listener
        prefix = s._quantum.idempotency_prefix
        await s.register_backend("qpu", backend)
        handles = [
            s.submit_nowait(Task.quantum(f"t{i}").with_circuit(CircuitSpec(3)).with_shots(64))
            for i in range(6)
        ]
        results = [await h for h in handles]
    for h, r in zip(handles, results, strict=True):
        assert r.backend == "qpu"
        assert r.value == counts_for(f"{prefix}-{h.task_id}", 3, 64)
    jobs: dict[str, list[tuple[Any, ...]]] = {}
    for event in listener.events:
        jobs.setdefault(event[1], []).append(event)
    task_ids: list[int] = []
    for events in jobs.values():
        assert [e[0] for e in events] == ["intent", "acknowledged", "done"]
        assert events[0][2] == "qpu"
        assert events[1][2].startswith("job-")
        task_ids.extend(events[0][3])
    assert sorted(task_ids) == sorted(h.task_id for h in handles)
    stats = service.stats()
    assert stats["executed"] == 6 and stats["duplicate_keys"] == 0
    assert stats["jobs"] == len(jobs)


async def test_a_scheduler_moves_work_off_a_stopped_service_without_hanging() -> None:
    with MockQPUService() as service:
        address = service.address
    remote = RemoteMockBackend(address, "qpu", connect_timeout=5.0)
    fallback = MockBackend("local", num_qubits=8)
    config = SchedulerConfig(workers=1, batch_window=0.0, retry_backoff=0.0, breaker_threshold=1)
    async with asyncio.timeout(60):
        async with QuantumScheduler(config=config) as s:
            await s.register_backend("qpu", remote)
            await s.register_backend("local", fallback)
            s.set_routing_rules([RoutingRule().default().route_to("qpu")])
            r = await (await s.submit(Task.quantum("t").with_circuit(CircuitSpec(3))))
            health = s.metrics().backends["qpu"]
    assert r.backends_tried == ("qpu", "local")
    assert not health.healthy


def test_settings_are_checked() -> None:
    for kwargs, setting in (
        ({"latency": -1.0}, "latency"),
        ({"latency": (0.1,)}, "latency"),
        ({"failure_rate": 1.5}, "failure_rate"),
        ({"max_running_jobs": 0}, "max_running_jobs"),
        ({"port": 70000}, "port"),
        ({"seed": "x"}, "seed"),
    ):
        with pytest.raises(InvalidConfigError, match=setting):
            MockQPUService(**kwargs)
    with pytest.raises(RuntimeError, match="start"):
        MockQPUService().address  # noqa: B018
    for address in ("nowhere", ("h", "1"), ("", 1), "h:0"):
        with pytest.raises(InvalidConfigError, match="address"):
            RemoteMockBackend(address)  # type: ignore[arg-type]
    backend = RemoteMockBackend("127.0.0.1:1234", "r")
    assert backend.address == ("127.0.0.1", 1234)
    assert backend.supports_reattach and backend.supports_idempotency
