"""Fair share in the core, on the manual clock: shares by weight, priorities within a share,
no banked credit, CRITICAL first, caps on running work, and bounded wait under any flood."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logosq_os_scheduler import (
    FairShare,
    InvalidConfigError,
    ManualClock,
    SchedulerConfig,
    Task,
    TaskPriority,
    TaskStatus,
)
from logosq_os_scheduler.core import SchedulerCore

S = TaskStatus
P = TaskPriority


def _task(user: str, priority: P = P.NORMAL) -> Task[Any]:
    return Task.classical(user).with_function(int).with_user(user).with_priority(priority).build()


def _core(clock: ManualClock, workers: int = 1, **fair: Any) -> SchedulerCore:
    config = SchedulerConfig(workers=workers, aging_threshold=None, fair_share=FairShare(**fair))
    return SchedulerCore(config, clock)


def _run_one(core: SchedulerCore, clock: ManualClock) -> Task[Any]:
    """Finish the oldest running task and start the next one; return the one started."""
    pool = core.classical
    now = clock.now()
    task = core.next_ready(pool, now)
    assert task is not None
    core.finish(task, S.COMPLETED, now)
    core.release_task(task, now)
    core.check_invariants()
    return task


def _fill(core: SchedulerCore, clock: ManualClock, tasks: list[Task[Any]]) -> None:
    for t in tasks:
        core.admit(t, core.classical, clock.now())


def _hold_the_slot(core: SchedulerCore, clock: ManualClock) -> Task[Any]:
    """Occupy the one slot so that everything admitted next waits in the queue."""
    blocker = _task("blocker")
    assert core.admit(blocker, core.classical, clock.now()) is True
    return blocker


def _free(core: SchedulerCore, clock: ManualClock, task: Task[Any]) -> None:
    core.finish(task, S.COMPLETED, clock.now())
    core.release_task(task, clock.now())


def test_a_flooding_user_cannot_starve_another_equal_weights(clock: ManualClock) -> None:
    core = _core(clock)
    blocker = _hold_the_slot(core, clock)
    _fill(core, clock, [_task("user_a") for _ in range(100)])
    _fill(core, clock, [_task("user_b") for _ in range(10)])
    _free(core, clock, blocker)
    order = [_run_one(core, clock).user for _ in range(20)]
    # user_b arrived behind 100 of user_a's tasks and still gets every other start.
    assert order.count("user_b") == 10
    assert all(order[i] != order[i + 1] for i in range(19))
    assert [_run_one(core, clock).user for _ in range(90)] == ["user_a"] * 90


def test_starts_follow_the_weights(clock: ManualClock) -> None:
    core = _core(clock, weights={"user_a": 3.0})
    blocker = _hold_the_slot(core, clock)
    _fill(core, clock, [_task("user_a") for _ in range(300)])
    _fill(core, clock, [_task("user_b") for _ in range(300)])
    _free(core, clock, blocker)
    order = [_run_one(core, clock).user for _ in range(400)]
    assert order.count("user_a") == 300 and order.count("user_b") == 100
    # And in every window of 8 starts the 3:1 share holds to within one start.
    for i in range(0, 400, 8):
        assert 5 <= order[i : i + 8].count("user_a") <= 7


def test_priorities_order_a_users_work_but_not_other_users_work(clock: ManualClock) -> None:
    core = _core(clock)
    blocker = _hold_the_slot(core, clock)
    _fill(core, clock, [_task("user_a", P.LOW) for _ in range(3)])
    _fill(core, clock, [_task("user_a", P.HIGH) for _ in range(3)])
    _fill(core, clock, [_task("user_b", P.NORMAL) for _ in range(3)])
    _free(core, clock, blocker)
    started = [_run_one(core, clock) for _ in range(9)]
    user_a = [t.priority for t in started if t.user == "user_a"]
    # Within user_a's share her HIGH work goes first ...
    assert user_a == [P.HIGH] * 3 + [P.LOW] * 3
    # ... and her HIGH work does not hold user_b's NORMAL work back: they alternate.
    assert [t.user for t in started[:6]] == ["user_a", "user_b"] * 3


def test_critical_work_starts_before_any_share(clock: ManualClock) -> None:
    core = _core(clock)
    blocker = _hold_the_slot(core, clock)
    _fill(core, clock, [_task("user_a") for _ in range(5)])
    _run_two = [_task("user_b", P.CRITICAL), _task("user_b", P.CRITICAL)]
    _fill(core, clock, _run_two)
    _free(core, clock, blocker)
    first = [_run_one(core, clock) for _ in range(2)]
    assert first == _run_two


def test_a_user_back_from_idle_has_no_banked_credit(clock: ManualClock) -> None:
    core = _core(clock)
    blocker = _hold_the_slot(core, clock)
    _fill(core, clock, [_task("user_a") for _ in range(200)])
    _free(core, clock, blocker)
    for _ in range(100):
        assert _run_one(core, clock).user == "user_a"
    # user_b was away while user_a used 100 starts; he comes back with 50 tasks.
    _fill(core, clock, [_task("user_b") for _ in range(50)])
    order = [_run_one(core, clock).user for _ in range(20)]
    assert order.count("user_b") == 10  # a fair half from now on, not 50 in a row


def test_a_user_at_max_running_waits_while_slots_stay_free_for_others(
    clock: ManualClock,
) -> None:
    core = _core(clock, workers=4, max_running={"user_a": 2})
    pool = core.classical
    user_a = [_task("user_a") for _ in range(5)]
    started = [core.admit(t, pool, clock.now()) for t in user_a]
    assert started == [True, True, False, False, False]
    assert pool.busy == 2 and core.next_ready(pool, clock.now()) is None
    assert core.fair is not None and "user_a" in core.fair.blocked
    user_b = _task("user_b")
    assert core.admit(user_b, pool, clock.now()) is False  # the queue is not empty: it waits
    assert core.next_ready(pool, clock.now()) is user_b  # ... and passes user_a's capped work
    # One of user_a's tasks ends: the ledger wakes the runtime and her next one may start.
    _free(core, clock, user_a[0])
    assert core.fair.woken is True
    assert core.next_ready(pool, clock.now()) is user_a[2]
    assert core.next_ready(pool, clock.now()) is None  # at her cap of 2 again
    core.check_invariants()


def test_a_group_cap_holds_its_users_together(clock: ManualClock) -> None:
    core = _core(
        clock,
        workers=4,
        groups={"user_a": "lab", "user_c": "lab"},
        group_max_running={"lab": 3},
    )
    pool = core.classical
    for user in ("user_a", "user_c", "user_a", "user_c", "user_b"):
        core.admit(_task(user), pool, clock.now())
    # Three of the lab's tasks run; its fourth waits at the cap, and user_b waits behind it.
    assert sorted(str(t.user) for t in pool.queue) == ["user_b", "user_c"]
    assert core.fair is not None and core.fair.group_running == {"lab": 3}
    user_b = core.next_ready(pool, clock.now())
    assert user_b is not None and user_b.user == "user_b"
    assert core.next_ready(pool, clock.now()) is None
    core.check_invariants()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("fair_share.weights['a']", {"weights": {"a": 0}}),
        ("fair_share.default_weight", {"default_weight": math.inf}),
        ("fair_share.max_running['a']", {"max_running": {"a": 0}}),
        ("fair_share.group_max_running['g']", {"group_max_running": {"g": 1.5}}),
    ],
)
def test_bad_fair_share_settings_name_the_setting(field: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        FairShare(**kwargs)


def test_fair_share_setting_must_be_a_fair_share() -> None:
    with pytest.raises(InvalidConfigError, match="fair_share"):
        SchedulerConfig(fair_share={"user_a": 1})  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    arrivals=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 30)), min_size=1, max_size=12),
)
def test_bounded_wait_under_any_flood(weights: list[int], arrivals: list[tuple[int, int]]) -> None:
    """Whatever the others queue, a user with work waiting starts within
    sum(ceil(w_v / w_u) + 1) starts (see core/_fairshare.py)."""
    clock = ManualClock()
    users = [f"u{i}" for i in range(len(weights))]
    w = dict(zip(users, map(float, weights), strict=True))
    core = _core(clock, weights=w)
    blocker = _hold_the_slot(core, clock)
    for who, n in arrivals:
        _fill(core, clock, [_task(users[who % len(users)]) for _ in range(n)])
    _free(core, clock, blocker)
    bound = {u: sum(math.ceil(w[v] / w[u]) + 1 for v in users if v != u) + 1 for u in users}
    since: dict[str, int] = dict.fromkeys(users, 0)
    while core.waiting:
        waiting = {u for u in users if core.fair is not None and core.fair.waiting.get(u)}
        user = _run_one(core, clock).user
        for u in waiting:
            since[u] = 0 if u == user else since[u] + 1
            assert since[u] <= bound[u], (u, since, bound)
