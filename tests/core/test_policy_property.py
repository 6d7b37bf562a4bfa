"""Invariants of the quantum policy under random workloads (hypothesis), driven on the manual
clock exactly as the runtime drives it: jobs formed by next_job, work stealing, retries and
completions in any order."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from logosq_os_scheduler import (
    ManualClock,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
    TransientBackendError,
)
from logosq_os_scheduler.backends import BackendCapabilities, CircuitSpec, JobCost
from logosq_os_scheduler.core import TERMINAL, SchedulerCore
from logosq_os_scheduler.core._backends import BackendState
from logosq_os_scheduler.core._breaker import CircuitBreaker
from logosq_os_scheduler.core._policy import Hold, QuantumPolicy, RetryAction

S = TaskStatus

ops = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 2), st.sampled_from(list(TaskPriority))),
        st.tuples(st.just("finish"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0, 3)),
        st.tuples(st.just("dispatch"), st.just(0)),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(
    ops=ops,
    shape=st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 4), st.floats(0.1, 5)), min_size=3, max_size=3
    ),
    cap=st.one_of(st.none(), st.integers(1, 6)),
    window=st.sampled_from([0.0, 0.5]),
)
def test_capacity_is_never_exceeded_and_every_task_is_in_exactly_one_place(
    ops: list[tuple[Any, ...]],
    shape: list[tuple[int, int, float]],
    cap: int | None,
    window: float,
) -> None:
    clock = ManualClock()
    config = SchedulerConfig(
        max_concurrent_quantum=cap, batch_window=window, max_retries=1, aging_threshold=2.0
    )
    core = SchedulerCore(config, clock)
    policy = QuantumPolicy(core, random.Random(0))
    backends = []
    for i, (slots, per_job, fixed) in enumerate(shape):
        caps = BackendCapabilities(
            f"b{i}",
            5,
            max_concurrent_jobs=slots,
            max_circuits_per_job=per_job,
            cost=JobCost(fixed=fixed, per_circuit=0.0, per_shot=0.0),
        )
        pool = core.add_pool(caps.name, slots, direct=False)
        backends.append(BackendState(caps.name, caps, pool, CircuitBreaker(3, 1.0)))
    jobs: list[tuple[BackendState, list[Task[Any]]]] = []
    tasks: list[Task[Any]] = []

    def dispatch() -> None:
        held: set[str] = set()
        while True:
            step = policy.next_job(backends, clock.now(), held)
            if step is None:
                plan = policy.plan_steal(backends, clock.now())
                if plan is None:
                    return
                policy.steal(plan)
                continue
            if isinstance(step, Hold):
                assert step.until > clock.now()
                held.add(step.backend.name)
                continue
            batch = core.take_batch(step.backend.pool, clock.now(), step.limit)
            assert 0 < len(batch) <= step.backend.caps.max_circuits_per_job
            jobs.append((step.backend, batch))

    for op in ops:
        now = clock.now()
        if op[0] == "submit":
            task = Task.quantum("q").with_circuit(CircuitSpec(2)).with_priority(op[2]).build()
            core.admit(task, backends[op[1]].pool, now)
            tasks.append(task)
        elif op[0] == "advance":
            clock.advance(op[1])
        elif op[0] == "finish" and jobs:
            state, batch = jobs.pop(op[1] % len(jobs))
            core.job_done(state.pool, len(batch), now, now)
            for task in batch:
                if op[2]:
                    core.transition(task, S.COMPLETED, now)
                    continue
                decision = policy.decide_retry(task, state, TransientBackendError("b", "x"), now)
                if decision.action is RetryAction.FAIL:
                    task.error = decision.error
                    core.transition(task, S.FAILED, now)
                else:
                    core.requeue(task, state.pool, now)
        else:
            dispatch()
        # Capacity: no backend runs more jobs than its slots, nor the scheduler more
        # circuits than the global cap.
        for state in backends:
            assert 0 <= state.pool.busy <= state.pool.capacity
            assert sum(1 for s, _ in jobs if s is state) == state.pool.busy
        in_jobs = [t for _, batch in jobs for t in batch]
        assert core.quantum_in_flight == len(in_jobs)
        if cap is not None:
            assert core.quantum_in_flight <= cap
        # Every task is in exactly one place: one queue, one job, or ended.
        queued = [t for state in backends for t in state.pool.queue]
        assert len(queued) == len(set(map(id, queued)))
        places = {id(t): 0 for t in tasks}
        for t in queued + in_jobs:
            places[id(t)] += 1
        for t in tasks:
            assert places[id(t)] + (t.status in TERMINAL) == 1, t
            assert (t.status is S.RUNNING) == (places[id(t)] == 1 and t not in queued)
        core.check_invariants()


@settings(max_examples=100, deadline=None)
@given(
    aging=st.floats(0.5, 5.0),
    job_seconds=st.floats(0.1, 2.0),
    arrivals=st.integers(1, 3),
    flood=st.sampled_from([TaskPriority.HIGH, TaskPriority.NORMAL]),
)
def test_aging_lets_a_low_task_through_a_flood_of_urgent_work(
    aging: float, job_seconds: float, arrivals: int, flood: TaskPriority
) -> None:
    """No starvation: a LOW task starts within the time its aging needs to reach HIGH (two
    levels) plus one job for each task queued before it and one for the job running, however
    much HIGH or NORMAL work keeps arriving after it (CRITICAL is the one level aging never
    reaches: it is reserved for work submitted as critical)."""
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(batch_window=0.0, aging_threshold=aging), clock)
    policy = QuantumPolicy(core)
    caps = BackendCapabilities("b", 5, cost=JobCost(fixed=job_seconds))
    state = BackendState("b", caps, core.add_pool("b", 1, direct=False), CircuitBreaker(3, 1.0))

    def submit(priority: TaskPriority) -> Task[Any]:
        task = Task.quantum("q").with_circuit(CircuitSpec(2)).with_priority(priority).build()
        core.admit(task, state.pool, clock.now())
        return task

    ahead = 3
    for _ in range(ahead):
        submit(flood)
    low = submit(TaskPriority.LOW)
    bound = 2 * aging + (ahead + 1) * job_seconds
    while low.status is S.QUEUED:
        assert clock.now() <= bound, f"LOW task still waiting at {clock.now()} > {bound}"
        for _ in range(arrivals):
            submit(flood)
        step = policy.next_job([state], clock.now(), set())
        assert step is not None and not isinstance(step, Hold)
        batch = core.take_batch(state.pool, clock.now(), step.limit)
        clock.advance(job_seconds)
        core.job_done(state.pool, len(batch), clock.now() - job_seconds, clock.now())
        for task in batch:
            core.transition(task, S.COMPLETED, clock.now())
    assert low.started_at is not None and low.started_at <= bound
