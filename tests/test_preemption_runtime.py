"""Preemption strategies through the scheduler, for tasks on the loop and in threads: who
yields, when it resumes, that it finishes right, and who is never touched. Waits on events,
never sleeps. The policy alone, on the core: ``tests/core/test_preemption.py``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from logosq_os_scheduler import (
    PreemptionStrategy,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskCancelledError,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler._context import current_context

P = TaskPriority
S = TaskStatus
COOP = PreemptionStrategy.COOPERATIVE
PRE = PreemptionStrategy.PREEMPTIVE


async def _cooperative_run(strategy: PreemptionStrategy) -> tuple[list[str], Any, Any]:
    events: list[str] = []
    gates = [asyncio.Event() for _ in range(3)]
    stepped = asyncio.Event()

    async def long_low() -> int:
        total = 0
        for i in range(3):
            await gates[i].wait()
            total += i
            events.append(f"low step {i}")
            stepped.set()
            await current_context().checkpoint()
        return total

    def urgent() -> str:
        events.append("high ran")
        return "done"

    config = SchedulerConfig(workers=1, preemption=strategy)
    async with QuantumScheduler(config=config) as s:
        low = await s.submit(Task.classical("low").with_function(long_low).with_priority(P.LOW))
        gates[0].set()
        await stepped.wait()  # low is past step 0 and waits for gate 1
        high = await s.submit(Task.classical("high").with_function(urgent).with_priority(P.HIGH))
        assert high.status is S.QUEUED
        gates[1].set()
        gates[2].set()
        result = await low
        await high
        return events, result, s.metrics()


async def test_cooperative_async_task_yields_at_its_checkpoint_and_resumes_intact() -> None:
    events, result, m = await _cooperative_run(COOP)
    assert events == ["low step 0", "low step 1", "high ran", "low step 2"]
    assert result.value == 0 + 1 + 2 and result.attempts == 1
    assert m.preemptions == 1 and m.completed == 2 and m.preempted_seconds > 0


async def test_without_preemption_the_running_task_finishes_first() -> None:
    events, result, m = await _cooperative_run(PreemptionStrategy.NONE)
    assert events == ["low step 0", "low step 1", "low step 2", "high ran"]
    assert result.value == 3 and m.preemptions == 0


async def test_cooperative_sync_task_parks_its_thread_and_resumes() -> None:
    order: list[str] = []
    at_checkpoint = threading.Event()
    go_on = threading.Event()

    def long_low() -> str:
        order.append("low start")
        at_checkpoint.set()
        go_on.wait(10)
        current_context().checkpoint_blocking()
        order.append("low resumed")
        return "low done"

    def urgent() -> str:
        order.append("high ran")
        return "high done"

    config = SchedulerConfig(workers=1, preemption=COOP)
    async with QuantumScheduler(config=config) as s:
        low = await s.submit(
            Task.classical("low")
            .with_function(long_low)
            .with_priority(P.LOW)
            .with_executor("thread")
        )
        await asyncio.to_thread(at_checkpoint.wait, 10)
        high = await s.submit(
            Task.classical("high")
            .with_function(urgent)
            .with_priority(P.HIGH)
            .with_executor("thread")
        )
        assert high.status is S.QUEUED
        go_on.set()
        assert (await high).value == "high done"
        assert (await low).value == "low done"
    assert order == ["low start", "high ran", "low resumed"]


async def test_preemptive_stops_a_restartable_task_at_once_and_restarts_it() -> None:
    starts: list[int] = []
    release = asyncio.Event()
    first_start = asyncio.Event()

    async def restartable_low() -> str:
        starts.append(len(starts))
        first_start.set()
        await release.wait()
        return "low done"

    config = SchedulerConfig(workers=1, preemption=PRE)
    async with QuantumScheduler(config=config) as s:
        low = await s.submit(
            Task.classical("low")
            .with_function(restartable_low)
            .with_priority(P.LOW)
            .with_restartable()
        )
        await first_start.wait()
        crit = await s.submit(
            Task.classical("crit").with_function(lambda: "crit done").with_priority(P.CRITICAL)
        )
        # The slot was taken at once, without waiting for the LOW task to reach anything.
        assert crit.status in (S.RUNNING, S.COMPLETED) and low.status is S.PREEMPTED
        assert (await crit).value == "crit done"
        release.set()
        result = await low
        m = s.metrics()
    assert result.value == "low done" and result.attempts == 2 and starts == [0, 1]
    assert m.preemptions == 1


async def test_preemptive_never_stops_a_non_preemptible_or_equal_priority_task() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def hold() -> str:
        started.set()
        await release.wait()
        return "held"

    config = SchedulerConfig(workers=1, preemption=PRE)
    async with QuantumScheduler(config=config) as s:
        pinned = await s.submit(
            Task.classical("low")
            .with_function(hold)
            .with_priority(P.LOW)
            .with_restartable()
            .with_preemptible(False)
        )
        await started.wait()
        crit = await s.submit(Task.classical("c").with_function(int).with_priority(P.CRITICAL))
        assert crit.status is S.QUEUED and pinned.status is S.RUNNING
        release.set()
        assert (await pinned).attempts == 1
        await crit
        assert s.metrics().preemptions == 0


async def test_a_task_is_preempted_at_most_max_preemptions_times() -> None:
    async def yielder() -> int:
        n = 0
        for _ in range(6):
            await current_context().checkpoint()
            n += 1
            await asyncio.sleep(0)
        return n

    config = SchedulerConfig(workers=1, preemption=COOP, max_preemptions=2)
    async with QuantumScheduler(config=config) as s:
        low = await s.submit(Task.classical("low").with_function(yielder).with_priority(P.LOW))
        highs = []
        for i in range(5):
            await asyncio.sleep(0)
            highs.append(
                await s.submit(Task.classical(f"h{i}").with_function(int).with_priority(P.HIGH))
            )
        assert (await low).value == 6
        for h in highs:
            await h
    assert low.status is S.COMPLETED
    assert s.metrics().preemptions <= 2


async def test_cancelling_a_preempted_task_ends_it_and_frees_nothing_twice() -> None:
    at_checkpoint = asyncio.Event()
    release = asyncio.Event()

    async def low_fn() -> None:
        at_checkpoint.set()
        await release.wait()
        await current_context().checkpoint()

    high_started = asyncio.Event()
    high_release = asyncio.Event()

    async def high_fn() -> str:
        high_started.set()
        await high_release.wait()
        return "high"

    config = SchedulerConfig(workers=1, preemption=COOP)
    async with QuantumScheduler(config=config) as s:
        low = await s.submit(Task.classical("low").with_function(low_fn).with_priority(P.LOW))
        await at_checkpoint.wait()
        high = await s.submit(Task.classical("high").with_function(high_fn).with_priority(P.HIGH))
        release.set()
        await high_started.wait()  # it got the slot: low gave it up at its checkpoint
        assert low.status is S.PREEMPTED
        assert low.cancel() is True
        with pytest.raises(TaskCancelledError):
            await low
        high_release.set()
        assert (await high).value == "high"
        m = s.metrics()
    assert (m.cancelled, m.completed, m.queued, m.running) == (1, 1, 0, 0)
