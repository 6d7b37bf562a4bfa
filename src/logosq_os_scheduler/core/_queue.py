"""The ready queue: five FIFO levels, strict priority between them, with aging."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any, Protocol

from .._task import Task, TaskStatus

__all__ = ["ReadyQueue", "WaitQueue"]

# A task waits in a queue while QUEUED, or PREEMPTED (it gave its slot up and will resume).
_WAITING = frozenset({TaskStatus.QUEUED, TaskStatus.PREEMPTED})
_IDLE_LEVEL = 4
_HIGH_LEVEL = 1


class WaitQueue(Protocol):
    """What a pool's queue offers: :class:`ReadyQueue`, or under fair share
    :class:`~logosq_os_scheduler.core._fairshare.FairShareQueue`."""

    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def __iter__(self) -> Iterator[Task[Any]]: ...
    def __reversed__(self) -> Iterator[Task[Any]]: ...

    aging: float | None

    def push(self, task: Task[Any]) -> None: ...
    def remove(self, task: Task[Any]) -> None: ...
    def discard(self, task: Task[Any]) -> None: ...
    def depth_by_level(self) -> list[int]: ...
    def peek(self, now: float) -> Task[Any] | None: ...
    def pop(self, now: float) -> Task[Any] | None: ...


class ReadyQueue:
    """Tasks waiting for a slot, ordered by priority level, then by arrival.

    Levels run from 0 (CRITICAL) to 4 (IDLE). :meth:`pop` returns the task with the lowest
    *effective* level, ties broken by arrival order (``task.seq``). A task's effective level is
    its own, lifted one level for every ``aging`` seconds it has waited, but never above HIGH:
    CRITICAL stays reserved for work submitted as critical. IDLE tasks never age, so they start
    only when nothing else waits.

    Removal of a task that leaves the queue early (cancelled, timed out) is lazy: the runtime
    changes its status and calls :meth:`discard`; :meth:`pop` skips entries that are no longer
    waiting (QUEUED, or PREEMPTED and waiting to resume).

    Args:
        aging: Seconds of waiting per level lifted; None turns aging off.
    """

    __slots__ = ("_levels", "_live", "_aging", "_per_level")

    def __init__(self, aging: float | None = None) -> None:
        # Invariant: each deque is in arrival order (ascending seq), because tasks are only
        # appended with a fresh seq. So each level's head is its oldest, most-aged task.
        self._levels: tuple[deque[Task[Any]], ...] = tuple(deque() for _ in range(5))
        # Invariant: _live == number of entries whose task is QUEUED or PREEMPTED, and
        # _per_level[i] == how many of those are on level i (so snapshots cost O(1)).
        self._live = 0
        self._per_level = [0] * 5
        self._aging = aging

    def __len__(self) -> int:
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0

    @property
    def aging(self) -> float | None:
        """Seconds of waiting per level lifted (None: aging off)."""
        return self._aging

    @aging.setter
    def aging(self, aging: float | None) -> None:
        self._aging = aging

    def push(self, task: Task[Any]) -> None:
        """Append a waiting (QUEUED or PREEMPTED) task at the back of its priority level."""
        level = 4 - task.priority
        self._levels[level].append(task)
        self._live += 1
        self._per_level[level] += 1

    def remove(self, task: Task[Any]) -> None:
        """Take a QUEUED task out of the queue now (O(level length): for moves, not hot paths).

        Raises:
            ValueError: If the task is not in the queue.
        """
        level = 4 - task.priority
        self._levels[level].remove(task)
        self._live -= 1
        self._per_level[level] -= 1

    def discard(self, task: Task[Any]) -> None:
        """Record that ``task`` left the queue without being popped (it is skipped later)."""
        self._live -= 1
        self._per_level[4 - task.priority] -= 1

    def depth_by_level(self) -> list[int]:
        """Count of waiting tasks per level, CRITICAL first."""
        return list(self._per_level)

    def __iter__(self) -> Iterator[Task[Any]]:
        """Iterate over waiting tasks, level by level (not in pop order when aging applies)."""
        for dq in self._levels:
            for t in dq:
                if t._status in _WAITING:
                    yield t

    def __reversed__(self) -> Iterator[Task[Any]]:
        """Iterate over waiting tasks from the back: IDLE level first, newest first."""
        for dq in reversed(self._levels):
            for t in reversed(dq):
                if t._status in _WAITING:
                    yield t

    def peek(self, now: float) -> Task[Any] | None:
        """Return the task :meth:`pop` would return, without removing it."""
        level = self._select(now)
        return None if level < 0 else self._levels[level][0]

    def pop(self, now: float) -> Task[Any] | None:
        """Remove and return the next task to run, or None if none waits."""
        level = self._select(now)
        if level < 0:
            return None
        self._live -= 1
        self._per_level[level] -= 1
        return self._levels[level].popleft()

    def _select(self, now: float) -> int:
        """Index of the level whose head runs next, or -1; drops stale heads on the way."""
        if not self._live:
            return -1
        aging = self._aging
        best = -1
        best_eff = 99
        best_seq = 0
        for level, dq in enumerate(self._levels):
            while dq and dq[0]._status not in _WAITING:
                dq.popleft()
            if not dq:
                continue
            head = dq[0]
            if aging is None or level == _IDLE_LEVEL or level == 0:
                eff = level
            else:
                eff = level - int((now - head.enqueued_at) / aging)
                if eff < _HIGH_LEVEL:
                    eff = _HIGH_LEVEL
            if eff < best_eff or (eff == best_eff and head.seq < best_seq):
                best, best_eff, best_seq = level, eff, head.seq
            if level == 0 or (aging is None and best >= 0):
                # Nothing can beat a CRITICAL head, nor, without aging, any earlier level.
                break
        return best
