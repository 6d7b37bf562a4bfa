"""RoutingOverhead: figures given, or measured once when first read."""

from __future__ import annotations

import pytest

from logosq_os_scheduler import RoutingDecision, RoutingOverhead


def test_overhead_is_measured_once_when_first_read() -> None:
    calls = []

    def measure() -> tuple[int, int, int, int]:
        calls.append(1)
        return (3, 9, 3, 7)

    o = RoutingOverhead(measure=measure)
    assert calls == [] and "not measured" in repr(o)
    assert (o.added_two_qubit_gates, o.added_depth) == (6, 4)
    assert o == RoutingOverhead((3, 9, 3, 7)) and len(calls) == 1
    with pytest.raises(ValueError):
        RoutingOverhead()


def test_the_decision_carries_the_overhead_into_its_plain_data() -> None:
    decision = RoutingDecision("b", "fallback", None, {}, "r")
    assert decision.as_dict()["overhead"] is None
    with_overhead = RoutingDecision(
        "b", "fallback", None, {}, "r", overhead=RoutingOverhead((2, 8, 2, 5))
    )
    assert with_overhead.as_dict()["overhead"] == {
        "logical_two_qubit_gates": 2,
        "two_qubit_gates": 8,
        "added_two_qubit_gates": 6,
        "logical_depth": 2,
        "depth": 5,
        "added_depth": 3,
    }
