"""Fidelity routing on capability snapshots: route_to_highest_fidelity, route_by_score and the
fidelity floor, decided by decide_route from estimates given to it (no backend, no Qiskit)."""

from __future__ import annotations

from typing import Any

import pytest

from logosq_os_scheduler import InvalidTaskError, NoRouteError, Task
from logosq_os_scheduler.backends import BackendCapabilities, CircuitSpec, JobCost
from logosq_os_scheduler.core._capabilities import CircuitRequirements
from logosq_os_scheduler.core._routing import (
    BackendView,
    RoutingRule,
    decide_route,
    expected_completion,
    needs_estimates,
)

REQ = CircuitRequirements(4)


def task() -> Task[Any]:
    return Task.quantum("q").with_circuit(CircuitSpec(4)).with_shots(1000).build()


def view(
    name: str, *, seconds: float = 1.0, queued: int = 0, busy: int = 0, qubits: int = 27
) -> BackendView:
    caps = BackendCapabilities(
        name, qubits, all_to_all=False, cost=JobCost(fixed=seconds, per_circuit=0, per_shot=0)
    )
    return BackendView(name, caps, queued, busy)


def test_highest_fidelity_chooses_the_best_estimate_records_them_and_keeps_the_choice() -> None:
    views = [view("a"), view("b"), view("c")]
    estimates = {"a": 0.61, "b": 0.83, "c": 0.72}
    rules = [RoutingRule().default().route_to_highest_fidelity()]
    d = decide_route(task(), REQ, rules, views, estimates=estimates)
    assert d.backend == "b" and d.rule_index == 0
    assert dict(d.estimates) == estimates
    assert d.allowed == ("b",)  # load balancing does not undo a choice made for quality
    assert "estimated fidelity: b 0.83, c 0.72, a 0.61" in d.reason
    assert d.as_dict()["estimates"] == estimates


def test_highest_fidelity_ranks_backends_without_an_estimate_last() -> None:
    views = [view("fast", seconds=0.1), view("known", seconds=5.0)]
    rules = [RoutingRule().default().route_to_highest_fidelity()]
    d = decide_route(task(), REQ, rules, views, estimates={"known": 0.2})
    assert d.backend == "known"
    # With no estimate at all, it is least expected completion.
    d = decide_route(task(), REQ, rules, views, estimates={})
    assert d.backend == "fast"


def test_highest_fidelity_skips_backends_that_cannot_run_the_circuit() -> None:
    views = [view("small", qubits=3), view("big")]
    rules = [RoutingRule().default().route_to_highest_fidelity()]
    d = decide_route(task(), REQ, rules, views, estimates={"small": 0.99, "big": 0.5})
    assert d.backend == "big"
    assert d.considered["small"] == "has 3 qubits, circuit needs 4"


def test_score_weighs_fidelity_against_expected_completion_as_the_queues_grow() -> None:
    # 'good' is better but busier: each queued task costs a 10 s job there.
    estimates = {"good": 0.90, "fair": 0.63}
    rules = [RoutingRule().default().route_by_score(fidelity_weight=2, time_weight=1)]
    chosen = []
    for queued in range(6):
        views = [view("good", seconds=10, queued=queued), view("fair", seconds=10)]
        chosen.append(decide_route(task(), REQ, rules, views, estimates=estimates).backend)
    # score(good) = 2 * 1 + 10 / (10 * (queued + 1)); score(fair) = 2 * 0.63 / 0.9 + 1
    # = 2.4: good while 2 + 1 / (queued + 1) > 2.4, that is up to 1 queued.
    assert chosen == ["good", "good", "fair", "fair", "fair", "fair"]


def test_score_weights_at_their_ends_are_the_two_pure_rules() -> None:
    views = [view("good", seconds=10, queued=3), view("fair", seconds=10)]
    estimates = {"good": 0.9, "fair": 0.6}
    by_fidelity = [RoutingRule().default().route_by_score(fidelity_weight=1, time_weight=0)]
    by_time = [RoutingRule().default().route_by_score(fidelity_weight=0, time_weight=1)]
    assert decide_route(task(), REQ, by_fidelity, views, estimates=estimates).backend == "good"
    assert decide_route(task(), REQ, by_time, views, estimates=estimates).backend == "fair"
    t_good, t_fair = (expected_completion(v, 1000) for v in views)
    assert (t_good, t_fair) == (40.0, 10.0)


def test_a_fidelity_floor_refuses_naming_each_estimate_and_the_ways_out() -> None:
    views = [view("a"), view("b"), view("tiny", qubits=2)]
    rules = [
        RoutingRule().when_fidelity_below(0.5).refuse(),
        RoutingRule().default().route_to_highest_fidelity(),
    ]
    with pytest.raises(NoRouteError) as info:
        decide_route(task(), REQ, rules, views, estimates={"a": 0.31, "b": 0.12})
    message = str(info.value)
    assert "estimated fidelity 0.31 < floor 0.5" in message
    assert "estimated fidelity 0.12 < floor 0.5" in message
    assert "has 2 qubits, circuit needs 4" in message
    assert "when_fidelity_below(x).route_to(" in message and "a lower floor" in message
    assert info.value.reasons["a"] == "estimated fidelity 0.31 < floor 0.5"
    # One backend reaching the floor is enough: the next rule decides.
    d = decide_route(task(), REQ, rules, views, estimates={"a": 0.5, "b": 0.12})
    assert d.backend == "a" and d.rule_index == 1


def test_a_fidelity_floor_redirects_and_does_not_apply_without_estimates() -> None:
    views = [view("qpu"), view("simulator")]
    rules = [
        RoutingRule().when_fidelity_below(0.4).route_to("simulator"),
        RoutingRule().default().route_to("qpu"),
    ]
    low = decide_route(task(), REQ, rules, views, estimates={"qpu": 0.2})
    assert low.backend == "simulator" and low.rule_index == 0
    assert "best estimated fidelity < 0.4" in low.rule
    high = decide_route(task(), REQ, rules, views, estimates={"qpu": 0.7})
    assert high.backend == "qpu" and high.rule_index == 1
    unknown = decide_route(task(), REQ, rules, views, estimates={})
    assert unknown.backend == "qpu"


def test_refuse_without_a_floor_says_the_rule_refused() -> None:
    rules = [RoutingRule().when_qubit_count_exceeds(3).refuse()]
    with pytest.raises(NoRouteError) as info:
        decide_route(task(), REQ, rules, [view("a")])
    assert info.value.reasons == {"a": "could run it, but the rule refuses the task"}
    assert "refused by rule 0 (when qubits > 3 -> refuse)" in str(info.value)


def test_only_fidelity_rules_need_estimates() -> None:
    assert not needs_estimates([RoutingRule().default().route_to_shortest_queue()])
    assert needs_estimates([RoutingRule().default().route_to_highest_fidelity()])
    assert needs_estimates([RoutingRule().default().route_by_score()])
    assert needs_estimates([RoutingRule().when_fidelity_below(0.3).route_to("x")])
    # Without estimates a decision records none.
    d = decide_route(task(), REQ, [], [view("a")])
    assert dict(d.estimates) == {} and d.as_dict()["estimates"] == {}


@pytest.mark.parametrize("floor", [0, -0.1, 1.5, "0.5", True, float("nan")])
def test_a_bad_floor_is_refused_naming_the_call(floor: Any) -> None:
    with pytest.raises(InvalidTaskError, match=r"RoutingRule\.when_fidelity_below"):
        RoutingRule().when_fidelity_below(floor)


@pytest.mark.parametrize(("fw", "tw"), [(-1, 1), (1, float("inf")), ("1", 1), (0, 0), (True, 1)])
def test_bad_score_weights_are_refused_naming_the_field(fw: Any, tw: Any) -> None:
    with pytest.raises(InvalidTaskError, match=r"RoutingRule\.route_by_score"):
        RoutingRule().default().route_by_score(fidelity_weight=fw, time_weight=tw)


def test_a_rule_keeps_one_target() -> None:
    rule = RoutingRule().default().route_to_highest_fidelity()
    with pytest.raises(InvalidTaskError, match=r"RoutingRule\.refuse"):
        rule.refuse()
    assert rule.describe() == "when default -> highest fidelity"
    scored = RoutingRule().default().route_by_score(fidelity_weight=2, time_weight=0.5)
    assert scored.describe() == "when default -> best score (fidelity weight 2, time weight 0.5)"
