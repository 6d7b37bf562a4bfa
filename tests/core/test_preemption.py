"""Preemption policy on the sans-I/O core under a manual clock: who yields (``should_yield``),
who is chosen as the victim (``choose_victim``), and how a preempted task waits and resumes.
Through the scheduler, with real tasks: ``tests/test_preemption_runtime.py``."""

from __future__ import annotations

from typing import Any

from logosq_os_scheduler import (
    ManualClock,
    PreemptionStrategy,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.core._preemption import (
    PreemptionMove,
    choose_victim,
    preemption_move,
    preempts_on_arrival,
    should_yield,
)

P = TaskPriority
S = TaskStatus
COOP = PreemptionStrategy.COOPERATIVE
PRE = PreemptionStrategy.PREEMPTIVE


def _running(core: SchedulerCore, prio: TaskPriority, at: float, **kw: Any) -> Task[Any]:
    b = Task.classical("t").with_function(int).with_priority(prio)
    if "preemptible" in kw:
        b.with_preemptible(kw["preemptible"])
    t = b.build()
    core.admit(t, core.classical, at)
    return t


def test_should_yield_only_to_strictly_more_urgent_waiting_work(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    low = _running(core, P.LOW, 0.0)
    pool = core.classical
    assert low.status is S.RUNNING
    assert not should_yield(low, pool, COOP, 3, 0.0)  # nothing waits
    _running(core, P.LOW, 0.0)  # equal priority waits
    assert not should_yield(low, pool, COOP, 3, 0.0)
    _running(core, P.HIGH, 0.0)
    assert should_yield(low, pool, COOP, 3, 0.0)
    assert not should_yield(low, pool, PreemptionStrategy.NONE, 3, 0.0)
    low.preemptions = 3
    assert not should_yield(low, pool, COOP, 3, 0.0)  # its preemption budget is spent


def test_non_preemptible_task_never_yields(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    low = _running(core, P.IDLE, 0.0, preemptible=False)
    _running(core, P.CRITICAL, 0.0)
    assert not should_yield(low, core.classical, PRE, 3, 0.0)


def test_victim_is_the_least_urgent_then_the_latest_started(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=4), clock)
    a = _running(core, P.LOW, 0.0)
    b = _running(core, P.LOW, 1.0)
    c = _running(core, P.NORMAL, 2.0)
    d = _running(core, P.IDLE, 3.0, preemptible=False)
    assert choose_victim([a, b, c, d], P.CRITICAL, 3) is b
    assert choose_victim([c], P.NORMAL, 3) is None  # never by equal priority
    assert choose_victim([d], P.CRITICAL, 3) is None
    b.preemptions = 3
    assert choose_victim([a, b], P.HIGH, 3) is a


def test_preempted_task_waits_at_its_priority_and_resumes(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    low = _running(core, P.LOW, 0.0)
    high = _running(core, P.HIGH, 1.0)
    clock.set(2.0)
    core.preempt(low, core.classical, clock.now())
    assert low.status is S.PREEMPTED and core.waiting == 2
    core.check_invariants()
    assert core.next_ready(core.classical, 2.0) is high
    core.finish(high, S.COMPLETED, 3.0)
    core.release_task(high, 3.0)
    low.resume = object()  # resuming at a checkpoint continues the same attempt
    assert core.next_ready(core.classical, 5.0) is low
    assert low.status is S.RUNNING and low.attempts == 1 and core.preempted_seconds == 3.0
    core.check_invariants()


def test_who_preempts_on_arrival_and_how_the_victim_yields() -> None:
    S = PreemptionStrategy
    for strategy in S:
        for priority in TaskPriority:
            expected = strategy is S.PREEMPTIVE and priority >= P.HIGH
            assert preempts_on_arrival(priority, strategy) is expected
    M = PreemptionMove
    # A process worker: killed if it may run twice, paused (SIGSTOP) if not.
    assert preemption_move(restartable=True, in_process=True, coroutine=False) is M.RESTART
    assert preemption_move(restartable=False, in_process=True, coroutine=False) is M.PAUSE
    # A coroutine: cancelled and started again only if it may run twice.
    assert preemption_move(restartable=True, in_process=False, coroutine=True) is M.RESTART
    assert preemption_move(restartable=False, in_process=False, coroutine=True) is (M.AT_CHECKPOINT)
    # A thread cannot be interrupted, restartable or not.
    for restartable in (False, True):
        assert preemption_move(restartable=restartable, in_process=False, coroutine=False) is (
            M.AT_CHECKPOINT
        )
