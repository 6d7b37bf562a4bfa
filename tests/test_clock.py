"""Clocks and the runtime's timers: a ManualClock fires what is armed on it as it moves, and
a scheduler on a ManualClock waits for nothing but the clock (deadlines, batch windows,
retry back-off) — no test here waits on the wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from _scripted import ScriptedBackend, all_zeros, spec
from logosq_os_scheduler import (
    LoopClock,
    ManualClock,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskStatus,
    TaskTimeoutError,
    TransientBackendError,
)
from logosq_os_scheduler.backends import CircuitJob, JobOutcome

S = TaskStatus


def test_timers_fire_in_time_order_with_the_clock_at_their_time() -> None:
    clock = ManualClock()
    seen: list[tuple[str, float]] = []
    clock.call_at(3.0, lambda: seen.append(("c", clock.now())))
    clock.call_at(1.0, lambda: seen.append(("a", clock.now())))
    clock.call_at(1.0, lambda: seen.append(("b", clock.now())))
    cancelled = clock.call_at(2.0, lambda: seen.append(("x", clock.now())))
    cancelled.cancel()
    assert clock.next_timer() == 1.0
    clock.advance(2.5)
    assert seen == [("a", 1.0), ("b", 1.0)]
    assert clock.now() == 2.5
    clock.set(10.0)
    assert seen[-1] == ("c", 3.0) and clock.now() == 10.0
    assert clock.next_timer() is None


def test_a_timer_armed_by_a_timer_fires_within_the_same_move() -> None:
    clock = ManualClock()
    seen: list[float] = []
    clock.call_at(1.0, lambda: clock.call_at(2.0, lambda: seen.append(clock.now())))
    clock.advance(5.0)
    assert seen == [2.0]


def test_advance_to_next_timer_jumps_there() -> None:
    clock = ManualClock(10.0)
    assert clock.advance_to_next_timer() is None and clock.now() == 10.0
    fired: list[float] = []
    clock.call_at(12.5, lambda: fired.append(clock.now()))
    clock.call_at(5.0, lambda: fired.append(clock.now()))  # already due: fires at once
    assert clock.advance_to_next_timer() == 10.0
    assert fired == [10.0]
    assert clock.advance_to_next_timer() == 12.5
    assert fired == [10.0, 12.5]
    with pytest.raises(ValueError, match="backwards"):
        clock.set(1.0)


async def test_loop_clock_reads_the_running_loop() -> None:
    loop = asyncio.get_running_loop()
    clock = LoopClock()
    assert abs(clock.now() - loop.time()) < 1.0
    bound = LoopClock(loop)
    assert bound.now() <= loop.time()


async def settle() -> None:
    """Let the loop run what the clock's move scheduled (callbacks run at its next turns)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_deadline_on_a_manual_clock_fires_when_the_clock_passes_it() -> None:
    clock = ManualClock()
    never = asyncio.Event()
    async with QuantumScheduler(1, clock=clock) as s:
        h = await s.submit(Task.classical("wait").with_function(never.wait).with_timeout(30))
        await settle()
        clock.advance(29.9)
        await settle()
        assert h.status is S.RUNNING
        clock.advance(0.1)
        with pytest.raises(TaskTimeoutError):
            await h
        assert h.status is S.TIMED_OUT and s.metrics().timed_out == 1


async def test_a_partial_batch_waits_for_the_manual_clock() -> None:
    clock = ManualClock()
    b = ScriptedBackend("b", 5, per_job=8)
    config = SchedulerConfig(workers=1, batch_window=10.0)
    async with QuantumScheduler(config=config, clock=clock) as s:
        await s.register_backend("b", b)
        handles = [await s.submit(Task.quantum(f"q{i}").with_circuit(spec(2))) for i in range(3)]
        await settle()
        assert b.batches == [] and all(h.status is S.QUEUED for h in handles)
        clock.advance(10.0)
        for h in handles:
            assert (await h).started_at == 10.0
    assert b.batches == [[h.task_id for h in handles]]


async def test_retry_back_off_waits_for_the_manual_clock() -> None:
    calls = {"n": 0}
    failed = asyncio.Event()

    def flaky(jobs: Sequence[CircuitJob]) -> Sequence[JobOutcome]:
        calls["n"] += 1
        if calls["n"] == 1:
            failed.set()
            raise TransientBackendError("b", "connection reset")
        return all_zeros(jobs)

    clock = ManualClock()
    b = ScriptedBackend("b", 5, script=flaky)
    # Back-off is drawn from [0, 100 s]: the retry waits for the clock, however long.
    config = SchedulerConfig(
        workers=1, batch_window=0, retry_backoff=100.0, retry_backoff_max=100.0
    )
    async with QuantumScheduler(config=config, clock=clock) as s:
        await s.register_backend("b", b)
        h = await s.submit(Task.quantum("t").with_circuit(spec(2)))
        await failed.wait()
        await settle()
        assert h.status is S.RUNNING and calls["n"] == 1  # waiting out its back-off
        clock.advance(100.0)
        result = await h
    assert result.attempts == 2 and calls["n"] == 2
