"""SchedulerCore: admission, slots, deadlines, and the one place task status changes."""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any

from .._clock import Clock
from .._config import SchedulerConfig
from .._errors import InternalError, QueueFullError
from .._task import Task, TaskPriority, TaskStatus, TaskType
from ._fairshare import FairShareLedger, FairShareQueue, user_of
from ._queue import ReadyQueue, WaitQueue
from ._state import ALLOWED, TERMINAL

__all__ = ["ListenerChain", "Pool", "SchedulerCore", "TransitionListener"]

_S = TaskStatus
# Members as constants (reading them through the class costs ~90 ns each on Python 3.11).
_PENDING = _S.PENDING
_QUEUED = _S.QUEUED
_RUNNING = _S.RUNNING
_PREEMPTED = _S.PREEMPTED
_COMPLETED = _S.COMPLETED
_TIMED_OUT = _S.TIMED_OUT

# The admission fast path's two moves, checked against the state table once, at import.
_FAST_PATH = (_PENDING, _QUEUED, _RUNNING)
if not all(b in ALLOWED[a] for a, b in itertools.pairwise(_FAST_PATH)):
    raise InternalError("the admission fast path is not a path of the state table")

# Hybrid algorithms that may run at once (each waits on its own tasks, which hold the slots
# of the pools they run in).
HYBRID_SLOTS = 64

TransitionListener = Callable[[Task[Any], TaskStatus, TaskStatus, float], None]
"""Called as ``listener(task, old, new, now)`` after every status change."""


class ListenerChain:
    """Calls several transition listeners in the order they were added.

    A chain is an immutable tuple replaced on every change, so a change made while the core
    is inside a call never alters the call in progress. With one listener no chain is built:
    the core calls it directly, which keeps the hot path at one call.

    Args:
        listeners: The listeners, first called first.
    """

    __slots__ = ("listeners",)

    def __init__(self, listeners: tuple[TransitionListener, ...]) -> None:
        self.listeners = listeners

    def __call__(self, task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        for listener in self.listeners:
            listener(task, old, new, now)

    def __repr__(self) -> str:
        return f"<ListenerChain of {len(self.listeners)}>"


class Pool:
    """A set of interchangeable execution slots with its own ready queue.

    The classical workers form one pool; each quantum backend is another. A task waits in
    exactly one pool's queue.

    Attributes:
        name: The pool's name ("classical", or a backend's name).
        capacity: How many tasks may hold a slot at once.
        busy: Slots held now. A slot is held from start until the runtime releases it, which
            can be after the task itself ended (a timed-out thread still running).
        queue: Tasks waiting for a slot here.
        busy_time: Seconds of slot time used by tasks that ran here, summed.
    """

    __slots__ = ("name", "capacity", "busy", "queue", "busy_time", "direct", "owner")

    def __init__(
        self,
        name: str,
        capacity: int,
        aging: float | None,
        *,
        direct: bool = True,
        fair: FairShareLedger | None = None,
    ) -> None:
        self.name = name
        self.capacity = capacity
        # direct: a slot runs one task, and a task may start at admission when a slot is free.
        # Batching pools (backends) are not direct: a slot runs a job of several tasks, and
        # the runtime's batching policy decides when a job starts.
        self.direct = direct
        # Invariant: 0 <= busy; busy <= capacity except transiently after capacity shrinks.
        self.busy = 0
        self.queue: WaitQueue = ReadyQueue(aging) if fair is None else FairShareQueue(aging, fair)
        self.busy_time = 0.0
        # The runtime driving the core that made this pool (opaque to the core).
        self.owner: Any = None

    @property
    def free(self) -> int:
        """Slots free now (never negative)."""
        free = self.capacity - self.busy
        return free if free > 0 else 0

    def __repr__(self) -> str:
        return f"<Pool {self.name!r} {self.busy}/{self.capacity} busy, {len(self.queue)} waiting>"


class SchedulerCore:
    """The scheduling policy, with no I/O: a runtime drives it and carries out its decisions.

    The core admits tasks into pools, says which task starts next in a pool, keeps deadlines,
    and owns every status change (:meth:`transition`). It keeps no reference to a task once the
    task is terminal and out of the queues, so finished work is freed promptly.

    Args:
        config: The scheduler's settings.
        clock: Where time comes from.
        owner: The runtime driving it (kept on each pool as ``owner``; never used here).
    """

    def __init__(self, config: SchedulerConfig, clock: Clock, owner: object = None) -> None:
        self.config = config
        self.clock = clock
        # The runtime driving this core, opaque to it: its pools carry it so that a task
        # can find its scheduler through ``task.resources``.
        self.owner = owner
        # Fair share between users (None: strict priority over everyone's work).
        self.fair = None if config.fair_share is None else FairShareLedger(config.fair_share)
        self.pools: dict[str, Pool] = {}
        self.classical = self.add_pool("classical", config.workers)
        self._seq = itertools.count()
        # counts[s] == number of submitted tasks whose status is s (PENDING is never counted).
        self.counts: dict[TaskStatus, int] = dict.fromkeys(TaskStatus, 0)
        self.submitted = 0
        self.submitted_by_priority: dict[TaskPriority, int] = dict.fromkeys(TaskPriority, 0)
        self.submitted_by_type: dict[TaskType, int] = dict.fromkeys(TaskType, 0)
        # waiting == sum of len(pool.queue) over pools == counts[QUEUED] + counts[PREEMPTED].
        self.waiting = 0
        # Quantum tasks inside jobs now (bounded by max_concurrent_quantum).
        self.quantum_in_flight = 0
        # Deadline heap of (deadline, seq, task); entries of terminal tasks are stale and are
        # dropped when they surface or when they outnumber the live ones (then rebuilt).
        self._deadlines: list[tuple[float, int, Task[Any]]] = []
        self._stale_deadlines = 0
        # Tasks that ended, by (status, priority, type), and the summed latency of completed
        # ones: the labelled counters an exporter publishes.
        self.finished_by_class: dict[tuple[TaskStatus, TaskPriority, TaskType], int] = {}
        self.latency_sum = 0.0
        n = config.latency_samples
        self.queue_waits: deque[float] = deque(maxlen=n)
        self.latencies: deque[float] = deque(maxlen=n)
        self.finish_times: deque[float] = deque(maxlen=n)
        self.started_at = clock.now()
        self.listener: TransitionListener | None = None
        # Counters of the fault-tolerance and preemption machinery.
        self.retries = 0
        self.reroutes = 0
        self.preemptions = 0
        self.preempted_seconds = 0.0
        self.breaker_trips = 0

    # -- pools -------------------------------------------------------------------------------

    def add_pool(self, name: str, capacity: int, *, direct: bool = True) -> Pool:
        """Create (or return the existing) pool of that name."""
        pool = self.pools.get(name)
        if pool is None:
            pool = Pool(name, capacity, self.config.aging_threshold, direct=direct, fair=self.fair)
            pool.owner = self.owner
            self.pools[name] = pool
        return pool

    def hybrid_pool(self) -> Pool:
        """The pool hybrid algorithms (VQE, QAOA) run in: ``HYBRID_SLOTS`` at once, each a
        coroutine that mostly waits on the tasks it submits, which run in their own pools."""
        return self.add_pool("hybrid:algorithms", HYBRID_SLOTS)

    def remove_pool(self, pool: Pool) -> None:
        """Forget an empty pool (its queue must have been emptied first).

        Raises:
            InternalError: If tasks still wait in it.
        """
        if pool.queue:
            raise InternalError(f"pool {pool.name!r} removed with {len(pool.queue)} tasks waiting")
        if self.pools.get(pool.name) is pool:
            del self.pools[pool.name]

    # -- listeners: the core's event stream ---------------------------------------------------

    def add_listener(self, listener: TransitionListener) -> None:
        """Make ``listener`` see every status change as ``listener(task, old, new, now)``,
        after the listeners already attached."""
        current = self.listener
        if current is None:
            self.listener = listener
        elif isinstance(current, ListenerChain):
            self.listener = ListenerChain((*current.listeners, listener))
        else:
            self.listener = ListenerChain((current, listener))

    def remove_listener(self, listener: TransitionListener) -> bool:
        """Stop ``listener`` seeing status changes; the other listeners stay.

        Returns:
            True if it was attached (and now is not), False if it was not attached.
        """
        current = self.listener
        if current is None:
            return False
        if isinstance(current, ListenerChain):
            # Bound methods compare equal when they bind the same function to the same object.
            rest = tuple(fn for fn in current.listeners if fn != listener)
            if len(rest) == len(current.listeners):
                return False
            self.listener = None if not rest else rest[0] if len(rest) == 1 else ListenerChain(rest)
            return True
        if current == listener:
            self.listener = None
            return True
        return False

    # -- the state machine -------------------------------------------------------------------

    def transition(self, task: Task[Any], new: TaskStatus, now: float) -> None:
        """Move ``task`` to status ``new``: the only place a submitted task's status changes.

        Raises:
            InternalError: If the move is not in the state table.
        """
        old = task._status
        if new not in ALLOWED[old]:
            raise InternalError(
                f"illegal status change {old.name} -> {new.name} for task {task.task_id} "
                f"({task.name!r})"
            )
        task._status = new
        fair = self.fair
        if fair is not None:
            if old is _RUNNING:
                fair.stopped(user_of(task))
            elif new is _RUNNING:
                fair.started(user_of(task))
        counts = self.counts
        if old is not _PENDING:
            counts[old] -= 1
        counts[new] += 1
        if new in TERMINAL:
            task.finished_at = now
            key = (new, task.priority, task.task_type)
            by_class = self.finished_by_class
            by_class[key] = by_class.get(key, 0) + 1
            if task.deadline is not None:
                self._stale_deadlines += 1
                if self._stale_deadlines > 1024:
                    self._compact_deadlines()
            submitted_at = task.submitted_at
            if new is _COMPLETED and submitted_at is not None:
                self.latencies.append(now - submitted_at)
                self.latency_sum += now - submitted_at
                self.finish_times.append(now)
        listener = self.listener
        if listener is not None:
            listener(task, old, new, now)

    @staticmethod
    def end_unadmitted(task: Task[Any], status: TaskStatus, now: float) -> None:
        """End a task this core never admitted: one recovered from a journal that cannot be
        read back, may not run again, or was cancelled while it waited for its backend. It
        goes from PENDING straight to terminal ``status`` and counts nowhere here (it was
        counted by the scheduler that admitted it before the restart).

        Raises:
            InternalError: If the task is not PENDING or ``status`` is not terminal.
        """
        if task._status is not _PENDING or status not in TERMINAL:
            raise InternalError(
                f"task {task.task_id} ({task.name!r}) cannot end unadmitted: "
                f"{task._status.name} -> {status.name}"
            )
        task._status = status
        task.finished_at = now

    # -- admission and dispatch --------------------------------------------------------------

    def admit(
        self, task: Task[Any], pool: Pool, now: float, *, waited: float | None = None
    ) -> bool:
        """Admit a PENDING task into ``pool``; start it at once if a slot is free and none waits.

        ``waited`` is for a task recovered from a journal: the seconds it had already waited
        before the restart. They count for aging and its deadline as if it had waited here;
        it always joins the queue (so that the recovered tasks start in queue order once
        all are back), even past ``max_queue_depth`` (it was admitted once already).

        Returns:
            True if the task was started (it is RUNNING and holds a slot), False if it waits.

        Raises:
            QueueFullError: If it would have to wait and ``max_queue_depth`` tasks already do.
                The task stays PENDING and nothing else changes.
        """
        fair = self.fair
        if (
            pool.direct
            and pool.busy < pool.capacity
            and not pool.queue
            and waited is None
            and (fair is None or self._fair_may_start(fair, task))
        ):
            start_now = True
        else:
            limit = self.config.max_queue_depth
            if limit is not None and self.waiting >= limit and waited is None:
                raise QueueFullError(self.waiting, limit)
            start_now = False
        since = now if waited is None else now - waited
        task.submitted_at = since
        task.enqueued_at = since
        task.seq = next(self._seq)
        task.resources = pool
        extras = task.extras
        timeout = None if extras is None else extras.timeout
        if timeout is None:
            timeout = self.config.task_timeout
        if timeout is not None:
            task.deadline = since + timeout
            heapq.heappush(self._deadlines, (task.deadline, task.seq, task))
        self.submitted += 1
        self.submitted_by_priority[task.priority] += 1
        self.submitted_by_type[task.task_type] += 1
        if start_now:
            # The fast path: PENDING -> QUEUED -> RUNNING in one step, the transition's work
            # done once (both moves are in the state table, which _FAST_PATH checks at
            # import); the counters change once and the listener still sees both moves.
            self.counts[_RUNNING] += 1
            if fair is not None:
                user = user_of(task)
                fair.charge(user)
                fair.started(user)
            listener = self.listener
            if listener is not None:
                # Each move is heard with the task in the status it moved to: a view built
                # on QUEUED says queued, not yet started.
                task._status = _QUEUED
                listener(task, _PENDING, _QUEUED, now)
            # Before RUNNING is heard: its view and the journal say when it started, and which
            # attempt this is.
            task.started_at = now
            task.attempts += 1
            task._status = _RUNNING
            if listener is not None:
                listener(task, _QUEUED, _RUNNING, now)
            pool.busy += 1
            task.slot_held = True
            self.queue_waits.append(0.0)
            return True
        self.transition(task, _QUEUED, now)
        pool.queue.push(task)
        self.waiting += 1
        return False

    @staticmethod
    def _fair_may_start(fair: FairShareLedger, task: Task[Any]) -> bool:
        """Whether fair share's caps let ``task`` start; if not, its user waits for a wake."""
        user = user_of(task)
        if fair.may_start(user):
            return True
        fair.blocked.add(user)
        return False

    def requeue(self, task: Task[Any], pool: Pool, now: float) -> None:
        """Put a RUNNING or PREEMPTED task back in ``pool``'s queue (retry, preemption, reroute).

        It keeps its priority and goes to the back of its level; it does not count against
        ``max_queue_depth`` (it was admitted once already).
        """
        self.transition(task, _QUEUED, now)
        task.enqueued_at = now
        task.seq = next(self._seq)
        task.resources = pool
        pool.queue.push(task)
        self.waiting += 1

    def move(self, task: Task[Any], to: Pool, *, reroute: bool = True) -> None:
        """Move a QUEUED task to another pool's queue; it keeps its enqueued_at, so its wait
        (and aging) carries over. ``reroute`` counts it as a reroute (its backend failed or
        left); load-balancing moves are not reroutes."""
        self.locate(task).queue.remove(task)
        task.resources = to
        to.queue.push(task)
        if reroute:
            self.reroutes += 1

    def start(self, task: Task[Any], pool: Pool, now: float) -> None:
        """Move a QUEUED or PREEMPTED task (already out of the queue) to RUNNING in ``pool``.

        The slot is accounted by the caller (one per task in direct pools, one per job in
        batching pools).
        """
        # Both before the listeners hear RUNNING: a view built then, and the journal's row,
        # say when it started and which attempt this is.
        first = task.started_at is None
        if first:
            task.started_at = now
        extras = task.extras
        if extras is None or extras.resume is None:
            # A fresh start (or a restart); a task resuming at its checkpoint continues its
            # attempt.
            task.attempts += 1
        self.transition(task, _RUNNING, now)
        task.resources = pool
        if first:
            submitted_at = task.submitted_at
            if submitted_at is not None:
                self.queue_waits.append(now - submitted_at)

    def next_ready(self, pool: Pool, now: float) -> Task[Any] | None:
        """Pop and start the next task of ``pool`` if a slot is free; else return None."""
        if pool.busy >= pool.capacity:
            return None
        task = pool.queue.pop(now)
        if task is None:
            return None
        self.waiting -= 1
        pool.busy += 1
        task.slot_held = True
        if task._status is _PREEMPTED:
            self.preempted_seconds += now - task.enqueued_at
        self.start(task, pool, now)
        return task

    def preempt(self, task: Task[Any], pool: Pool, now: float) -> None:
        """A RUNNING task of a direct pool gives its slot up: it turns PREEMPTED, waits in the
        queue at its priority, and resumes (RUNNING again) when :meth:`next_ready` pops it."""
        self.transition(task, _PREEMPTED, now)
        self.release(pool, task.started_at, now)
        task.slot_held = False
        self._requeue_preempted(task, pool, now)

    def withdraw(self, task: Task[Any], pool: Pool, now: float) -> None:
        """A RUNNING task whose backend job was withdrawn before it started turns PREEMPTED and
        waits in the queue at its priority, behind tasks of that priority already waiting.

        Unlike :meth:`preempt` it frees no slot: a job holds one slot for all its tasks, and
        the caller releases it once with :meth:`job_done`.
        """
        self.transition(task, _PREEMPTED, now)
        self._requeue_preempted(task, pool, now)

    def _requeue_preempted(self, task: Task[Any], pool: Pool, now: float) -> None:
        """Count a preemption and queue the task afresh at the back of its priority level."""
        task.preemptions += 1
        self.preemptions += 1
        task.enqueued_at = now
        task.seq = next(self._seq)
        pool.queue.push(task)
        self.waiting += 1

    def take_batch(self, pool: Pool, now: float, limit: int) -> list[Task[Any]]:
        """Start up to ``limit`` queued tasks of ``pool`` as one job holding one slot.

        Tasks are taken in the queue's order (priority, then arrival), so a batch never
        passes over a more urgent task for a less urgent one.

        Returns:
            The started tasks (empty if no slot is free or nothing waits).
        """
        if pool.busy >= pool.capacity or limit <= 0:
            return []
        queue = pool.queue
        batch: list[Task[Any]] = []
        while len(batch) < limit:
            task = queue.pop(now)
            if task is None:
                break
            self.waiting -= 1
            self.start(task, pool, now)
            batch.append(task)
        if batch:
            pool.busy += 1
            self.quantum_in_flight += len(batch)
        return batch

    def take_tasks(self, pool: Pool, tasks: list[Task[Any]], now: float) -> None:
        """Start these queued tasks of ``pool`` as one job holding one slot (a job recovered
        from a journal, collected by its ID: its tasks are known, not chosen by the queue).

        Raises:
            InternalError: If no slot is free or a task is not queued in ``pool``.
        """
        if pool.busy >= pool.capacity:
            raise InternalError(f"no free slot in pool {pool.name!r} for a recovered job")
        for task in tasks:
            if task._status is not _QUEUED or task.resources is not pool:
                raise InternalError(f"task {task.task_id} is not queued in pool {pool.name!r}")
            pool.queue.remove(task)
            self.waiting -= 1
            self.start(task, pool, now)
        pool.busy += 1
        self.quantum_in_flight += len(tasks)

    def occupy(self, pool: Pool, slots: int) -> None:
        """Hold ``slots`` free slots of ``pool`` for work this core does not schedule (other
        users' jobs on a shared device, in the simulator); :meth:`release` gives each back.

        Raises:
            InternalError: If ``pool`` has fewer than ``slots`` slots free.
        """
        if slots < 0 or pool.busy + slots > pool.capacity:
            raise InternalError(
                f"cannot hold {slots} slots of pool {pool.name!r}: {pool.free} free"
            )
        pool.busy += slots

    def job_done(self, pool: Pool, size: int, started_at: float, now: float) -> None:
        """A job of ``size`` tasks started at ``started_at`` has returned: free its slot."""
        self.quantum_in_flight -= size
        self.release(pool, started_at, now)

    def release_task(self, task: Task[Any], now: float) -> Pool:
        """Give back the slot ``task`` holds, if it holds one; return its pool."""
        pool = self.locate(task)
        if task.slot_held:
            task.slot_held = False
            self.release(pool, task.started_at, now)
        return pool

    def release(self, pool: Pool, started_at: float | None, now: float) -> None:
        """Give back a slot of ``pool`` whose execution (started at ``started_at``) ended."""
        if pool.busy <= 0:
            raise InternalError(f"slot released twice in pool {pool.name!r}")
        pool.busy -= 1
        if started_at is not None:
            pool.busy_time += now - started_at

    def finish(self, task: Task[Any], status: TaskStatus, now: float) -> bool:
        """End a task in terminal ``status`` unless it already ended.

        A task leaving the queue this way is discarded from it lazily. Its slot, if it holds
        one, is not released here: the runtime releases it when the execution really stops.

        Returns:
            True if this call ended the task, False if it had already ended (nothing changes).
        """
        old = task._status
        if old in TERMINAL:
            return False
        if old is _QUEUED or old is _PREEMPTED:
            self.locate(task).queue.discard(task)
            self.waiting -= 1
        self.transition(task, status, now)
        return True

    def locate(self, task: Task[Any]) -> Pool:
        """The pool a task was admitted to, waits in or runs in."""
        pool = task.resources
        return pool if isinstance(pool, Pool) else self.classical

    # -- deadlines ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest deadline of a live task, or None."""
        heap = self._deadlines
        while heap and heap[0][2]._status in TERMINAL:
            heapq.heappop(heap)
            self._stale_deadlines -= 1
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[Task[Any]]:
        """End every live task whose deadline has passed as TIMED_OUT and return them."""
        heap = self._deadlines
        expired: list[Task[Any]] = []
        while heap and heap[0][0] <= now:
            _, _, task = heapq.heappop(heap)
            if task._status in TERMINAL:
                self._stale_deadlines -= 1
                continue
            # The entry is popped: finishing must not count it as stale.
            task.deadline = None
            self.finish(task, _TIMED_OUT, now)
            expired.append(task)
        self._compact_deadlines()
        return expired

    def _compact_deadlines(self) -> None:
        heap = self._deadlines
        if self._stale_deadlines > 1024 and self._stale_deadlines * 2 > len(heap):
            live = [entry for entry in heap if entry[2]._status not in TERMINAL]
            heapq.heapify(live)
            self._deadlines = live
            self._stale_deadlines = 0

    # -- views -------------------------------------------------------------------------------

    @property
    def unfinished(self) -> int:
        """Submitted tasks not yet in a terminal state."""
        c = self.counts
        return c[_QUEUED] + c[_RUNNING] + c[_PREEMPTED]

    def check_invariants(self) -> None:
        """Verify the counters against the queues (O(n); for tests and debugging).

        Raises:
            InternalError: If any invariant is broken.
        """
        live = sum(len(p.queue) for p in self.pools.values())
        walked = sum(1 for p in self.pools.values() for _ in p.queue)
        queued = self.counts[_QUEUED] + self.counts[_S.PREEMPTED]
        by_level = sum(sum(p.queue.depth_by_level()) for p in self.pools.values())
        if not live == walked == self.waiting == queued == by_level:
            raise InternalError(
                f"queue accounting broken: live={live} walked={walked} waiting={self.waiting} "
                f"queued+preempted={queued}"
            )
        if sum(self.counts.values()) != self.submitted:
            raise InternalError(
                f"status counts {sum(self.counts.values())} != submitted {self.submitted}"
            )
        fair = self.fair
        if fair is not None:
            fair_waiting = sum(fair.waiting.values())
            fair_running = sum(fair.running.values())
            if fair_waiting != self.waiting or fair_running != self.counts[_RUNNING]:
                raise InternalError(
                    f"fair-share accounting broken: waiting {fair_waiting} != {self.waiting} "
                    f"or running {fair_running} != {self.counts[_RUNNING]}"
                )
        if self.quantum_in_flight < 0:
            raise InternalError("negative quantum in-flight count")
        for p in self.pools.values():
            if p.busy < 0:
                raise InternalError(f"pool {p.name!r} has negative busy count")
