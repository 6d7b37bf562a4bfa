"""PREEMPTIVE preemption of classical work in worker processes, through the scheduler.

Every slot of the process pool is held by a LOW task waiting at a :class:`_gate.Gate`, so the
test knows the tasks are running and decides when each returns. An urgent task then takes a
slot at once: the victim's worker is stopped with SIGSTOP (seen as state ``T`` in /proc) and
continues later where it stood, or, if the victim is restartable, its worker is killed and the
task starts again from scratch. A manual clock orders the victims (the latest started loses
its slot) and makes the preempted time exact. Nothing sleeps to wait for something to happen.
"""

from __future__ import annotations

from typing import Any

import pytest

import _executor_tasks as tasks
from _gate import HAS_PROC, Gate, process_state, wait_for_state
from logosq_os_scheduler import (
    ManualClock,
    PreemptionStrategy,
    QuantumScheduler,
    SchedulerConfig,
    Task,
    TaskHandle,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.executors import ProcessExecutor

pytestmark = pytest.mark.skipif(not HAS_PROC, reason="reads process states from /proc")

P = TaskPriority
S = TaskStatus
PRE = PreemptionStrategy.PREEMPTIVE
# A process blocked in recv() sleeps (S); one that is between instructions runs (R).
LIVE = {"S", "R"}


def _scheduler(workers: int, clock: ManualClock) -> QuantumScheduler:
    return QuantumScheduler(config=SchedulerConfig(workers=workers, preemption=PRE), clock=clock)


def _gated(gate: Gate, tag: str, priority: TaskPriority, **kw: Any) -> Task[Any]:
    builder = (
        Task.classical(tag)
        .with_function(tasks.gated, gate.path, tag)
        .with_executor("process")
        .with_priority(priority)
    )
    if "preemptible" in kw:
        builder.with_preemptible(kw["preemptible"])
    if kw.get("restartable"):
        builder.with_restartable()
    return builder.build()


async def _start(
    s: QuantumScheduler, gate: Gate, clock: ManualClock, tag: str, priority: TaskPriority, **kw: Any
) -> tuple[TaskHandle[Any], int]:
    """Submit a gated task, wait until it runs in its worker; then one second passes, so
    that each task started at a distinct time."""
    handle = await s.submit(_gated(gate, tag, priority, **kw))
    pid = await gate.arrived(tag)
    assert handle.status is S.RUNNING
    clock.advance(1.0)
    return handle, pid


def _executor(s: QuantumScheduler) -> ProcessExecutor:
    executor = s._executors["process"][0]
    assert isinstance(executor, ProcessExecutor)
    return executor


async def test_a_critical_task_suspends_the_latest_low_worker_which_resumes_intact() -> None:
    clock = ManualClock()
    async with Gate() as gate, _scheduler(2, clock) as s:
        a, pid_a = await _start(s, gate, clock, "a", P.LOW)
        b, pid_b = await _start(s, gate, clock, "b", P.LOW)

        crit = await s.submit(_gated(gate, "c", P.CRITICAL))
        # The slot was taken in submit itself: the LOW task started last lost it.
        assert (a.status, b.status, crit.status) == (S.RUNNING, S.PREEMPTED, S.RUNNING)
        assert await wait_for_state(pid_b, {"T"}) == "T"
        stats = _executor(s).statistics()
        assert (stats.suspended, stats.workers) == (1, 2)

        # The CRITICAL task runs in a spare worker while the victim's worker stays stopped.
        pid_c = await gate.arrived("c")
        assert pid_c not in (pid_a, pid_b)
        assert process_state(pid_b) == "T" and process_state(pid_a) in LIVE
        clock.advance(2.5)
        gate.release("c")
        assert (await crit).value == "c"

        # Its slot went straight back to the victim: the same process continues.
        assert b.status is S.RUNNING
        assert await wait_for_state(pid_b, LIVE) in LIVE
        gate.release("b")
        result_b = await b
        gate.release("a")
        result_a = await a
        m = s.metrics()

    assert (result_b.value, result_b.attempts, gate.arrivals("b")) == ("b", 1, 1)
    assert (result_a.value, result_a.attempts, gate.arrivals("a")) == ("a", 1, 1)
    assert (m.preemptions, m.preempted_seconds, m.completed) == (1, 2.5, 3)


async def test_a_restartable_victim_is_stopped_and_restarted_from_scratch() -> None:
    clock = ManualClock()
    async with Gate() as gate, _scheduler(1, clock) as s:
        low, pid_1 = await _start(s, gate, clock, "r", P.LOW, restartable=True)

        crit = await s.submit(_gated(gate, "c", P.CRITICAL))
        assert (low.status, crit.status) == (S.PREEMPTED, S.RUNNING)
        # Its worker was killed, not paused: nothing is suspended and the connection ends.
        assert _executor(s).statistics().suspended == 0
        await gate.gone("r")
        assert await wait_for_state(pid_1, {"X", "Z"}) in {"X", "Z"}  # dead, or not reaped yet
        await gate.arrived("c")
        gate.release("c")
        assert (await crit).value == "c"

        # It starts again from the beginning in a fresh worker and returns the right value.
        pid_2 = await gate.arrived("r", count=2)
        assert pid_2 != pid_1 and low.status is S.RUNNING
        gate.release("r")
        result = await low
        m = s.metrics()
    assert (result.value, result.attempts, gate.arrivals("r")) == ("r", 2, 2)
    assert (m.preemptions, m.completed, m.failed, m.cancelled) == (1, 2, 0, 0)


async def test_non_preemptible_process_tasks_are_never_touched() -> None:
    clock = ManualClock()
    async with Gate() as gate, _scheduler(2, clock) as s:
        a, pid_a = await _start(s, gate, clock, "a", P.LOW, preemptible=False)
        b, pid_b = await _start(s, gate, clock, "b", P.LOW, preemptible=False, restartable=True)

        crit = await s.submit(_gated(gate, "c", P.CRITICAL))
        assert (a.status, b.status, crit.status) == (S.RUNNING, S.RUNNING, S.QUEUED)
        stats = _executor(s).statistics()
        assert (stats.suspended, stats.workers_started) == (0, 2)
        assert {process_state(pid_a), process_state(pid_b)} <= LIVE

        # The CRITICAL task waits for the first slot given up of its own accord.
        gate.release("a")
        assert (await a).value == "a"
        assert crit.status is S.RUNNING and await gate.arrived("c") == pid_a
        gate.release("c")
        gate.release("b")
        assert (await crit).value == "c" and (await b).attempts == 1
        assert s.metrics().preemptions == 0


@pytest.mark.parametrize(
    ("running", "incoming"),
    [(P.HIGH, P.HIGH), (P.CRITICAL, P.CRITICAL), (P.HIGH, P.LOW), (P.LOW, P.NORMAL)],
)
async def test_equal_or_lower_or_normal_priority_never_preempts(
    running: TaskPriority, incoming: TaskPriority
) -> None:
    clock = ManualClock()
    async with Gate() as gate, _scheduler(1, clock) as s:
        held, pid = await _start(s, gate, clock, "held", running)
        waiting = await s.submit(_gated(gate, "w", incoming))
        assert (held.status, waiting.status) == (S.RUNNING, S.QUEUED)
        assert _executor(s).statistics().suspended == 0
        assert process_state(pid) in LIVE
        gate.release("held")
        assert (await held).attempts == 1
        await gate.arrived("w")
        gate.release("w")
        assert (await waiting).value == "w"
        assert s.metrics().preemptions == 0


async def test_each_urgent_task_takes_one_victim_and_all_finish_exactly_once() -> None:
    clock = ManualClock()
    async with Gate() as gate, _scheduler(2, clock) as s:
        a, pid_a = await _start(s, gate, clock, "a", P.LOW)
        b, pid_b = await _start(s, gate, clock, "b", P.NORMAL)

        high = await s.submit(_gated(gate, "h", P.HIGH))
        # The least urgent task loses its slot, although the NORMAL one started later.
        assert (a.status, b.status, high.status) == (S.PREEMPTED, S.RUNNING, S.RUNNING)
        await gate.arrived("h")
        crit = await s.submit(_gated(gate, "c", P.CRITICAL))
        # Now the NORMAL one; the HIGH task started last but is the more urgent of the two.
        assert (b.status, high.status, crit.status) == (S.PREEMPTED, S.RUNNING, S.RUNNING)
        assert {await wait_for_state(pid_a, {"T"}), await wait_for_state(pid_b, {"T"})} == {"T"}
        assert _executor(s).statistics().suspended == 2

        await gate.arrived("c")
        gate.release("c")
        assert (await crit).value == "c"
        # The freed slot goes to the more urgent victim first.
        assert (b.status, a.status) == (S.RUNNING, S.PREEMPTED)
        gate.release("h")
        assert (await high).value == "h"
        assert a.status is S.RUNNING
        gate.release("a")
        gate.release("b")
        results = [await a, await b]
        m = s.metrics()
        stats = _executor(s).statistics()
    assert [(r.value, r.attempts) for r in results] == [("a", 1), ("b", 1)]
    assert {tag: gate.arrivals(tag) for tag in "abch"} == dict.fromkeys("abch", 1)
    assert (m.preemptions, m.completed) == (2, 4)
    assert (stats.completed, stats.suspended, stats.crashed) == (4, 0, 0)
