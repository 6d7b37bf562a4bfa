"""Preemption policy: when a running task should give its slot up, and to whom.

Pure functions over the core's state. The runtime asks :func:`should_yield` at a task's
checkpoints (COOPERATIVE and PREEMPTIVE), and :func:`choose_victim` when an urgent task finds
no free slot (PREEMPTIVE).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._config import PreemptionStrategy
from .._task import Task, TaskPriority, TaskStatus
from ._core import Pool

__all__ = ["choose_victim", "may_be_preempted", "should_yield", "slot_wanted"]

_NONE = PreemptionStrategy.NONE
_RUNNING = TaskStatus.RUNNING


def may_be_preempted(task: Task[Any], max_preemptions: int) -> bool:
    """Whether ``task`` may lose its slot at all: it is RUNNING, preemptible, and has not yet
    been preempted ``max_preemptions`` times (the guard against starving it)."""
    return task.status is _RUNNING and task.preemptible and task.preemptions < max_preemptions


def should_yield(
    task: Task[Any],
    pool: Pool,
    strategy: PreemptionStrategy,
    max_preemptions: int,
    now: float,
) -> bool:
    """Whether a running task reaching a checkpoint should give its slot up now.

    It should when preemption is on, it may be preempted, no slot of its pool is free, and a
    task of strictly higher priority waits there. Equal or lower priority never preempts.
    """
    if strategy is _NONE or not may_be_preempted(task, max_preemptions):
        return False
    if pool.busy < pool.capacity:
        return False
    head = pool.queue.peek(now)
    return head is not None and head.priority > task.priority


def slot_wanted(pool: object, strategy: PreemptionStrategy) -> bool:
    """A cheap estimate of :func:`should_yield`, safe to read from a worker thread: whether
    preemption is on and the task's pool has no free slot with tasks waiting. It may say yes
    where :func:`should_yield` would not (the waiting task is no more urgent); a checkpoint
    then asks :func:`should_yield` on the loop before giving anything up."""
    if strategy is _NONE or not isinstance(pool, Pool):
        return False
    return bool(pool.queue) and pool.busy >= pool.capacity


def choose_victim(
    running: Iterable[Task[Any]], incoming: TaskPriority, max_preemptions: int
) -> Task[Any] | None:
    """The running task an ``incoming`` task of that priority may take a slot from.

    The least urgent preemptible task of strictly lower priority; among equals the one that
    started last, which loses the least work. None if there is none.
    """
    best: Task[Any] | None = None
    for t in running:
        if t.priority >= incoming or not may_be_preempted(t, max_preemptions):
            continue
        if best is None or (t.priority, -(t.started_at or 0.0)) < (
            best.priority,
            -(best.started_at or 0.0),
        ):
            best = t
    return best
