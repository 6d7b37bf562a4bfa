"""SchedulerCore under a manual clock: admission, slots, deadlines, the state machine."""

from __future__ import annotations

from typing import Any

import pytest

from logosq_os_scheduler import (
    InternalError,
    ManualClock,
    QueueFullError,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.core import ALLOWED, TERMINAL, SchedulerCore

S = TaskStatus


def _task(priority: TaskPriority = TaskPriority.NORMAL, timeout: float | None = None) -> Task[Any]:
    b = Task.classical("t").with_function(int).with_priority(priority)
    if timeout is not None:
        b.with_timeout(timeout)
    return b.build()


def test_admit_starts_at_once_while_slots_are_free_then_queues(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=2), clock)
    pool = core.classical
    t1, t2, t3 = _task(), _task(), _task()
    assert core.admit(t1, pool, clock.now()) is True
    assert core.admit(t2, pool, clock.now()) is True
    assert core.admit(t3, pool, clock.now()) is False
    assert (t1.status, t2.status, t3.status) == (S.RUNNING, S.RUNNING, S.QUEUED)
    assert pool.busy == 2 and core.waiting == 1
    assert core.next_ready(pool, clock.now()) is None  # no free slot
    core.finish(t1, S.COMPLETED, clock.now())
    core.release(pool, t1.started_at, clock.now())
    assert core.next_ready(pool, clock.now()) is t3
    assert t3.status is S.RUNNING and t3.attempts == 1
    core.check_invariants()


def test_queue_full_rejects_only_the_new_task(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1, max_queue_depth=3), clock)
    pool = core.classical
    running = _task()
    core.admit(running, pool, 0.0)
    waiting = [_task() for _ in range(3)]
    for t in waiting:
        core.admit(t, pool, 0.0)
    extra = _task()
    with pytest.raises(QueueFullError) as info:
        core.admit(extra, pool, 0.0)
    assert info.value.limit == 3 and info.value.depth == 3
    assert extra.status is S.PENDING
    assert [t.status for t in waiting] == [S.QUEUED] * 3
    assert core.submitted == 4
    core.check_invariants()


def test_deadlines_time_out_queued_and_running_tasks(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    pool = core.classical
    running = _task(timeout=10)
    queued = _task(timeout=5)
    forever = _task()
    for t in (running, queued, forever):
        core.admit(t, pool, clock.now())
    assert core.next_deadline() == 5.0
    clock.advance(4.999)
    assert core.expire(clock.now()) == []
    clock.advance(0.001)
    assert core.expire(clock.now()) == [queued]
    assert queued.status is S.TIMED_OUT and core.waiting == 1
    assert core.next_deadline() == 10.0
    clock.advance(5)
    assert core.expire(clock.now()) == [running]
    assert running.status is S.TIMED_OUT
    # The timed-out running task still holds its slot until its execution is released.
    assert pool.busy == 1
    core.release(pool, running.started_at, clock.now())
    assert core.next_ready(pool, clock.now()) is forever
    assert core.next_deadline() is None
    core.check_invariants()


def test_finished_tasks_do_not_linger_in_the_deadline_heap(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    pool = core.classical
    for _ in range(5000):
        t = _task(timeout=3600)
        core.admit(t, pool, clock.now())
        core.finish(t, S.COMPLETED, clock.now())
        core.release(pool, t.started_at, clock.now())
    assert len(core._deadlines) <= 2 * 1025
    assert core.next_deadline() is None


def test_default_task_timeout_applies_and_a_task_timeout_wins(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1, task_timeout=60), clock)
    a, b = _task(), _task(timeout=1)
    core.admit(a, core.classical, 0.0)
    core.admit(b, core.classical, 0.0)
    assert (a.deadline, b.deadline) == (60.0, 1.0)


def test_a_tasks_status_moves_only_through_the_core(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    t = _task()
    with pytest.raises(AttributeError):
        t.status = TaskStatus.COMPLETED  # type: ignore[misc]
    assert t.status is TaskStatus.PENDING
    core.admit(t, core.classical, 0.0)
    assert t.status is TaskStatus.RUNNING
    core.transition(t, TaskStatus.COMPLETED, 1.0)
    assert t.status is TaskStatus.COMPLETED and t.status.is_terminal


def test_every_move_outside_the_table_is_refused(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(), clock)
    for old in TaskStatus:
        for new in TaskStatus:
            t = _task()
            t._status = old  # placed in each status directly: the table is what is tested
            if new in ALLOWED[old]:
                continue
            with pytest.raises(InternalError, match=f"{old.name} -> {new.name}"):
                core.transition(t, new, 0.0)
    assert all(not ALLOWED[s] for s in TERMINAL)


def test_finish_is_idempotent_and_counts_stay_consistent(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    t = _task()
    core.admit(t, core.classical, 0.0)
    assert core.finish(t, S.CANCELLED, 1.0) is True
    assert core.finish(t, S.COMPLETED, 2.0) is False
    assert t.status is S.CANCELLED and t.finished_at == 1.0
    assert core.counts[S.CANCELLED] == 1 and core.counts[S.COMPLETED] == 0
    core.release(core.classical, t.started_at, 2.0)
    with pytest.raises(InternalError, match="released twice"):
        core.release(core.classical, t.started_at, 2.0)


def test_listener_sees_every_change_in_order(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    seen: list[tuple[int, TaskStatus, TaskStatus, float]] = []
    core.listener = lambda task, old, new, now: seen.append((task.task_id, old, new, now))
    t = _task()
    core.admit(t, core.classical, 1.0)
    core.finish(t, S.COMPLETED, 2.0)
    assert seen == [
        (t.task_id, S.PENDING, S.QUEUED, 1.0),
        (t.task_id, S.QUEUED, S.RUNNING, 1.0),
        (t.task_id, S.RUNNING, S.COMPLETED, 2.0),
    ]


def test_listeners_hear_running_with_the_start_time_set(clock: ManualClock) -> None:
    """A listener that renders a task when it starts (the service's event stream) sees when
    it started, on the admission's fast path and from the queue alike."""
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    started: dict[int, float | None] = {}

    def listener(task: Task[Any], old: TaskStatus, new: TaskStatus, now: float) -> None:
        # Each move is heard with the task in its new status (the fast path's QUEUED too).
        assert task.status is new
        if new is S.RUNNING:
            started[task.task_id] = task.started_at
        else:
            assert task.started_at is None or new in TERMINAL

    core.listener = listener
    fast, queued = _task(), _task()
    core.admit(fast, core.classical, 1.0)  # PENDING -> QUEUED -> RUNNING in one step
    core.admit(queued, core.classical, 1.5)
    core.finish(fast, S.COMPLETED, 2.0)
    core.release(core.classical, fast.started_at, 2.0)
    assert core.next_ready(core.classical, 3.0) is queued
    assert started == {fast.task_id: 1.0, queued.task_id: 3.0}
    core.check_invariants()


def test_latency_statistics_come_from_the_clock(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    a, b = _task(), _task()
    core.admit(a, core.classical, 0.0)
    core.admit(b, core.classical, 0.0)
    core.finish(a, S.COMPLETED, 2.0)
    core.release(core.classical, a.started_at, 2.0)
    assert core.next_ready(core.classical, 3.0) is b
    core.finish(b, S.COMPLETED, 4.0)
    assert list(core.queue_waits) == [0.0, 3.0]
    assert list(core.latencies) == [2.0, 4.0]


def test_a_withdrawn_job_requeues_its_tasks_behind_their_level(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=1), clock)
    pool = core.add_pool("qpu", 1, direct=False)
    a, b = _task(TaskPriority.LOW), _task(TaskPriority.LOW)
    for t in (a, b):
        core.admit(t, pool, 0.0)
    batch = core.take_batch(pool, 1.0, 2)
    assert batch == [a, b] and pool.busy == 1 and core.quantum_in_flight == 2
    waiting = _task(TaskPriority.LOW)
    core.admit(waiting, pool, 1.5)
    for t in batch:
        core.withdraw(t, pool, 2.0)
    core.job_done(pool, len(batch), 1.0, 2.0)  # one slot for the whole job
    assert (a.status, b.status) == (S.PREEMPTED, S.PREEMPTED)
    assert (a.preemptions, core.preemptions, core.waiting, pool.busy) == (1, 2, 3, 0)
    # Behind the task of their level that already waited, in their own order.
    assert core.take_batch(pool, 3.0, 3) == [waiting, a, b]
    assert a.status is S.RUNNING
    core.check_invariants()


def test_slots_held_for_outside_work_are_not_given_to_tasks(clock: ManualClock) -> None:
    core = SchedulerCore(SchedulerConfig(workers=2), clock)
    pool = core.classical
    core.occupy(pool, 2)  # another user's jobs hold the device
    t = _task()
    assert core.admit(t, pool, clock.now()) is False
    with pytest.raises(InternalError, match="0 free"):
        core.occupy(pool, 1)
    core.release(pool, None, clock.now())
    assert core.next_ready(pool, clock.now()) is t
    core.check_invariants()


def test_a_task_never_admitted_ends_only_from_pending_to_a_terminal_state(
    clock: ManualClock,
) -> None:
    t = _task()
    SchedulerCore.end_unadmitted(t, S.CANCELLED, clock.now())
    assert (t.status, t.finished_at) == (S.CANCELLED, clock.now())
    with pytest.raises(InternalError, match="CANCELLED -> FAILED"):
        SchedulerCore.end_unadmitted(t, S.FAILED, clock.now())
    with pytest.raises(InternalError, match="PENDING -> QUEUED"):
        SchedulerCore.end_unadmitted(_task(), S.QUEUED, clock.now())
