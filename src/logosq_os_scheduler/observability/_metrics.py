"""SchedulerMetrics: a frozen snapshot of what the scheduler has done."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from .._task import TaskPriority, TaskStatus, TaskType

__all__ = ["BackendMetrics", "SchedulerMetrics", "UserMetrics"]


@dataclasses.dataclass(frozen=True, slots=True)
class BackendMetrics:
    """What one quantum backend is doing and has done.

    Attributes:
        name: The backend's registered name.
        capacity: Jobs it may run at once.
        busy: Jobs it runs now.
        queued: Tasks waiting for it.
        completed: Tasks it completed.
        failed_attempts: Attempts on it that raised.
        healthy: Whether it is in rotation (its circuit breaker is closed).
        breaker_state: "closed", "open" or "half_open".
        utilisation: Share of its slot time in use since the scheduler started (0..1).
        withdrawn_jobs: Jobs taken back from its queue unstarted to make room for more
            urgent work (PREEMPTIVE).
        queued_by_priority: Of ``queued``, how many at each priority, CRITICAL first.
    """

    name: str
    capacity: int
    busy: int
    queued: int
    completed: int
    failed_attempts: int
    healthy: bool
    breaker_state: str
    utilisation: float
    withdrawn_jobs: int = 0
    queued_by_priority: tuple[int, ...] = (0, 0, 0, 0, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class UserMetrics:
    """One user's work under fair share (``SchedulerConfig(fair_share=...)``).

    Attributes:
        user: The name given with ``with_user`` ("" for tasks of no user).
        running: Their tasks running now.
        waiting: Their tasks waiting in a queue.
        started: Their tasks started by fair share's choice since the scheduler started.
        weight: Their weight.
        share_pass: Their pass (started work over weight): who has been served least has
            the lowest, and starts next.
    """

    user: str
    running: int
    waiting: int
    started: int
    weight: float
    share_pass: float


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerMetrics:
    """A snapshot of scheduler performance, taken by ``QuantumScheduler.metrics()``.

    Counts by status always add up to ``submitted``. Latency figures are in seconds, over the
    most recent ``latency_samples`` tasks; they are None before any task has finished.

    Attributes:
        submitted: Tasks admitted since the scheduler started.
        queued, running, preempted: Tasks in those states now.
        completed, failed, cancelled, timed_out: Tasks that ended so.
        by_priority: Tasks submitted at each priority.
        by_type: Tasks submitted of each type.
        queue_depth: Tasks waiting for a slot now (all pools).
        queue_depth_by_priority: Of those, how many at each priority.
        uptime: Seconds since the scheduler started.
        throughput: Tasks completed per second over the scheduler's uptime.
        recent_throughput: Tasks completed per second from the oldest of the most recent
            completions to now (it falls towards zero while nothing completes).
        queue_wait_p50, queue_wait_p99: Submission to first start.
        latency_p50, latency_p99, latency_p999: Submission to completion (completed tasks).
        worker_utilisation: Share of classical slot time in use since start (0..1).
        retries, reroutes, preemptions, breaker_trips: Fault-tolerance and preemption events.
        preempted_seconds: Time tasks spent preempted, waiting to resume (their cost).
        backends: Per-backend figures, by name.
        finished_by_class: Ended tasks by (status, priority, type).
        latency_sum: Summed submission-to-completion seconds of completed tasks.
        abandoned_threads: Worker threads given up so far because their task timed out or
            was cancelled while its synchronous function ran (Python cannot stop a thread);
            each was replaced at once, and exits, its result dropped, when the function returns.
        abandoned_threads_running: Of those, how many are still running their function.
        unreplaced_threads: Timed-out or cancelled tasks whose thread was not abandoned
            because ``max_abandoned_threads`` abandoned threads were still running: each
            such thread kept its worker slot until its function returned.
        users: Under fair share, each user's running and waiting work and share
            (:class:`UserMetrics`); empty without it.
    """

    submitted: int
    queued: int
    running: int
    preempted: int
    completed: int
    failed: int
    cancelled: int
    timed_out: int
    by_priority: Mapping[TaskPriority, int]
    by_type: Mapping[TaskType, int]
    queue_depth: int
    queue_depth_by_priority: Mapping[TaskPriority, int]
    uptime: float
    throughput: float
    recent_throughput: float
    queue_wait_p50: float | None
    queue_wait_p99: float | None
    latency_p50: float | None
    latency_p99: float | None
    latency_p999: float | None
    worker_utilisation: float
    retries: int = 0
    reroutes: int = 0
    preemptions: int = 0
    preempted_seconds: float = 0.0
    breaker_trips: int = 0
    backends: Mapping[str, BackendMetrics] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    finished_by_class: Mapping[tuple[TaskStatus, TaskPriority, TaskType], int] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )
    latency_sum: float = 0.0
    abandoned_threads: int = 0
    abandoned_threads_running: int = 0
    unreplaced_threads: int = 0
    users: Mapping[str, UserMetrics] = dataclasses.field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def by_status(self) -> Mapping[TaskStatus, int]:
        """Count of submitted tasks in each status."""
        return MappingProxyType(
            {
                TaskStatus.QUEUED: self.queued,
                TaskStatus.RUNNING: self.running,
                TaskStatus.PREEMPTED: self.preempted,
                TaskStatus.COMPLETED: self.completed,
                TaskStatus.FAILED: self.failed,
                TaskStatus.CANCELLED: self.cancelled,
                TaskStatus.TIMED_OUT: self.timed_out,
            }
        )

    @property
    def finished(self) -> int:
        """Tasks in a terminal state."""
        return self.completed + self.failed + self.cancelled + self.timed_out

    def as_dict(self) -> dict[str, object]:
        """The snapshot as plain JSON-friendly data (enum keys become their names)."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("backends", "users"):
                value = {k: dataclasses.asdict(v) for k, v in value.items()}
            elif f.name == "finished_by_class":
                value = {f"{s.value}/{p.name}/{t.value}": n for (s, p, t), n in value.items()}
            elif isinstance(value, Mapping):
                value = {getattr(k, "name", k): v for k, v in value.items()}
            out[f.name] = value
        return out
