"""decide_route on capability snapshots, directly: no scheduler, no backend object."""

from __future__ import annotations

from typing import Any

import pytest

from logosq_os_scheduler import NoRouteError, Task, TaskPriority
from logosq_os_scheduler.backends import BackendCapabilities, CircuitSpec, JobCost
from logosq_os_scheduler.core._capabilities import CircuitRequirements
from logosq_os_scheduler.core._routing import (
    BackendView,
    RoutingRule,
    decide_route,
    expected_completion,
    reusable_for_alike,
)

P = TaskPriority
SMALL = CircuitRequirements(2)
TRIANGLE = CircuitRequirements(3, frozenset({(0, 1), (1, 2), (0, 2)}), True, 2)


def task(priority: TaskPriority = P.NORMAL, *, pinned: str | None = None) -> Task[Any]:
    builder = Task.quantum("q").with_circuit(CircuitSpec(2)).with_priority(priority)
    if pinned is not None:
        builder = builder.with_backend(pinned)
    return builder.build()


def view(
    name: str,
    *,
    qubits: int = 5,
    all_to_all: bool = True,
    slots: int = 1,
    per_job: int = 1,
    seconds: float = 1.0,
    error: float | None = None,
    queued: int = 0,
    busy: int = 0,
    in_rotation: bool = True,
    pending: int = 0,
) -> BackendView:
    caps = BackendCapabilities(
        name,
        qubits,
        all_to_all=all_to_all,
        max_concurrent_jobs=slots,
        max_circuits_per_job=per_job,
        error_rate=error,
        cost=JobCost(fixed=seconds, per_circuit=0.0, per_shot=0.0),
        pending_jobs=pending,
    )
    return BackendView(name, caps, queued, busy, in_rotation)


def test_expected_completion_counts_rounds_of_jobs_ahead() -> None:
    # 5 waiting + this one, 2 circuits a job, 2 slots: ceil(6 / 4) = 2 rounds of 1 s.
    assert expected_completion(view("b", slots=2, per_job=2, queued=5), 1024) == 2.0
    # Every slot busy: one more round.
    assert expected_completion(view("b", slots=2, per_job=2, queued=5, busy=2), 1024) == 3.0
    # Jobs queued at the backend itself run before ours.
    assert expected_completion(view("b", slots=2, pending=4), 1024) == 3.0


def test_the_fallback_is_least_expected_completion_ties_by_name() -> None:
    views = [view("slow", seconds=5.0), view("b", seconds=1.0), view("a", seconds=1.0)]
    decision = decide_route(task(), SMALL, [], views)
    assert (decision.backend, decision.rule, decision.allowed) == ("a", "fallback", None)
    assert dict(decision.considered) == {"slow": "eligible", "b": "eligible", "a": "chosen"}
    busy = [view("a", seconds=1.0, queued=3), view("b", seconds=2.0)]
    assert decide_route(task(), SMALL, [], busy).backend == "b"  # 4 s against 2 s


def test_rules_are_tried_in_order_and_record_why() -> None:
    rules = [
        RoutingRule().when_qubit_count_exceeds(4).route_to("big"),
        RoutingRule().when_priority_at_least(P.HIGH).route_to("fast"),
        RoutingRule().default().route_to_shortest_queue(),
    ]
    views = [view("big", qubits=100), view("fast"), view("x", queued=0), view("y", queued=9)]
    assert decide_route(task(P.HIGH), SMALL, rules, views).backend == "fast"
    big = decide_route(task(P.HIGH), CircuitRequirements(20), rules, views)
    assert (big.backend, big.rule_index, big.allowed) == ("big", 0, ("big",))
    normal = decide_route(task(), SMALL, rules, views)
    assert normal.rule_index == 2 and normal.backend in {"big", "fast", "x"}
    assert "rule 2" in normal.reason


def test_a_rule_whose_backend_cannot_take_the_circuit_falls_through_with_a_note() -> None:
    rules = [RoutingRule().default().route_to("line")]
    views = [view("line", all_to_all=False), view("ion")]
    decision = decide_route(task(), TRIANGLE, rules, views)
    assert decision.backend == "ion" and decision.rule == "fallback"
    assert "rule 0 matched but line: has a coupling map" in decision.reason


def test_lowest_error_rate_chooses_for_quality_and_pins_it() -> None:
    rules = [RoutingRule().default().route_to_lowest_error_rate()]
    views = [view("noisy", error=0.02), view("good", error=0.005, queued=50), view("unknown")]
    decision = decide_route(task(), SMALL, rules, views)
    assert (decision.backend, decision.allowed) == ("good", ("good",))


def test_pinned_excluded_and_out_of_rotation() -> None:
    views = [view("a"), view("b", in_rotation=False)]
    assert decide_route(task(pinned="a"), SMALL, [], views).rule == "pinned"
    with pytest.raises(NoRouteError, match="out of rotation"):
        decide_route(task(pinned="b"), SMALL, [], views)
    with pytest.raises(NoRouteError, match="no backend is registered under this name"):
        decide_route(task(pinned="zzz"), SMALL, [], views)
    with pytest.raises(NoRouteError) as info:
        decide_route(task(), SMALL, [], views, exclude=frozenset({"a"}))
    assert "excluded after a failed attempt" in str(info.value)


def test_no_route_names_what_each_backend_lacks() -> None:
    views = [view("tiny", qubits=2), view("line", qubits=50, all_to_all=False)]
    with pytest.raises(NoRouteError) as info:
        decide_route(task(), CircuitRequirements(3, TRIANGLE.interactions, True, 2), [], views)
    message = str(info.value)
    assert "tiny: has 2 qubits, circuit needs 3" in message
    assert "line: has a coupling map, and the task asks for all-to-all connectivity" in message
    assert "leave with_all_to_all() out" in message


def test_a_decision_serves_tasks_alike_only_where_it_did_not_weigh_loads() -> None:
    one = [view("a"), view("small", qubits=1)]
    two = [view("a"), view("b", queued=3)]

    def reusable(rules: list[RoutingRule], views: list[BackendView], t: Task[Any]) -> bool:
        return reusable_for_alike(decide_route(t, SMALL, rules, views), rules)

    # The fallback with one backend able to run the circuit: loads cannot change it.
    assert reusable([], one, task())
    # With two, the next task alike may go to the other once this one queues: not reused.
    assert not reusable([], two, task())
    # Pinned, or a rule naming one backend: loads do not matter.
    assert reusable([], two, task(pinned="b"))
    assert reusable([RoutingRule().default().route_to("b")], two, task())
    # A rule choosing among several by load does, unless only one is eligible.
    assert not reusable([RoutingRule().default().route_to_any("a", "b")], two, task())
    assert not reusable([RoutingRule().default().route_to_shortest_queue()], two, task())
    assert reusable([RoutingRule().default().route_to_shortest_queue()], one, task())
    # A predicate may read anything of the task, and estimates are the circuit's own.
    by_name = RoutingRule().when(lambda t, r: t.name == "q").route_to("a")
    assert not reusable([by_name], one, task())
    floor = RoutingRule().when_fidelity_below(0.5).route_to("a")
    assert not reusable([floor], one, task())
