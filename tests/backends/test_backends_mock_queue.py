"""MockBackend's backend-side queue and job withdrawal, driven without the scheduler.

Job latency goes through the mock's ``sleep`` hook, which here waits until the test lets the
oldest executing job finish, so which job executes, waits or is withdrawn is decided by the
test, never by timing.
"""

from __future__ import annotations

import asyncio

import pytest

from _turns import Turns
from logosq_os_scheduler import InvalidConfigError, ManualClock
from logosq_os_scheduler.backends import (
    CircuitJob,
    CircuitSpec,
    JobWithdrawnError,
    MockBackend,
)


def job(task_id: int, qubits: int, shots: int) -> list[CircuitJob]:
    return [CircuitJob(CircuitSpec(qubits), shots, task_id, f"key-{task_id}")]


def mock(turns: Turns, **kw: object) -> MockBackend:
    return MockBackend(
        "qpu",
        num_qubits=4,
        max_concurrent_jobs=3,
        max_running_jobs=1,
        seed=11,
        clock=turns.clock,
        sleep=turns.sleep,
        **kw,  # type: ignore[arg-type]
    )


async def test_jobs_past_the_running_limit_wait_in_order_and_a_waiting_one_can_be_withdrawn() -> (
    None
):
    turns = Turns(ManualClock())
    backend = mock(turns)
    assert backend.supports_withdrawal
    first, second, third = job(1, 1, 10), job(2, 2, 20), job(3, 3, 30)
    runs = [asyncio.create_task(backend.run(j)) for j in (first, second, third)]
    await turns.wait_begun(1)
    stats = backend.statistics()
    assert (stats.jobs, stats.active_jobs, stats.queued_jobs) == (1, 1, 2)

    # The executing job cannot be withdrawn; one waiting can, and only once.
    assert backend.withdraw(first) is False
    assert backend.withdraw(second) is True
    assert backend.withdraw(second) is False
    # A job is known by its very CircuitJob objects, not by equal ones.
    assert backend.withdraw(job(3, 3, 30)) is False
    with pytest.raises(JobWithdrawnError) as info:
        await runs[1]
    assert info.value.retryable and "withdrawn before it started" in str(info.value)

    turns.finish()
    counts_1 = await runs[0]
    await turns.wait_begun(2)  # the third job took the freed turn
    assert backend.withdraw(third) is False
    turns.finish()
    counts_3 = await runs[2]

    assert [sum(c.values()) for c in (*counts_1, *counts_3)] == [10, 30]  # type: ignore[union-attr]
    assert {len(k) for c in counts_3 for k in c} == {3}  # type: ignore[union-attr]
    stats = backend.statistics()
    assert (stats.jobs, stats.circuits_run, stats.withdrawn_jobs, stats.queued_jobs) == (2, 2, 1, 0)
    assert stats.max_concurrent_observed == 1
    records = [(r.outcome, r.shots, r.started, r.finished) for r in backend.records]
    assert records == [
        ("withdrawn", 0, 0.0, 0.0),
        ("completed", 10, 0.0, 1.0),
        ("completed", 30, 1.0, 2.0),
    ]


async def test_a_job_cancelled_while_waiting_leaves_the_queue_and_runs_nothing() -> None:
    turns = Turns(ManualClock())
    backend = mock(turns)
    first, second, third = job(1, 1, 10), job(2, 1, 20), job(3, 1, 30)
    runs = [asyncio.create_task(backend.run(j)) for j in (first, second, third)]
    await turns.wait_begun(1)
    runs[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await runs[1]
    assert backend.statistics().queued_jobs == 1
    assert backend.withdraw(second) is False
    turns.finish()
    await runs[0]
    await turns.wait_begun(2)
    turns.finish()
    await runs[2]
    stats = backend.statistics()
    assert (stats.jobs, stats.circuits_run, stats.cancelled_jobs, stats.queued_jobs) == (2, 2, 1, 0)
    assert [r.outcome for r in backend.records] == ["cancelled", "completed", "completed"]


async def test_without_a_queue_nothing_waits_and_nothing_can_be_withdrawn() -> None:
    turns = Turns(ManualClock())
    backend = MockBackend("qpu", max_concurrent_jobs=2, clock=turns.clock, sleep=turns.sleep)
    jobs = [job(1, 1, 5), job(2, 1, 5)]
    runs = [asyncio.create_task(backend.run(j)) for j in jobs]
    await turns.wait_begun(2)
    assert backend.statistics().queued_jobs == 0
    assert [backend.withdraw(j) for j in jobs] == [False, False]
    turns.finish()
    turns.finish()
    assert [sum(c.values()) for r in runs for c in await r] == [5, 5]  # type: ignore[union-attr]


@pytest.mark.parametrize("running", [0, 3, True])
def test_max_running_jobs_must_be_between_one_and_max_concurrent_jobs(running: object) -> None:
    with pytest.raises(InvalidConfigError) as info:
        MockBackend(max_concurrent_jobs=2, max_running_jobs=running)  # type: ignore[arg-type]
    assert info.value.setting == "max_running_jobs"
