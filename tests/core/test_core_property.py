"""Property test: any interleaving of submit/cancel/complete/fail/timeout ends every task in
exactly one terminal state, with counters that agree."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from logosq_os_scheduler import (
    ManualClock,
    QueueFullError,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.core import TERMINAL, SchedulerCore

S = TaskStatus

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from(list(TaskPriority)),
            st.one_of(st.none(), st.floats(0.5, 20)),
        ),
        st.tuples(st.just("cancel"), st.integers(0, 200)),
        st.tuples(st.just("complete"), st.integers(0, 200)),
        st.tuples(st.just("fail"), st.integers(0, 200)),
        st.tuples(st.just("advance"), st.floats(0, 10)),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, workers=st.integers(1, 4), depth=st.one_of(st.none(), st.integers(1, 10)))
def test_every_task_ends_exactly_once(
    ops: list[tuple[Any, ...]], workers: int, depth: int | None
) -> None:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(workers=workers, max_queue_depth=depth), clock)
    pool = core.classical
    endings: dict[int, list[TaskStatus]] = {}
    core.listener = lambda t, old, new, now: (
        endings.setdefault(t.task_id, []).append(new) if new in TERMINAL else None
    )
    admitted: list[Task[Any]] = []
    holding: set[int] = set()  # tasks whose execution holds a slot

    def dispatch() -> None:
        while (t := core.next_ready(pool, clock.now())) is not None:
            holding.add(t.task_id)

    for op in ops:
        kind = op[0]
        if kind == "submit":
            b = Task.classical("t").with_function(int).with_priority(op[1])
            if op[2] is not None:
                b.with_timeout(op[2])
            task = b.build()
            try:
                started = core.admit(task, pool, clock.now())
            except QueueFullError:
                assert task.status is S.PENDING
                continue
            admitted.append(task)
            if started:
                holding.add(task.task_id)
        elif kind == "advance":
            clock.advance(op[1])
            core.expire(clock.now())
        elif admitted:
            task = admitted[op[1] % len(admitted)]
            if kind == "cancel":
                core.finish(task, S.CANCELLED, clock.now())
            elif task.task_id in holding:
                # The execution returns: end the task (unless it already ended) and free the slot.
                core.finish(task, S.COMPLETED if kind == "complete" else S.FAILED, clock.now())
                holding.discard(task.task_id)
                core.release(pool, task.started_at, clock.now())
        dispatch()
        core.check_invariants()
        assert pool.busy == len(holding) <= workers

    # Drain: finish everything still running, then everything that gets to run.
    while core.unfinished:
        for task in admitted:
            if task.task_id in holding:
                core.finish(task, S.COMPLETED, clock.now())
                holding.discard(task.task_id)
                core.release(pool, task.started_at, clock.now())
        dispatch()
    for task in admitted:
        if task.task_id in holding:
            holding.discard(task.task_id)
            core.release(pool, task.started_at, clock.now())

    assert all(len(endings.get(t.task_id, [])) == 1 for t in admitted)
    assert all(t.status in TERMINAL for t in admitted)
    assert core.submitted == len(admitted)
    by_status = {s: sum(1 for t in admitted if t.status is s) for s in TaskStatus}
    assert {s: n for s, n in core.counts.items()} == by_status
    assert core.waiting == 0 and pool.busy == 0
    core.check_invariants()
