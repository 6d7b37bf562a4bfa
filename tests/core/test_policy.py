"""The quantum policy (core/_policy.py) on the manual clock: batching, work stealing,
retries, breaker accounting and withdrawal, with no event loop and no backend object."""

from __future__ import annotations

import random
from typing import Any

import pytest

from logosq_os_scheduler import (
    BackendUnavailableError,
    ManualClock,
    PermanentBackendError,
    RetriesExhaustedError,
    SchedulerConfig,
    SimulationTooCostlyError,
    Task,
    TaskPriority,
    TaskStatus,
    TransientBackendError,
)
from logosq_os_scheduler.backends import BackendCapabilities, CircuitSpec, JobCost
from logosq_os_scheduler.core import SchedulerCore
from logosq_os_scheduler.core._backends import BackendState, Flight
from logosq_os_scheduler.core._breaker import BreakerState, CircuitBreaker
from logosq_os_scheduler.core._capabilities import CircuitRequirements
from logosq_os_scheduler.core._policy import (
    FailureKind,
    Hold,
    Launch,
    QuantumPolicy,
    RetryAction,
    RetryMove,
    StuckMove,
    backend_lost,
    classify_failure,
    retry_move,
    when_stuck,
)
from logosq_os_scheduler.core._routing import RoutingDecision

P = TaskPriority
ONE_SECOND = JobCost(fixed=1.0, per_circuit=0.0, per_shot=0.0)


def make_core(**config: Any) -> tuple[SchedulerCore, ManualClock, QuantumPolicy]:
    clock = ManualClock()
    core = SchedulerCore(SchedulerConfig(**config), clock)
    return core, clock, QuantumPolicy(core, random.Random(7))


def add_backend(
    core: SchedulerCore,
    name: str,
    *,
    slots: int = 1,
    per_job: int = 1,
    qubits: int = 5,
    cost: JobCost = ONE_SECOND,
) -> BackendState:
    caps = BackendCapabilities(
        name, qubits, max_concurrent_jobs=slots, max_circuits_per_job=per_job, cost=cost
    )
    pool = core.add_pool(name, slots, direct=False)
    cfg = core.config
    return BackendState(
        name, caps, pool, CircuitBreaker(cfg.breaker_threshold, cfg.breaker_cooldown)
    )


def queue(
    core: SchedulerCore,
    state: BackendState,
    now: float,
    priority: TaskPriority = P.NORMAL,
    *,
    name: str = "q",
    pinned: str | None = None,
) -> Task[Any]:
    builder = Task.quantum(name).with_circuit(CircuitSpec(2)).with_priority(priority)
    if pinned is not None:
        builder = builder.with_backend(pinned)
    task = builder.build()
    task.requirements = CircuitRequirements(2)
    core.admit(task, state.pool, now)
    return task


# -- batching -------------------------------------------------------------------------------


def test_a_partial_batch_is_held_for_the_window_then_launched() -> None:
    core, clock, policy = make_core(batch_window=0.5)
    b = add_backend(core, "b", per_job=4)
    queue(core, b, clock.now())
    queue(core, b, clock.now())
    step = policy.next_job([b], clock.now(), set())
    assert step == Hold(b, 0.5)
    clock.advance(0.49)
    assert isinstance(policy.next_job([b], clock.now(), set()), Hold)
    clock.advance(0.01)
    assert policy.next_job([b], clock.now(), set()) == Launch(b, 4)


def test_a_held_batch_launches_at_the_time_its_hold_named_whatever_the_rounding() -> None:
    # (2/7 + 1.0) - 2/7 < 1.0 in floating point: a hold compared by difference would hold
    # again at the very time it said it would end, and a driver would wait on it forever.
    core, clock, policy = make_core(batch_window=1.0)
    b = add_backend(core, "b", per_job=4)
    clock.set(2 / 7)
    queue(core, b, clock.now())
    step = policy.next_job([b], clock.now(), set())
    assert isinstance(step, Hold)
    assert (step.until - 2 / 7) < 1.0  # the rounding the rule must not trip on
    assert policy.next_job([b], step.until, set()) == Launch(b, 4)


def test_a_full_batch_an_urgent_head_or_a_flush_goes_at_once() -> None:
    core, clock, policy = make_core(batch_window=0.5)
    full = add_backend(core, "full", per_job=2)
    urgent = add_backend(core, "urgent", per_job=4)
    flushed = add_backend(core, "flushed", per_job=4)
    queue(core, full, 0.0)
    queue(core, full, 0.0)
    assert policy.next_job([full], 0.0, set()) == Launch(full, 2)
    queue(core, urgent, 0.0, P.HIGH)
    assert policy.next_job([urgent], 0.0, set()) == Launch(urgent, 4)
    queue(core, flushed, 0.0)
    assert isinstance(policy.next_job([flushed], 0.0, set()), Hold)
    policy.flush(0.0)
    assert policy.next_job([flushed], 0.0, set()) == Launch(flushed, 4)
    # A task queued after the flush is held again.
    clock.advance(0.1)
    core.take_batch(flushed.pool, 0.1, 4)
    flushed.pool.busy = 0
    queue(core, flushed, 0.1)
    assert policy.next_job([flushed], 0.1, set()) == Hold(flushed, pytest.approx(0.6))


def test_the_backend_with_the_most_urgent_head_goes_first_and_ties_go_by_arrival() -> None:
    core, _, policy = make_core(batch_window=0.0)
    a = add_backend(core, "a")
    b = add_backend(core, "b")
    queue(core, a, 0.0, P.NORMAL)
    queue(core, b, 0.0, P.NORMAL)
    assert policy.next_job([b, a], 0.0, set()) == Launch(a, 1)
    queue(core, b, 0.0, P.HIGH)
    assert policy.next_job([a, b], 0.0, set()) == Launch(b, 1)
    # A backend already held this round, busy, or out of rotation is passed over.
    assert policy.next_job([a, b], 0.0, {"b"}) == Launch(a, 1)
    b.pool.busy = 1
    assert policy.next_job([a, b], 0.0, set()) == Launch(a, 1)
    a.breaker.force_open(0.0)
    assert policy.next_job([a, b], 0.0, set()) is None


def test_the_global_cap_bounds_the_job_and_stops_dispatch() -> None:
    core, _, policy = make_core(batch_window=0.0, max_concurrent_quantum=3)
    b = add_backend(core, "b", slots=2, per_job=5)
    for _ in range(8):
        queue(core, b, 0.0)
    step = policy.next_job([b], 0.0, set())
    assert step == Launch(b, 3)
    assert len(core.take_batch(b.pool, 0.0, 3)) == 3
    assert policy.room() == 0
    assert policy.next_job([b], 0.0, set()) is None


# -- work stealing --------------------------------------------------------------------------


def test_an_idle_fast_backend_takes_work_from_the_back_of_a_slow_queue() -> None:
    core, _, policy = make_core()
    slow = add_backend(core, "slow", cost=JobCost(fixed=10.0, per_circuit=0.0, per_shot=0.0))
    fast = add_backend(core, "fast", cost=JobCost(fixed=1.0, per_circuit=0.0, per_shot=0.0))
    tasks = [queue(core, slow, 0.0) for _ in range(4)]
    plan = policy.plan_steal([slow, fast], 0.0)
    assert plan is not None
    assert (plan.thief, plan.donor) == (fast, slow)
    assert plan.tasks == (tasks[-1],)  # one job's worth, from the back
    policy.steal(plan)
    assert list(fast.pool.queue) == [tasks[-1]]
    assert len(slow.pool.queue) == 3
    assert core.reroutes == 0  # load balancing is not a reroute
    core.check_invariants()


def test_work_stays_where_it_finishes_sooner_pinned_or_allowed_elsewhere() -> None:
    core, _, policy = make_core()
    slow = add_backend(core, "slow", cost=JobCost(fixed=1.0, per_circuit=0.0, per_shot=0.0))
    slower = add_backend(core, "slower", cost=JobCost(fixed=50.0, per_circuit=0.0, per_shot=0.0))
    for _ in range(3):
        queue(core, slow, 0.0)
    assert policy.plan_steal([slow, slower], 0.0) is None  # the idle one is slower
    fast = add_backend(core, "fast", cost=JobCost(fixed=0.1, per_circuit=0.0, per_shot=0.0))
    pinned = add_backend(core, "pinned", cost=JobCost(fixed=10.0, per_circuit=0.0, per_shot=0.0))
    held = [queue(core, pinned, 0.0, pinned="pinned") for _ in range(3)]
    ruled = [queue(core, pinned, 0.0) for _ in range(2)]
    for task in ruled:
        task.routing = RoutingDecision("pinned", "rule", 0, {}, "rule 0", allowed=("pinned",))
    slow.pool.busy = 1  # only 'fast' is idle now; 'slow' still has queued work
    plan = policy.plan_steal([pinned, fast], 0.0)
    assert plan is None
    assert all(t.status is TaskStatus.QUEUED for t in held + ruled)


def _two_waiting_at_slow() -> tuple[
    QuantumPolicy, BackendState, BackendState, Task[Any], Task[Any]
]:
    """A slow backend with two tasks waiting, and an idle fast one."""
    core, _, policy = make_core()
    slow = add_backend(core, "slow", cost=JobCost(fixed=10.0, per_circuit=0.0, per_shot=0.0))
    fast = add_backend(core, "fast")
    return policy, slow, fast, queue(core, slow, 0.0), queue(core, slow, 0.0)


def test_a_task_rerouted_away_from_a_backend_is_not_stolen_back_to_it() -> None:
    policy, slow, fast, first, last = _two_waiting_at_slow()
    last.backends_tried = ["fast", "fast"]  # it failed there twice and was rerouted here
    plan = policy.plan_steal([slow, fast], 0.0)
    assert plan is not None and plan.tasks == (first,)  # the next one back moves instead
    last.backends_tried = None
    plan = policy.plan_steal([slow, fast], 0.0)
    assert plan is not None and plan.tasks == (last,)


def test_a_stolen_tasks_routing_decision_says_why() -> None:
    policy, slow, fast, first, last = _two_waiting_at_slow()
    last.routing = RoutingDecision("slow", "fallback", None, {}, "least expected completion")
    plan = policy.plan_steal([slow, fast], 0.0)
    assert plan is not None and plan.tasks == (last,)
    policy.steal(plan)
    assert last.routing.backend == "fast"
    assert "work stealing" in last.routing.reason
    assert first.routing is None


# -- failures -------------------------------------------------------------------------------


def test_failures_are_classified() -> None:
    assert classify_failure(BackendUnavailableError("b", "down")) is FailureKind.UNAVAILABLE
    assert classify_failure(TransientBackendError("b", "blip")) is FailureKind.TRANSIENT
    assert classify_failure(PermanentBackendError("b", "bad")) is FailureKind.PERMANENT
    assert classify_failure(RuntimeError("surprise")) is FailureKind.TRANSIENT
    assert classify_failure(RetriesExhaustedError(1, "x")) is FailureKind.PERMANENT


def test_which_failures_count_against_the_breaker() -> None:
    core, _, policy = make_core(breaker_threshold=2)
    b = add_backend(core, "b")
    assert policy.job_failed(b, PermanentBackendError("b", "bad circuit"), 0.0) is None
    assert policy.job_failed(b, TransientBackendError("b", "blip"), 0.0) is None
    assert policy.job_failed(b, TransientBackendError("b", "blip"), 0.0) is True
    assert b.breaker.state(0.0) is BreakerState.OPEN
    assert policy.job_failed(b, BackendUnavailableError("b", "down"), 1.0) is False
    assert (core.breaker_trips, b.failed_attempts) == (1, 4)
    c = add_backend(core, "c")
    assert policy.job_failed(c, BackendUnavailableError("c", "down"), 0.0) is True
    assert core.breaker_trips == 2


def test_retry_backs_off_with_full_jitter_then_exhausts_the_budget() -> None:
    core, _, policy = make_core(max_retries=2, retry_backoff=0.1, retry_backoff_max=0.15)
    b = add_backend(core, "b")
    task = queue(core, b, 0.0)
    error = TransientBackendError("b", "blip")
    for attempt, ceiling in ((1, 0.1), (2, 0.15)):
        core.take_batch(b.pool, 0.0, 1)
        task.backends_tried = ["x"] * attempt  # failures elsewhere: no reroute yet
        decision = policy.decide_retry(task, b, error, 0.0)
        assert decision.action is RetryAction.RETRY and not decision.reroute
        assert 0.0 <= decision.delay <= ceiling
        core.job_done(b.pool, 1, 0.0, 0.0)
        core.requeue(task, b.pool, 0.0)
    core.take_batch(b.pool, 0.0, 1)
    decision = policy.decide_retry(task, b, error, 0.0)
    assert decision.action is RetryAction.FAIL
    assert isinstance(decision.error, RetriesExhaustedError)
    assert decision.error.__cause__ is error
    assert "failed 3 attempts (retry budget 2)" in str(decision.error)
    assert core.retries == 2


def test_the_jitter_is_reproducible_under_a_seed() -> None:
    delays = []
    for _ in range(2):
        core, _, policy = make_core(retry_backoff=1.0, retry_backoff_max=100.0)
        b = add_backend(core, "b")
        task = queue(core, b, 0.0)
        core.take_batch(b.pool, 0.0, 1)
        delays.append(policy.decide_retry(task, b, RuntimeError("x"), 0.0).delay)
    assert delays[0] == delays[1]


def test_a_permanent_error_fails_at_once() -> None:
    core, _, policy = make_core()
    b = add_backend(core, "b")
    task = queue(core, b, 0.0)
    core.take_batch(b.pool, 0.0, 1)
    error = PermanentBackendError("b", "bad circuit")
    assert policy.decide_retry(task, b, error, 0.0).error is error
    assert core.retries == 0


def test_a_circuit_too_costly_to_simulate_here_goes_elsewhere_unless_pinned() -> None:
    core, _, policy = make_core(max_retries=0)
    b = add_backend(core, "b")
    task = queue(core, b, 0.0)
    core.take_batch(b.pool, 0.0, 1)
    error = SimulationTooCostlyError(
        "b",
        seconds=900.0,
        memory_bytes=1 << 20,
        budget_seconds=300.0,
        budget_bytes=None,
        estimate="25 qubits",
        over="the time budget",
        ways_out=(),
    )
    # Another backend may simulate it cheaper: placement, not a retry (no budget, no delay).
    decision = policy.decide_retry(task, b, error, 0.0)
    assert decision.action is RetryAction.RETRY and decision.error is error
    assert decision.reroute and decision.elsewhere_only and decision.delay == 0.0
    assert core.retries == 0
    pinned = Task.quantum("p").with_circuit(CircuitSpec(2)).with_backend("b").build()
    assert policy.decide_retry(pinned, b, error, 0.0).action is RetryAction.FAIL


def test_reroute_after_two_failures_on_one_backend_or_when_it_left_rotation() -> None:
    core, _, policy = make_core(max_retries=5)
    b = add_backend(core, "b")
    task = queue(core, b, 0.0)
    core.take_batch(b.pool, 0.0, 1)
    task.backends_tried = ["b"]
    assert not policy.decide_retry(task, b, RuntimeError("x"), 0.0).reroute
    task.backends_tried = ["b", "b"]
    assert policy.decide_retry(task, b, RuntimeError("x"), 0.0).reroute
    task.backends_tried = ["b"]
    assert policy.decide_retry(task, b, RuntimeError("x"), 0.0, moved=True).reroute
    b.breaker.force_open(0.0)
    assert policy.decide_retry(task, b, RuntimeError("x"), 0.0).reroute
    pinned = queue(core, b, 0.0, pinned="b")
    core.job_done(b.pool, 1, 0.0, 0.0)  # the first task's job failed: its slot is free
    assert core.take_batch(b.pool, 0.0, 1) == [pinned]
    assert pinned.status is TaskStatus.RUNNING and pinned.attempts == 1
    assert not policy.decide_retry(pinned, b, RuntimeError("x"), 0.0, moved=True).reroute


# -- withdrawal -----------------------------------------------------------------------------


def test_withdrawal_frees_a_slot_for_the_most_urgent_waiting_task() -> None:
    core, _, policy = make_core(preemption="preemptive", batch_window=0.0)
    b = add_backend(core, "b", slots=2)
    low = queue(core, b, 0.0, P.LOW)
    normal = queue(core, b, 0.0, P.NORMAL)
    first = core.take_batch(b.pool, 0.0, 1)
    second = core.take_batch(b.pool, 0.0, 1)
    assert (first, second) == ([normal], [low])
    b.flights = [Flight(first, "job-normal", 0.0), Flight(second, "job-low", 0.0)]
    assert policy.withdrawal_order([b], 0.0) == []  # nothing urgent waits
    queue(core, b, 0.0, P.HIGH)
    assert policy.withdrawal_order([b], 0.0) == [(b, P.HIGH)]
    order = policy.withdrawal_candidates(b, P.HIGH)
    assert [f.jobs for f in order] == ["job-low", "job-normal"]  # least urgent first
    b.flights[1].started = True
    assert [f.jobs for f in policy.withdrawal_candidates(b, P.HIGH)] == ["job-normal"]
    # Equal priority never yields; a non-preemptible task keeps its job.
    assert policy.withdrawal_candidates(b, P.NORMAL) == []
    normal.preemptible = False
    assert policy.withdrawal_candidates(b, P.HIGH) == []


def test_no_withdrawal_unless_preemptive() -> None:
    core, _, policy = make_core(preemption="cooperative")
    b = add_backend(core, "b")
    queue(core, b, 0.0, P.LOW)
    b.flights = [Flight(core.take_batch(b.pool, 0.0, 1), "job", 0.0)]
    queue(core, b, 0.0, P.CRITICAL)
    assert policy.withdrawal_order([b], 0.0) == []


# -- cost -----------------------------------------------------------------------------------


def test_the_per_circuit_cost_is_an_average_that_forgets() -> None:
    core, _, _ = make_core()
    b = add_backend(core, "b", cost=JobCost(fixed=0.0, per_circuit=0.1, per_shot=0.0))
    b.record_job(4, 2.0)
    assert b.per_circuit == pytest.approx(0.5)
    b.record_job(1, 0.1)
    assert b.per_circuit == pytest.approx(0.7 * 0.5 + 0.3 * 0.1)
    # The observed cost wins when larger than the declared one, and not otherwise.
    assert b.job_seconds(2, 0) == pytest.approx(2 * b.per_circuit)
    b.per_circuit = 0.01
    assert b.job_seconds(2, 0) == pytest.approx(0.2)


def test_slot_wanted_is_a_cheap_upper_estimate_of_should_yield() -> None:
    from logosq_os_scheduler import PreemptionStrategy
    from logosq_os_scheduler.core._preemption import should_yield, slot_wanted

    core, _, _ = make_core(workers=1)
    pool = core.classical
    running = Task.classical("run").with_function(print).with_priority(P.HIGH).build()
    assert core.admit(running, pool, 0.0)
    assert not slot_wanted(pool, PreemptionStrategy.COOPERATIVE)  # nothing waits
    waiting = Task.classical("wait").with_function(print).with_priority(P.LOW).build()
    core.admit(waiting, pool, 0.0)
    assert slot_wanted(pool, PreemptionStrategy.COOPERATIVE)
    assert not should_yield(running, pool, PreemptionStrategy.COOPERATIVE, 3, 0.0)  # LOW waits
    assert not slot_wanted(pool, PreemptionStrategy.NONE)
    assert not slot_wanted(None, PreemptionStrategy.COOPERATIVE)


# -- evacuation -----------------------------------------------------------------------------


def test_evacuation_moves_what_can_go_and_keeps_or_fails_the_rest() -> None:
    from logosq_os_scheduler import NoRouteError

    core, _, policy = make_core()
    down = add_backend(core, "down")
    movable = queue(core, down, 0.0)
    stuck = queue(core, down, 0.0, name="stuck")
    pinned = queue(core, down, 0.0, pinned="down")

    def route(task: Task[Any]) -> RoutingDecision:
        if task.name == "stuck":
            raise NoRouteError("2 qubits", {"other": "too small"})
        return RoutingDecision("other", "fallback", None, {}, "elsewhere")

    plan = policy.plan_evacuation(down, route)
    assert [t for t, _ in plan.moves] == [movable] and plan.failures == ()
    assert set(plan.staying) == {stuck, pinned}  # out of rotation only: they wait for it
    down.removed = True
    plan = policy.plan_evacuation(down, route)
    assert {t for t, _ in plan.moves} == {movable, pinned}  # leaving: pinned work moves too
    assert [t for t, _ in plan.failures] == [stuck] and plan.staying == ()


def test_where_a_retrying_task_goes() -> None:
    M = RetryMove
    # Routing found another backend: there, whatever else holds.
    for removed in (False, True):
        for delay in (0.0, 0.5):
            assert retry_move(delay, routed_elsewhere=True, backend_removed=removed) is M.ELSEWHERE
    # Its backend left and nothing else can run it: it fails.
    assert retry_move(0.5, routed_elsewhere=False, backend_removed=True) is M.FAIL_NO_ROUTE
    # Its backend stays: back to it, at once or after the back-off.
    assert retry_move(0.0, routed_elsewhere=False, backend_removed=False) is M.NOW
    assert retry_move(0.5, routed_elsewhere=False, backend_removed=False) is M.BACK_OFF
    # Only another backend would do (a circuit too costly here): none found, it gives up.
    assert retry_move(0.0, routed_elsewhere=True, backend_removed=False, elsewhere_only=True) is (
        M.ELSEWHERE
    )
    for removed in (False, True):
        move = retry_move(0.0, routed_elsewhere=False, backend_removed=removed, elsewhere_only=True)
        assert move is M.GIVE_UP


def test_a_job_lost_with_its_backend_sends_its_tasks_elsewhere_first() -> None:
    assert backend_lost(BackendUnavailableError("b", "down"), hung=False)
    assert backend_lost(TransientBackendError("b", "hiccup"), hung=True)
    assert not backend_lost(TransientBackendError("b", "hiccup"), hung=False)
    assert not backend_lost(PermanentBackendError("b", "bad circuit"), hung=False)


def test_what_the_dispatcher_tries_when_no_job_can_start() -> None:
    assert when_stuck(at_cap=True) == (StuckMove.WITHDRAW,)
    assert when_stuck(at_cap=False) == (StuckMove.STEAL, StuckMove.WITHDRAW)
