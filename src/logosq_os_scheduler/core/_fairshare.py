"""Fair share: the slots shared between users by weight, priorities kept within each share.

A shared scheduler serves many users. Strict priority alone lets one user who floods the
queue with NORMAL work hold every slot while another user's NORMAL work waits behind it;
fair share keeps the five priorities (and aging) *within* each user's work and decides
*between* users by how much each has been served against their weight.

The rule is stride scheduling (Waldspurger and Weihl, 1995), the discrete form of weighted
fair queuing: each user has a *pass*, the work started for them divided by their weight.
The next task to start is the head of the user with the lowest pass among those with work
waiting (ties by arrival), and starting it adds ``1 / weight`` to that user's pass. A user
who had nothing waiting comes back at the current pass of the scheduler (the pass of the
user served last), so credit cannot be banked while idle and spent later in a burst.

Two exceptions keep the priorities meaningful across users:

- CRITICAL work (which a service lets only its admins submit) starts before any share is
  considered, in arrival order.
- Aging still lifts a task within its own user's queue; it never lets a user pass another.

Bounded wait: with weights ``w``, a user with work waiting starts a task within
``sum(ceil(w_v / w_u) + 1 for every other user v)`` starts, whatever the others have queued
(each start of another user ``v`` raises ``v``'s pass by ``1 / w_v``, and ``v`` is served
only while its pass is below ``u``'s).

Per-user and per-group caps on running tasks (``max_running``) are part of the same
decision: a user (or a group) at its cap is passed over until one of its tasks stops
running; the ledger then tells the runtime to look at every pool again (:attr:`woken`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .._config import FairShare
from .._task import Task, TaskPriority
from ._queue import ReadyQueue

__all__ = ["FairShareLedger", "FairShareQueue", "user_of"]

_CRITICAL = TaskPriority.CRITICAL
# The share of tasks that carry no user (with_user was not called).
NO_USER = ""


class FairShareLedger:
    """What fair share remembers between decisions: each user's pass, what each user and
    group has waiting and running. One per core, shared by the queues of all its pools, so
    that shares hold across the classical pool and every backend together.

    Args:
        policy: The weights and caps.
    """

    __slots__ = (
        "policy",
        "passes",
        "now_pass",
        "waiting",
        "running",
        "group_running",
        "blocked",
        "woken",
        "starts",
    )

    def __init__(self, policy: FairShare) -> None:
        self.policy = policy
        # passes[u]: work started for u over u's weight (only ever grows).
        self.passes: dict[str, float] = {}
        # The pass of the user served last: where a user with nothing waiting comes back.
        # Invariant: never decreases.
        self.now_pass = 0.0
        # Invariant: waiting[u] == tasks of u in the queues of all pools (absent when 0).
        self.waiting: dict[str, int] = {}
        # Invariant: running[u] == tasks of u RUNNING now (absent when 0); likewise by group.
        self.running: dict[str, int] = {}
        self.group_running: dict[str, int] = {}
        # Users passed over for a cap since their last task stopped running.
        self.blocked: set[str] = set()
        # Set when a blocked user's task stopped running: the runtime should try every pool
        # again (it clears the flag).
        self.woken = False
        # Tasks started per user (for statistics and tests).
        self.starts: dict[str, int] = {}

    # -- what the queues report ---------------------------------------------------------------

    def queued(self, user: str) -> None:
        """A task of ``user`` joined a queue."""
        n = self.waiting.get(user, 0)
        if n == 0:
            # Back from having nothing waiting: no banked credit.
            p = self.passes.get(user, 0.0)
            if p < self.now_pass:
                self.passes[user] = self.now_pass
        self.waiting[user] = n + 1

    def unqueued(self, user: str) -> None:
        """A task of ``user`` left a queue (popped, removed or discarded)."""
        n = self.waiting[user] - 1
        if n:
            self.waiting[user] = n
        else:
            del self.waiting[user]

    def charge(self, user: str) -> None:
        """A task of ``user`` was chosen to start: ``user`` moves on by ``1 / weight``."""
        p = self.passes.get(user, 0.0)
        if p > self.now_pass:
            self.now_pass = p
        self.passes[user] = p + 1.0 / self.policy.weight(user)
        self.starts[user] = self.starts.get(user, 0) + 1

    # -- caps ---------------------------------------------------------------------------------

    def may_start(self, user: str) -> bool:
        """Whether ``user`` (and their group) is under its cap on running tasks."""
        policy = self.policy
        cap = policy.max_running.get(user)
        if cap is not None and self.running.get(user, 0) >= cap:
            return False
        group = policy.groups.get(user)
        if group is not None:
            gcap = policy.group_max_running.get(group)
            if gcap is not None and self.group_running.get(group, 0) >= gcap:
                return False
        return True

    def started(self, user: str) -> None:
        """A task of ``user`` turned RUNNING."""
        self.running[user] = self.running.get(user, 0) + 1
        group = self.policy.groups.get(user)
        if group is not None:
            self.group_running[group] = self.group_running.get(group, 0) + 1

    def stopped(self, user: str) -> None:
        """A task of ``user`` stopped RUNNING (it ended, was preempted or requeued)."""
        n = self.running[user] - 1
        if n:
            self.running[user] = n
        else:
            del self.running[user]
        group = self.policy.groups.get(user)
        if group is not None:
            g = self.group_running[group] - 1
            if g:
                self.group_running[group] = g
            else:
                del self.group_running[group]
        if self.blocked:
            # A user (or a groupmate) waiting on a cap may start now, in any pool.
            self.blocked.clear()
            self.woken = True


def user_of(task: Task[Any]) -> str:
    """Whose share ``task`` is in."""
    extras = task.extras
    if extras is None:
        return NO_USER
    user = extras.user
    return NO_USER if user is None else user


class FairShareQueue:
    """A pool's ready queue under fair share: one :class:`ReadyQueue` per user, and the
    ledger's passes to choose between them. Same interface as :class:`ReadyQueue`.

    Args:
        aging: Seconds of waiting per level lifted, within each user's queue.
        ledger: The core's ledger, shared by every pool.
    """

    __slots__ = ("_users", "_ledger", "_aging", "_live")

    def __init__(self, aging: float | None, ledger: FairShareLedger) -> None:
        # Invariant: _users holds a queue for every user with a task waiting here (and maybe
        # some emptied ones, dropped when found empty); _live == sum of their lengths.
        self._users: dict[str, ReadyQueue] = {}
        self._ledger = ledger
        self._aging = aging
        self._live = 0

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
        for queue in self._users.values():
            queue.aging = aging

    def push(self, task: Task[Any]) -> None:
        """Append a waiting task at the back of its priority level in its user's queue."""
        user = user_of(task)
        queue = self._users.get(user)
        if queue is None:
            queue = self._users[user] = ReadyQueue(self._aging)
        queue.push(task)
        self._live += 1
        self._ledger.queued(user)

    def remove(self, task: Task[Any]) -> None:
        """Take a QUEUED task out now (for moves).

        Raises:
            ValueError: If the task is not in the queue.
        """
        user = user_of(task)
        queue = self._users.get(user)
        if queue is None:
            raise ValueError(f"task {task.task_id} is not in this queue")
        queue.remove(task)
        self._left(user, queue)

    def discard(self, task: Task[Any]) -> None:
        """Record that ``task`` left the queue without being popped (it is skipped later)."""
        user = user_of(task)
        queue = self._users[user]
        queue.discard(task)
        self._left(user, queue)

    def _left(self, user: str, queue: ReadyQueue) -> None:
        self._live -= 1
        self._ledger.unqueued(user)
        if not queue:
            del self._users[user]

    def depth_by_level(self) -> list[int]:
        """Count of waiting tasks per level, CRITICAL first, over all users."""
        depth = [0] * 5
        for queue in self._users.values():
            for i, n in enumerate(queue.depth_by_level()):
                depth[i] += n
        return depth

    def depth_by_user(self) -> dict[str, int]:
        """Count of waiting tasks per user."""
        return {user: len(queue) for user, queue in self._users.items() if queue}

    def __iter__(self) -> Iterator[Task[Any]]:
        for queue in list(self._users.values()):
            yield from queue

    def __reversed__(self) -> Iterator[Task[Any]]:
        for queue in list(self._users.values()):
            yield from reversed(queue)

    def _select(self, now: float) -> tuple[str, ReadyQueue] | None:
        """The user whose head starts next: a CRITICAL head first (by arrival), else the
        lowest pass among users under their caps (ties by arrival)."""
        ledger = self._ledger
        passes = ledger.passes
        best: tuple[str, ReadyQueue] | None = None
        best_key: tuple[int, float, int] = (2, 0.0, 0)
        for user, queue in self._users.items():
            head = queue.peek(now)
            if head is None:
                continue
            if not ledger.may_start(user):
                ledger.blocked.add(user)
                continue
            if head.priority is _CRITICAL:
                key = (0, 0.0, head.seq)
            else:
                key = (1, passes.get(user, 0.0), head.seq)
            if best is None or key < best_key:
                best, best_key = (user, queue), key
        return best

    def peek(self, now: float) -> Task[Any] | None:
        """Return the task :meth:`pop` would return, without removing it."""
        chosen = self._select(now)
        return None if chosen is None else chosen[1].peek(now)

    def pop(self, now: float) -> Task[Any] | None:
        """Remove and return the next task to run, charging its user; None if none may."""
        chosen = self._select(now)
        if chosen is None:
            return None
        user, queue = chosen
        task = queue.pop(now)
        assert task is not None  # _select saw a head
        self._left(user, queue)
        self._ledger.charge(user)
        return task
