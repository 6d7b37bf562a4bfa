"""The scenario registry: which workloads the suite runs, and how each system receives one unit.

A scenario is one workload (classical only, quantum only, mixed) run on every system that can
run it, with the same figures for all: burst throughput, and open-loop latency at half of each
system's own measured maximum and at the scenario's reference rate. To add one, build a
:class:`Scenario` and pass it to :func:`register` at the bottom of this module; ``run.py`` picks
it up by name (``--scenarios``), and the report gains its tables and target lines.

Peer functions must be importable module-level functions: Ray pickles them into its worker
processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from logosq_os_scheduler import QuantumScheduler, Task, TaskBuilder

__all__ = ["SCENARIOS", "Scenario", "Target", "register", "work"]


@dataclasses.dataclass(frozen=True)
class Target:
    """A claim the suite checks against its own figures.

    Attributes:
        text: What is promised, as a reader would say it.
        check: Given the scenario's results (as produced by ``run.py``), returns
            ``(met, how_much)``, or None when the figures needed were not measured.
    """

    text: str
    check: Callable[[dict[str, Any]], tuple[bool, str] | None]


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One workload, and how each kind of system receives a unit of it.

    Attributes:
        name: Short name used on the command line.
        title: Heading in the report.
        description: What one unit of work is, for the report.
        make_task: Builds arrival ``i`` for our scheduler.
        peer_fn: The same work as a plain function ``peer_fn(i)``, for the peers; None if the
            scenario has no peer equivalent (then only our scheduler runs it).
        check: ``check(i, value)`` says whether a burst result is right (every one is checked,
            outside the timed section).
        peers: The peers that run this scenario (a subset of those selected on the command line).
        reference_rate: The seed's arrival rate for this workload, in tasks/s; the open-loop
            runs at it for every system whose burst maximum reaches it.
        configure: Prepares a fresh scheduler (register backends, ...) before it is measured.
        workers: Classical slots for our scheduler and the thread pools of the peers; None for
            the ``--workers`` given on the command line.
    """

    name: str
    title: str
    description: str
    make_task: Callable[[int], TaskBuilder[Any]]
    peer_fn: Callable[[int], Any] | None
    check: Callable[[int, Any], bool]
    peers: frozenset[str]
    reference_rate: float
    configure: Callable[[QuantumScheduler], None] | None = None
    workers: int | None = None
    targets: tuple[Target, ...] = ()


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry (names are unique)."""
    if scenario.name in SCENARIOS:
        raise ValueError(f"scenario {scenario.name!r} is already registered")
    SCENARIOS[scenario.name] = scenario
    return scenario


# -- classical only -------------------------------------------------------------------------


def work(x: int) -> int:
    """The trivial classical task: what is measured is the engine, not the work."""
    return x + 1


def _classical_task(i: int) -> TaskBuilder[int]:
    return Task.classical("t").with_function(work, i)


def _classical_check(i: int, value: Any) -> bool:
    return bool(value == i + 1)


def _ours(results: dict[str, Any]) -> dict[str, Any] | None:
    return _peer(results, "logosq")


def _peer(results: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The measured results of one system, or None if it failed or was not run."""
    peer: dict[str, Any] | None = results.get("systems", {}).get(name)
    if peer is None or "burst" not in peer:
        return None
    return peer


def _burst_at_least(rate: float) -> Callable[[dict[str, Any]], tuple[bool, str] | None]:
    def check(results: dict[str, Any]) -> tuple[bool, str] | None:
        ours = _ours(results)
        if ours is None:
            return None
        got = ours["burst"]["median"]
        return got >= rate, f"median burst {got:,.0f}/s = {got / rate:.2f}x the target"

    return check


def _open_loop_at(
    rate: float, p99_max: float
) -> Callable[[dict[str, Any]], tuple[bool, str] | None]:
    def check(results: dict[str, Any]) -> tuple[bool, str] | None:
        ours = _ours(results)
        if ours is None:
            return None
        point = next((p for p in ours["open_loop"] if p["label"] == "reference"), None)
        if point is None:
            return False, "not attempted: our burst maximum is below the rate"
        p99 = point["p99"]["median"]
        achieved = point["achieved"]["median"]
        sustained = achieved >= 0.99 * rate
        met = sustained and p99 <= p99_max
        return met, (
            f"achieved {achieved:,.0f}/s ({'sustained' if sustained else 'NOT sustained'}), "
            f"p99 {p99 * 1e3:.3f} ms = {p99 / p99_max:.2f}x the {p99_max * 1e3:g} ms bound"
        )

    return check


def _half_max_p99(p99_max: float) -> Callable[[dict[str, Any]], tuple[bool, str] | None]:
    def check(results: dict[str, Any]) -> tuple[bool, str] | None:
        ours = _ours(results)
        if ours is None:
            return None
        point = next((p for p in ours["open_loop"] if p["label"] == "half"), None)
        if point is None:
            return None
        p99 = point["p99"]["median"]
        return p99 <= p99_max, (
            f"p99 {p99 * 1e3:.3f} ms at {point['rate']:,.0f}/s = "
            f"{p99 / p99_max:.2f}x the {p99_max * 1e3:g} ms bound"
        )

    return check


def _burst_vs(peer: str, factor: float) -> Callable[[dict[str, Any]], tuple[bool, str] | None]:
    def check(results: dict[str, Any]) -> tuple[bool, str] | None:
        ours, other = _ours(results), _peer(results, peer)
        if ours is None or other is None:
            return None
        ratio = ours["burst"]["median"] / other["burst"]["median"]
        return ratio >= factor, f"{ratio:.2f}x {peer}'s median burst (target {factor:g}x)"

    return check


CLASSICAL = register(
    Scenario(
        name="classical",
        title="Classical only: trivial function",
        description=(
            "`def work(x): return x + 1`, one call per task. What is measured is the cost of "
            "the engine (submission, scheduling, dispatch, completion), not of the work."
        ),
        make_task=_classical_task,
        peer_fn=work,
        check=_classical_check,
        peers=frozenset({"asyncio", "tpe", "ray", "dask"}),
        reference_rate=50_000.0,
        targets=(
            Target("burst >= 50,000 tasks/s (the seed's figure)", _burst_at_least(50_000.0)),
            Target(
                "p99 <= 0.2 ms at 50,000 tasks/s sustained (the seed's figure)",
                _open_loop_at(50_000.0, 0.2e-3),
            ),
            Target("p99 <= 0.2 ms at half the measured maximum", _half_max_p99(0.2e-3)),
            Target("burst >= ThreadPoolExecutor's, same run", _burst_vs("tpe", 1.0)),
            Target("burst >= 20x Ray's, same run", _burst_vs("ray", 20.0)),
        ),
    )
)
