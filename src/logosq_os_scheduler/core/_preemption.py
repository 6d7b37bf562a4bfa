"""Preemption policy: when a running task should give its slot up, and to whom.

Pure functions over the core's state. The runtime asks :func:`should_yield` at a task's
checkpoints (COOPERATIVE and PREEMPTIVE); when a task waits on arrival,
:func:`preempts_on_arrival` says whether it takes a slot from a running task (PREEMPTIVE,
HIGH and above), :func:`choose_victim` which task, and :func:`preemption_move` how.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from .._config import PreemptionStrategy
from .._task import Task, TaskPriority, TaskStatus
from ._core import Pool

__all__ = [
    "PreemptionMove",
    "choose_victim",
    "may_be_preempted",
    "preemption_move",
    "preempts_on_arrival",
    "should_yield",
    "slot_wanted",
]

_NONE = PreemptionStrategy.NONE
_PREEMPTIVE = PreemptionStrategy.PREEMPTIVE
_RUNNING = TaskStatus.RUNNING
_HIGH = TaskPriority.HIGH


class PreemptionMove(enum.Enum):
    """How a running task gives its slot up to an urgent one (PREEMPTIVE)."""

    RESTART = "restart"
    """Stopped now; it starts again from scratch when its turn comes (restartable work: a
    coroutine is cancelled, a process worker killed)."""
    PAUSE = "pause"
    """Its process worker is paused (SIGSTOP) and continues where it stood when its turn
    comes."""
    AT_CHECKPOINT = "at_checkpoint"
    """Nothing can stop it now (a thread cannot be interrupted, a coroutine that may not run
    twice): it yields at its next checkpoint, which :func:`should_yield` decides."""


def preempts_on_arrival(priority: TaskPriority, strategy: PreemptionStrategy) -> bool:
    """Whether a task that must wait on arrival takes a slot from a running task: under
    PREEMPTIVE, for HIGH and CRITICAL tasks."""
    return strategy is _PREEMPTIVE and priority >= _HIGH


def preemption_move(*, restartable: bool, in_process: bool, coroutine: bool) -> PreemptionMove:
    """How the chosen victim gives its slot up, by what runs it: a function in a process
    worker restarts if it may run twice and is paused otherwise; a coroutine restarts if it
    may run twice; anything else yields at its next checkpoint."""
    if in_process:
        return PreemptionMove.RESTART if restartable else PreemptionMove.PAUSE
    if coroutine and restartable:
        return PreemptionMove.RESTART
    return PreemptionMove.AT_CHECKPOINT


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
