"""ReadyQueue policy under a manual clock: strict priority, FIFO, IDLE and aging."""

from __future__ import annotations

import random
from typing import Any

from logosq_os_scheduler import Task, TaskPriority, TaskStatus
from logosq_os_scheduler.core import ReadyQueue

P = TaskPriority


def _queued(priority: TaskPriority, seq: int, at: float = 0.0) -> Task[Any]:
    task = Task.classical(f"t{seq}").with_function(int).with_priority(priority).build()
    task._status = TaskStatus.QUEUED  # the queue alone, without a core to admit it
    task.seq = seq
    task.enqueued_at = at
    return task


def _drain(q: ReadyQueue, now: float = 0.0) -> list[Task[Any]]:
    out = []
    while (t := q.pop(now)) is not None:
        out.append(t)
    return out


def test_strict_priority_then_fifo_for_hundreds_of_tasks() -> None:
    rng = random.Random(7)
    q = ReadyQueue(aging=None)
    tasks = [_queued(rng.choice(list(P)), seq) for seq in range(600)]
    for t in tasks:
        q.push(t)
    order = _drain(q)
    expected = sorted(tasks, key=lambda t: (-int(t.priority), t.seq))
    assert [t.seq for t in order] == [t.seq for t in expected]
    assert len(q) == 0


def test_idle_runs_only_when_nothing_else_waits() -> None:
    q = ReadyQueue(aging=1.0)
    idle = _queued(P.IDLE, 0, at=0.0)
    low = _queued(P.LOW, 1, at=1000.0)
    q.push(idle)
    q.push(low)
    # The IDLE task has waited 1000 aging periods; it still never beats waiting work.
    assert q.pop(now=1000.0) is low
    assert q.pop(now=1000.0) is idle


def test_aging_lifts_a_waiting_task_one_level_per_threshold() -> None:
    q = ReadyQueue(aging=5.0)
    low = _queued(P.LOW, 0, at=0.0)
    normal = _queued(P.NORMAL, 1, at=4.6)
    high = _queued(P.HIGH, 2, at=9.0)
    q.push(low)
    q.push(normal)
    # At t=4.9 LOW has not yet waited 5 s: NORMAL goes first.
    assert q.peek(now=4.9) is normal
    # At t=5 LOW is lifted to NORMAL and is older: it goes first.
    assert q.peek(now=5.0) is low
    q.push(high)
    # At t=9.5 LOW (one lift) and NORMAL (none yet) both rank as NORMAL: HIGH first.
    assert q.peek(now=9.5) is high
    # At t=10 LOW has two lifts and NORMAL one: both rank as HIGH and are older than HIGH.
    assert [q.pop(now=10.0) for _ in range(3)] == [low, normal, high]


def test_aging_never_lifts_above_high() -> None:
    q = ReadyQueue(aging=1.0)
    low = _queued(P.LOW, 0, at=0.0)
    crit = _queued(P.CRITICAL, 1, at=99.0)
    q.push(low)
    q.push(crit)
    assert q.pop(now=100.0) is crit
    assert q.pop(now=100.0) is low


def test_aging_off_keeps_strict_priority_forever() -> None:
    q = ReadyQueue(aging=None)
    low = _queued(P.LOW, 0, at=0.0)
    normal = _queued(P.NORMAL, 1, at=1e6)
    q.push(low)
    q.push(normal)
    assert q.pop(now=1e9) is normal


def test_entries_that_left_the_queue_are_skipped() -> None:
    q = ReadyQueue(aging=None)
    a, b, c = (_queued(P.NORMAL, i) for i in range(3))
    for t in (a, b, c):
        q.push(t)
    b._status = TaskStatus.CANCELLED
    q.discard(b)
    assert len(q) == 2
    assert q.depth_by_level() == [0, 0, 2, 0, 0]
    assert list(q) == [a, c]
    assert _drain(q) == [a, c]
    assert q.pop(0.0) is None
    assert q.depth_by_level() == [0, 0, 0, 0, 0]
