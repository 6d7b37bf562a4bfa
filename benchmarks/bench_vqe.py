"""What the scheduler adds to one VQE iteration: through the scheduler against Aer directly.

Run: ``python benchmarks/bench_vqe.py [--quick] [--seconds T | --pairs N] [--shots S]
[--output FILE.md]``

One iteration is what an optimiser asks for in one request. Two kinds are timed, on the H2
Hamiltonian (two qubit-wise commuting groups) and a 4-parameter ``real_amplitudes`` ansatz:

* an SPSA step: 2 parameter points, 4 circuits;
* an Adam step with a parameter-shift gradient: 9 points, 18 circuits.

Both paths do the same work on the same circuits: bind the ansatz, add the measurement bases
(the estimator's own code), transpile with a kept level-1 preset pass manager, one
``AerSimulator`` call for all circuits, energies from the counts (the estimator's own code).
The direct path is what a script without the scheduler does: all of that, synchronously, in
the calling thread. The scheduler path submits the circuits as quantum tasks
(``EnergyObjective``, as VQE does) with the default configuration (a 2 ms batch window) to a
``QiskitBackend`` over the same simulator, in thread isolation (Aer in a worker thread, the
like-for-like comparison) and in process isolation (Aer in a worker process, the default for
local simulators, which keeps the event loop free at the price of pickling). Aer runs one
simulation thread on both paths. The circuits simulated are the same; how Aer is called is
not: the direct path makes one ``AerSimulator.run`` of the bound circuits, as a script does,
while ``QiskitBackend`` runs the copies of one transpiled circuit as one Aer experiment with a
parameter bind each, and calls Aer's job function in its worker rather than through ``run``.
Part of what the scheduler path saves there is a gain over the script, not overhead removed
(BENCHMARKS.md's analysis gives the sizes).

The machine is shared, so single timings are noisy. The two paths therefore run in pairs, one
right after the other, in alternating order (direct first in even pairs, the scheduler first
in odd ones), and the overhead is read from each pair's ratio (scheduler / direct): the
median of the ratios, their quartiles and extremes, and a distribution-free 95% confidence
interval for the median ratio (from the order statistics: no assumption on the noise). Load
that drifts during the run slows both members of a pair and cancels in the ratio. The verdict
against the 5% target uses that interval: met if its upper end is below 5%, missed if its
lower end is above, otherwise not resolved at this noise. The interval narrows as the square
root of the number of pairs, so each row runs pairs for a fixed time (``--seconds``, 300 by
default: about 1,800 pairs of SPSA steps and 800 of Adam steps on a 2-core machine, 23
minutes for the four rows) rather than a fixed count. At 75 s a row (about 450 and 200
pairs) the interval was about 2.5 points wide for the SPSA step, too wide to tell an
overhead of about 4% from 5%. Runs at different times still differ by about a point, more
than a 300 s row's interval (the machine's state moves the ratio): compare runs, not one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qiskit.circuit.library import real_amplitudes
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.transpiler import generate_preset_pass_manager
from qiskit_aer import AerSimulator

from bench_quantum import Fig, Report, machine
from logosq_os_scheduler import QuantumScheduler, SchedulerConfig, TaskPriority, new_event_loop
from logosq_os_scheduler._runtime import uvloop_available
from logosq_os_scheduler.backends import QiskitBackend
from logosq_os_scheduler.workflows import h2_hamiltonian
from logosq_os_scheduler.workflows._algorithms import EnergyObjective
from logosq_os_scheduler.workflows._gradients import ParameterShift
from logosq_os_scheduler.workflows._primitives._estimator import plan_pub, pub_result

HAMILTONIAN = h2_hamiltonian()
ANSATZ = real_amplitudes(2, reps=1)
TARGET = 0.05  # the overhead target: 5% of an iteration
perf = time.perf_counter


class Direct:
    """The same iteration without the scheduler: the estimator's circuits straight to Aer."""

    def __init__(self, shots: int) -> None:
        self.shots = shots
        self.aer = AerSimulator(max_parallel_threads=1)
        self.pm = generate_preset_pass_manager(optimization_level=1, backend=self.aer)

    def energies(self, circuit: Any, points: np.ndarray) -> np.ndarray:
        precision = 1 / np.sqrt(self.shots)
        plans = [
            plan_pub(EstimatorPub.coerce((circuit, HAMILTONIAN, p), precision), self.shots)
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
            out.append(float(pub_result(plan, counts[start : start + n]).data.evs))
            start += n
        return np.array(out)


def median_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median: the order statistics
    ``x_(k)`` and ``x_(n-k+1)`` with the largest ``k`` such that
    ``P(k <= Binomial(n, 1/2) <= n - k) >= level``. (nan, nan) if ``n`` is too small."""
    data = sorted(values)
    n = len(data)

    def coverage(k: int) -> float:
        return sum(math.comb(n, i) for i in range(k, n - k + 1)) / 2**n

    best = 0
    for k in range(1, n // 2 + 1):
        if coverage(k) >= level:
            best = k
    if best == 0:
        return math.nan, math.nan
    return data[best - 1], data[n - best]


class Row:
    """One kind of iteration on one isolation: the paired timings and what they say."""

    def __init__(self, label: str, direct: list[float], scheduled: list[float]) -> None:
        self.label = label
        self.direct = Fig(direct)
        self.scheduled = Fig(scheduled)
        ratios = sorted(b / a - 1 for a, b in zip(direct, scheduled, strict=True))
        self.ratios = ratios
        self.overhead = statistics.median(ratios)
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [math.nan] * 3
        self.q1, self.q3 = quartiles[0], quartiles[2]
        self.ci = median_ci(ratios)
        self.added_ms = 1e3 * statistics.median(
            b - a for a, b in zip(direct, scheduled, strict=True)
        )
        # Load on a shared machine only ever adds time, so the fastest run of each path is
        # the closest to its intrinsic cost: a second, load-robust reading.
        self.of_minimums = min(scheduled) / min(direct) - 1

    @property
    def verdict(self) -> str:
        lo, hi = self.ci
        if math.isnan(hi):
            return "too few pairs to say"
        if hi < TARGET:
            return "met"
        if lo > TARGET:
            return "missed"
        return "not resolved at this noise"


async def paired(
    label: str,
    direct: Callable[[np.ndarray], object],
    scheduled: Callable[[np.ndarray], Awaitable[object]],
    pairs: int | None,
    seconds: float,
    rng: np.random.Generator,
) -> Row:
    """Pairs of runs: ``pairs`` of them, or as many as ``seconds`` allow (at least 7)."""
    d: list[float] = []
    s: list[float] = []
    x = rng.uniform(-1, 1, ANSATZ.num_parameters)
    direct(x)  # warm both paths (Aer's first call, the worker process, caches)
    await scheduled(x)
    deadline = perf() + seconds
    i = 0
    while (i < pairs) if pairs is not None else (i < 7 or perf() < deadline):
        # A new point every pair, as an optimiser moves: no path is served from a cache of
        # the circuits it saw before (QiskitBackend remembers transpiled circuits).
        x = rng.uniform(-1, 1, ANSATZ.num_parameters)
        # Garbage from one pair is not collected in the middle of the next one.
        gc.collect()
        if i % 2 == 0:
            t0 = perf()
            direct(x)
            d.append(perf() - t0)
            t0 = perf()
            await scheduled(x)
            s.append(perf() - t0)
        else:
            t0 = perf()
            await scheduled(x)
            s.append(perf() - t0)
            t0 = perf()
            direct(x)
            d.append(perf() - t0)
        i += 1
    return Row(label, d, s)


async def measure(
    pairs: int | None, seconds: float, shots: int, isolation: str, batch_window: float | None
) -> list[Row]:
    rng = np.random.default_rng(1)
    direct = Direct(shots)
    shift = ParameterShift(ANSATZ)
    rows = []
    config = SchedulerConfig()
    if batch_window is not None:
        config = SchedulerConfig(batch_window=batch_window)
    async with QuantumScheduler(config=config) as scheduler:
        backend = QiskitBackend(
            AerSimulator(),
            name="aer",
            isolation=isolation,  # type: ignore[arg-type]
            simulator_threads=1,
        )
        await scheduler.register_backend("aer", backend)
        objective = EnergyObjective(
            scheduler, ANSATZ, HAMILTONIAN, shots=shots, backend="aer", priority=TaskPriority.NORMAL
        )

        def spsa(x: np.ndarray) -> np.ndarray:
            return np.vstack([x + 0.1, x - 0.1])  # SPSA's two perturbed points

        rows.append(
            await paired(
                f"SPSA step, 4 circuits ({isolation})",
                lambda x: direct.energies(ANSATZ, spsa(x)),
                lambda x: objective.evaluate(spsa(x)),
                pairs,
                seconds,
                rng,
            )
        )
        rows.append(
            await paired(
                f"Adam step, 18 circuits ({isolation})",
                lambda x: direct.energies(shift.circuit, shift.points(x)),
                lambda x: objective.value_and_gradient(x),
                pairs,
                seconds,
                rng,
            )
        )
    return rows


def pct(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{100 * v:+.1f}%"


async def main(args: argparse.Namespace, use_uvloop: bool) -> Report:
    out = Report()
    started = perf()
    pairs: int | None = args.pairs if args.pairs is not None else (7 if args.quick else None)
    per_row = f"{pairs} pairs" if pairs is not None else f"{args.seconds:g} s of pairs"
    out("## VQE iteration overhead (`benchmarks/bench_vqe.py`)\n")
    out(f"Command: `python benchmarks/bench_vqe.py {' '.join(sys.argv[1:])}`".rstrip() + "\n")
    for line in machine(use_uvloop):
        out(line)
    out()
    out(
        "What: the wall time of one VQE iteration (the energies an optimiser asks for in one "
        "request, on H2 with a 4-parameter `real_amplitudes` ansatz, "
        f"{args.shots} shots per circuit) through the scheduler (`EnergyObjective`, the "
        "default configuration, a `QiskitBackend` over `AerSimulator`) against the same "
        "work done directly (bind, measure, transpile with a kept pass manager, one "
        "`AerSimulator.run` for all circuits, energies from the counts; the scheduler's "
        "backend runs copies of one circuit as one Aer experiment with parameter binds). "
        f"Aer runs one simulation thread on both paths. {per_row} per row (the count is in "
        "the table), run back to back in alternating order; times are median (min-max); "
        "the overhead is read from each pair's ratio scheduler / direct: median, "
        "interquartile range, extremes, and a distribution-free 95% confidence interval for "
        "the median; the verdict uses that interval. 'Fastest / fastest' compares each "
        "path's fastest run (load only adds time), a second reading.\n"
    )
    rows: list[Row] = []
    for isolation in ("thread", "process"):
        rows += await measure(pairs, args.seconds, args.shots, isolation, args.batch_window)
    out.table(
        [
            "iteration (backend isolation)",
            "pairs",
            "Aer direct",
            "through the scheduler",
            "added, median of pairs",
            "overhead, median of pair ratios",
            "interquartile range",
            "min-max",
            "95% CI of the median",
            "fastest / fastest",
            f"target < {100 * TARGET:g}%",
        ],
        [
            [
                r.label,
                str(len(r.ratios)),
                r.direct.fmt(1e3, 1, " ms"),
                r.scheduled.fmt(1e3, 1, " ms"),
                f"{r.added_ms:+.2f} ms",
                pct(r.overhead),
                f"{pct(r.q1)} to {pct(r.q3)}",
                f"{pct(r.ratios[0])} to {pct(r.ratios[-1])}",
                f"{pct(r.ci[0])} to {pct(r.ci[1])}",
                pct(r.of_minimums),
                r.verdict,
            ]
            for r in rows
        ],
    )
    met = [r.label for r in rows if r.verdict == "met"]
    missed = [r.label for r in rows if r.verdict == "missed"]
    open_ = [r.label for r in rows if r.verdict not in ("met", "missed")]
    verdict = [f"Verdict against the {100 * TARGET:g}% target:"]
    if met:
        verdict.append(f"met (95% interval below it) for {', '.join(met)};")
    if missed:
        verdict.append(f"missed (95% interval above it) for {', '.join(missed)};")
    if open_:
        verdict.append(
            f"not resolved at this noise for {', '.join(open_)} (the interval straddles it)."
        )
    out(" ".join(verdict).rstrip(";.") + ".")
    out()
    out(
        f"Total wall time: {perf() - started:.0f} s. A shared machine's load shows in the "
        "spread; only the paired ratios are compared."
    )
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="7 pairs per row (CI smoke run)")
    parser.add_argument(
        "--pairs", type=int, help="pairs per row (default: as --seconds allow; 7 with --quick)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=300.0,
        help="run pairs for this long per row, when --pairs is not given (default 300)",
    )
    parser.add_argument("--shots", type=int, default=4096, help="shots per circuit")
    parser.add_argument("--output", type=Path, help="also write the Markdown here")
    parser.add_argument(
        "--batch-window",
        type=float,
        help="the scheduler's batch_window in seconds (default: its default; a diagnostic)",
    )
    args = parser.parse_args()
    if args.pairs is not None and args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    warnings.simplefilter("ignore", DeprecationWarning)
    use_uvloop = uvloop_available()
    with asyncio.Runner(loop_factory=lambda: new_event_loop(use_uvloop=use_uvloop)) as runner:
        out = runner.run(main(args, use_uvloop))
    if args.output is not None:
        args.output.write_text("\n".join(out.lines) + "\n")


if __name__ == "__main__":
    cli()
