"""Recovery decisions and the re-admission of recovered tasks, on numbers and the manual clock."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from logosq_os_scheduler import (
    ManualClock,
    QueueFullError,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.core._recovery import (
    RecoveryAction,
    RecoveryFacts,
    decide_recovery,
    waits_for_backend,
)


def _noop() -> None:
    return None


def test_the_recovery_table() -> None:
    A = RecoveryAction
    # Never started: back to the queue, whatever else is true.
    for quantum, restartable in itertools.product([False, True], repeat=2):
        facts = RecoveryFacts(running=False, quantum=quantum, restartable=restartable)
        assert decide_recovery(facts) is A.REQUEUE
    # Classical and running: only a restartable task runs again.
    assert decide_recovery(RecoveryFacts(running=True, quantum=False)) is A.FAIL
    assert decide_recovery(RecoveryFacts(True, False, restartable=True)) is A.RERUN
    # Quantum and running: reattach by job ID where the backend can, never send again.
    assert decide_recovery(RecoveryFacts(True, True, job_id="j1", can_reattach=True)) is A.REATTACH
    # An ID from a backend that cannot reattach (a simulator that died): run again.
    assert decide_recovery(RecoveryFacts(True, True, job_id="j1")) is A.RERUN
    # Intent written, no ID: resend with the same key where the backend remembers keys.
    assert decide_recovery(RecoveryFacts(True, True, job_intent=True, remembers_keys=True)) is (
        A.RESEND
    )
    assert decide_recovery(RecoveryFacts(True, True, job_intent=True)) is A.RERUN
    # No slot free to collect the job in: resend where the backend remembers keys, else rerun.
    full = RecoveryFacts(True, True, job_id="j1", job_intent=True, can_reattach=True)
    assert decide_recovery(full) is A.REATTACH
    assert decide_recovery(dataclasses.replace(full, slot_free=False)) is A.RERUN
    remembers = dataclasses.replace(full, remembers_keys=True, slot_free=False)
    assert decide_recovery(remembers) is A.RESEND


def test_which_recovered_tasks_wait_for_a_backend() -> None:
    # Classical work never waits for a backend.
    assert not waits_for_backend(quantum=False, backends_registered=False, in_job=True)
    # Quantum: with no backend registered yet (as at a start), it waits for the program's own.
    assert waits_for_backend(quantum=True, backends_registered=False, in_job=False)
    # Registered and routable: admitted now; no backend can run it: it waits.
    assert not waits_for_backend(quantum=True, backends_registered=True, in_job=False)
    assert waits_for_backend(quantum=True, backends_registered=True, in_job=False, routable=False)
    # It was in a job: it waits for that backend by name, whatever else is registered.
    assert waits_for_backend(quantum=True, backends_registered=True, in_job=True)
    assert not waits_for_backend(
        quantum=True, backends_registered=True, in_job=True, job_backend_back=True
    )


def _task(priority: TaskPriority) -> Task[None]:
    return Task.classical(priority.name).with_function(_noop).with_priority(priority).build()


def test_a_recovered_task_keeps_its_age_and_always_queues() -> None:
    clock = ManualClock(1000.0)
    core = SchedulerCore(SchedulerConfig(workers=1, aging_threshold=10.0, max_queue_depth=1), clock)
    pool = core.classical
    low = _task(TaskPriority.LOW)
    normal = _task(TaskPriority.NORMAL)
    # The slot is free, yet a recovered task waits in the queue (recovery starts them all in
    # queue order once every one is back), past max_queue_depth too.
    assert core.admit(low, pool, clock.now(), waited=25.0) is False
    assert core.admit(normal, pool, clock.now(), waited=0.0) is False
    assert low.status is TaskStatus.QUEUED and core.waiting == 2
    assert low.submitted_at == low.enqueued_at == 975.0
    # 25 s of waiting before the restart lift LOW two levels past NORMAL (aging every 10 s).
    assert core.next_ready(pool, clock.now()) is low
    # A plain submit still meets the limit.
    with pytest.raises(QueueFullError):
        core.admit(_task(TaskPriority.HIGH), pool, clock.now())


def test_a_recovered_deadline_counts_from_the_original_submit() -> None:
    clock = ManualClock(500.0)
    core = SchedulerCore(SchedulerConfig(workers=1, task_timeout=30.0), clock)
    task = _task(TaskPriority.NORMAL)
    core.admit(task, core.classical, clock.now(), waited=20.0)
    assert task.deadline == 510.0
