"""Fault injection at scale: 10,000 quantum tasks over three MockBackends with 20% transient
job failures and 1% hangs, one backend going down halfway. Every task ends exactly once.

It runs in virtual time (the mocks' latencies, the batch window, back-off, job time-outs and
breaker cool-downs at realistic values), so hung jobs cost no wall time."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from logosq_os_scheduler import (
    LoopClock,
    MockBackend,
    QuantumScheduler,
    RetriesExhaustedError,
    SchedulerConfig,
    Task,
    TaskStatus,
)
from logosq_os_scheduler.backends import CircuitSpec
from logosq_os_scheduler.core import TERMINAL

S = TaskStatus
N = 10_000


@pytest.mark.virtual_time
async def test_ten_thousand_tasks_end_exactly_once_through_faults_and_an_outage() -> None:
    config = SchedulerConfig(
        workers=2,
        max_concurrent_quantum=150,
        batch_window=0.5,
        retry_backoff=1.0,
        retry_backoff_max=30.0,
        job_timeout=600.0,
        breaker_cooldown=60.0,
        max_retries=3,
    )
    backends = [
        MockBackend(
            f"qpu{i}",
            num_qubits=8,
            failure_rate=0.2,
            hang_rate=0.01,
            max_concurrent_jobs=2,
            max_circuits_per_job=25,
            latency=(2.0, 0.05),  # seconds a job, plus per circuit: virtual time
            seed=100 + i,
        )
        for i in range(3)
    ]
    endings: Counter[int] = Counter()
    completions: Counter[int] = Counter()

    async with QuantumScheduler(config=config, clock=LoopClock()) as s:
        core = s._core
        previous = core.listener

        def listen(task: Any, old: S, new: S, now: float) -> None:
            if new in TERMINAL:
                endings[task.task_id] += 1
            if new is S.COMPLETED:
                completions[task.task_id] += 1
            if previous is not None:
                previous(task, old, new, now)

        core.listener = listen
        for b in backends:
            await s.register_backend(b.name, b)
        circuit = CircuitSpec(3, ((0, 1), (1, 2)))
        handles = []
        for i in range(N):
            if i == N // 2:
                backends[0].go_down()
            handles.append(await s.submit(Task.quantum(f"t{i}").with_circuit(circuit)))
            if i % 500 == 0:
                await asyncio.sleep(0)  # let jobs run while submitting, as a real client would
        await s.join()
        m = s.metrics()

    statuses = Counter(h.status for h in handles)
    # None lost, none ended twice, none completed twice.
    assert all(h.done() for h in handles)
    assert len(endings) == N and set(endings.values()) == {1}
    assert set(completions.values()) == {1}
    # Completed unless the retry budget ran out, which is reported as such.
    assert set(statuses) <= {S.COMPLETED, S.FAILED}
    exhausted = 0
    for h in handles:
        if h.status is S.FAILED:
            try:
                await h
            except RetriesExhaustedError as exc:
                exhausted += 1
                assert "retry budget 3" in str(exc)
    assert exhausted == statuses[S.FAILED]
    assert statuses[S.COMPLETED] >= N * 0.98
    # Counts are real: every completed task has counts summing to its shots.
    for h in handles[:200]:
        if h.status is S.COMPLETED:
            assert sum((await h).value.values()) == 1024
    # Capacity was never exceeded.
    for b in backends:
        assert b.statistics().max_concurrent_observed <= 2
    # The outage was seen, routed around, and counted.
    assert m.backends["qpu0"].breaker_state != "closed"
    assert m.breaker_trips >= 1 and m.reroutes >= 1 and m.retries > 0
    # Metrics agree with the handles.
    assert (m.submitted, m.completed, m.failed) == (
        N,
        statuses[S.COMPLETED],
        statuses[S.FAILED],
    )
    assert m.queued == m.running == 0
    served = sum(m.backends[b.name].completed for b in backends)
    assert served == statuses[S.COMPLETED]
    stats = [b.statistics() for b in backends]
    assert sum(st.hung_jobs for st in stats) >= 1
    assert sum(st.failed_jobs for st in stats) >= 1
