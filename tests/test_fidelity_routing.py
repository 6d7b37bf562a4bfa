"""Fidelity routing on the real runtime with scripted backends on a manual clock: the
scheduler asks backends for estimates only when a rule reads them, records them in the
decision, and a fidelity floor refuses at submit."""

from __future__ import annotations

from typing import Any

import pytest

from _scripted import ScriptedBackend, spec
from logosq_os_scheduler import (
    ManualClock,
    NoRouteError,
    QuantumScheduler,
    SchedulerConfig,
    Task,
)
from logosq_os_scheduler.core._routing import RoutingRule


class Calibrated(ScriptedBackend):
    """A scripted backend whose estimate is ``per_qubit ** qubits`` (None: no calibration)."""

    def __init__(self, name: str, per_qubit: float | None, **kw: Any) -> None:
        super().__init__(name, 27, **kw)
        self.per_qubit = per_qubit
        self.asked = 0

    def estimate_fidelity(self, circuit: Any) -> float | None:
        self.asked += 1
        if self.per_qubit is None:
            return None
        return float(self.per_qubit**circuit.num_qubits)


class Broken(Calibrated):
    def estimate_fidelity(self, circuit: Any) -> float | None:
        raise RuntimeError("calibration unreadable")


def q(name: str, qubits: int) -> Any:
    return Task.quantum(name).with_circuit(spec(qubits)).with_shots(100)


def config() -> SchedulerConfig:
    return SchedulerConfig(workers=1, batch_window=0, retry_backoff=0)


async def test_highest_fidelity_routes_by_estimate_and_records_every_one(
    clock: ManualClock,
) -> None:
    good, fair = Calibrated("good", 0.99), Calibrated("fair", 0.95)
    plain = Calibrated("plain", None)
    broken = Broken("broken", 0.999)
    async with QuantumScheduler(config=config(), clock=clock) as s:
        for b in (good, fair, plain, broken):
            await s.register_backend(b.name, b)
        s.set_routing_rules(
            [
                RoutingRule().when_fidelity_below(0.5).refuse(),
                RoutingRule().default().route_to_highest_fidelity(),
            ]
        )
        result = await (await s.submit(q("ten", 10)))
        # 0.99 ** 27 = 0.76 reaches a floor of 0.5; not one of 0.8.
        wide = await (await s.submit(q("wide", 27)))
        s.set_routing_rules([RoutingRule().when_fidelity_below(0.8).refuse()])
        with pytest.raises(NoRouteError) as floor:
            await s.submit(q("wide", 27))
    assert result.backend == "good"
    assert result.routing.estimates == pytest.approx({"good": 0.99**10, "fair": 0.95**10})
    assert "plain" not in result.routing.estimates  # no calibration, no estimate
    assert "broken" not in result.routing.estimates  # a failing estimate is no estimate
    assert result.routing.considered["plain"] == "eligible"
    assert wide.backend == "good" and wide.routing.rule_index == 1
    assert floor.value.reasons["good"] == "estimated fidelity 0.762 < floor 0.8"
    assert floor.value.reasons["plain"] == "no fidelity estimate"


async def test_estimates_are_asked_only_when_a_rule_reads_them(clock: ManualClock) -> None:
    a, b = Calibrated("a", 0.9), Calibrated("b", 0.8)
    async with QuantumScheduler(config=config(), clock=clock) as s:
        await s.register_backend("a", a)
        await s.register_backend("b", b)
        s.set_routing_rules([RoutingRule().default().route_to_shortest_queue()])
        plain = await (await s.submit(q("plain", 4)))
        s.set_routing_rules([RoutingRule().default().route_by_score(time_weight=0.1)])
        scored = await (await s.submit(q("scored", 4)))
    assert (a.asked, b.asked) == (1, 1)
    assert plain.routing.estimates == {}
    assert scored.backend == "a" and set(scored.routing.estimates) == {"a", "b"}
