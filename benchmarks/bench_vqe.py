"""What the scheduler adds to one VQE iteration: through the scheduler against Aer directly.

Run: ``python benchmarks/bench_vqe.py [--iterations 15] [--shots 4096]``

One iteration is what an optimiser asks for in one request. Two kinds are timed, on the H2
Hamiltonian (two qubit-wise commuting groups) and a 4-parameter ``real_amplitudes`` ansatz:

* an SPSA step: 2 parameter points, 4 circuits;
* an Adam step with a parameter-shift gradient: 9 points, 18 circuits.

Both paths do the same work on the same circuits: bind the ansatz, add the measurement bases
(the estimator's own code), transpile with a kept preset pass manager, one ``AerSimulator``
call for all circuits, energies from the counts (the estimator's own code). The scheduler
path submits the circuits as quantum tasks (``EnergyObjective``) with the default
configuration (a 2 ms batch window) to a ``QiskitBackend`` over the same simulator. Aer runs
one simulation thread on both paths. The paths alternate, so that a busy machine slows both.

Prints a Markdown table: median seconds per iteration on each path, and the overhead as the
ratio of the medians and as the median of the ratios of paired runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator

from logosq_os_scheduler import QuantumScheduler, TaskPriority
from logosq_os_scheduler.backends import QiskitBackend
from logosq_os_scheduler.workflows import h2_hamiltonian
from logosq_os_scheduler.workflows._algorithms import EnergyObjective
from logosq_os_scheduler.workflows._gradients import ParameterShift
from logosq_os_scheduler.workflows._primitives import SchedulerEstimator

HAMILTONIAN = h2_hamiltonian()
ANSATZ = real_amplitudes(2, reps=1)


class Direct:
    """The same iteration without the scheduler: the estimator's circuits straight to Aer."""

    def __init__(self, shots: int) -> None:
        self.shots = shots
        self.aer = AerSimulator(max_parallel_threads=1)
        self.pm = generate_preset_pass_manager(optimization_level=1, backend=self.aer)

    def energies(self, circuit: Any, points: np.ndarray) -> np.ndarray:
        precision = 1 / np.sqrt(self.shots)
        plans = [
            SchedulerEstimator._plan(
                EstimatorPub.coerce((circuit, HAMILTONIAN, p), precision), self.shots
            )
            for p in points
        ]
        circuits = [m.circuit for plan in plans for m in plan.measurements]
        transpiled = self.pm.run(circuits)
        result = self.aer.run(transpiled, shots=self.shots).result()
        counts = [
            {str(k): int(v) for k, v in result.get_counts(i).items()} for i in range(len(circuits))
        ]
        out = []
        start = 0
        for plan in plans:
            n = len(plan.measurements)
            out.append(
                float(SchedulerEstimator._postprocess(plan, counts[start : start + n]).data.evs)
            )
            start += n
        return np.array(out)


async def compare(
    label: str,
    direct: Callable[[], object],
    scheduled: Callable[[], Awaitable[object]],
    iterations: int,
) -> tuple[str, float, float, float]:
    d: list[float] = []
    s: list[float] = []
    direct()  # warm both paths (Aer's first call, the worker process, caches)
    await scheduled()
    for _ in range(iterations):
        t0 = time.perf_counter()
        direct()
        d.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await scheduled()
        s.append(time.perf_counter() - t0)
    # Each scheduled run is paired with the direct run just before it: the median of the
    # ratios is robust to the machine's load drifting during the benchmark.
    paired = statistics.median(b / a for a, b in zip(d, s, strict=True)) - 1
    return label, statistics.median(d), statistics.median(s), paired


async def run(iterations: int, shots: int, isolation: str) -> list[tuple[str, float, float, float]]:
    rng = np.random.default_rng(1)
    direct = Direct(shots)
    shift = ParameterShift(ANSATZ)
    rows = []
    async with QuantumScheduler() as scheduler:
        backend = QiskitBackend(
            AerSimulator(),
            name="aer",
            isolation=isolation,
            simulator_threads=1,  # type: ignore[arg-type]
        )
        await scheduler.register_backend("aer", backend)
        objective = EnergyObjective(
            scheduler, ANSATZ, HAMILTONIAN, shots=shots, backend="aer", priority=TaskPriority.NORMAL
        )
        x = rng.uniform(-1, 1, 4)
        spsa_points = np.vstack([x + 0.1, x - 0.1])
        rows.append(
            await compare(
                f"SPSA step, 4 circuits ({isolation})",
                lambda: direct.energies(ANSATZ, spsa_points),
                lambda: objective.evaluate(spsa_points),
                iterations,
            )
        )
        rows.append(
            await compare(
                f"Adam step, 18 circuits ({isolation})",
                lambda: direct.energies(shift.circuit, shift.points(x)),
                lambda: objective.value_and_gradient(x),
                iterations,
            )
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--shots", type=int, default=4096)
    args = parser.parse_args()
    rows = []
    for isolation in ("process", "thread"):
        rows += await run(args.iterations, args.shots, isolation)
    print(f"One VQE iteration on H2, {args.shots} shots per circuit, {args.iterations} runs each\n")
    print(
        "| iteration (backend isolation) | Aer direct, median | scheduler, median "
        "| overhead (medians) | overhead (median of paired ratios) |"
    )
    print("|---|---|---|---|---|")
    for label, dm, sm, paired in rows:
        print(
            f"| {label} | {dm * 1000:.1f} ms | {sm * 1000:.1f} ms | "
            f"{100 * (sm - dm) / dm:+.1f}% | {100 * paired:+.1f}% |"
        )


if __name__ == "__main__":
    asyncio.run(main())
