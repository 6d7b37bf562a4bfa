"""What a quantum backend job costs: transpilation, device noise, batching, the event loop.

Run: ``python benchmarks/bench_backend_cost.py [--circuits 1000] [--shots 1024]``

Prints four tables (Markdown), all with Bell circuits:

1. Transpiling for FakeBrisbane: a plain ``transpile()`` per call against
   ``QiskitBackend.prepare`` (one pass manager kept per backend).
2. One run on FakeBrisbane (127 qubits): Aer with the whole device noise model, the device
   model's own ``run()``, and ``QiskitBackend`` with noise on the active qubits only.
3. N circuits on Aer: one ``AerSimulator.run`` call for all of them against one call per
   circuit, directly and through ``QiskitBackend`` (worker thread and worker process).
4. What a simulation in flight costs the event loop: loop iterations per second while
   ``QiskitBackend`` runs the N-circuit batch in a thread and in a process, against idle.

Wall-clock figures on a shared machine are noisy; the ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from qiskit import QuantumCircuit, transpile
from qiskit_aer import AerSimulator
from qiskit_ibm_runtime.fake_provider import FakeBrisbane

from logosq_os_scheduler.backends import CircuitJob, QiskitBackend


def bell() -> QuantumCircuit:
    qc = QuantumCircuit(2, 2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure([0, 1], [0, 1])
    return qc


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def atimed(fn: Callable[[], Awaitable[Any]], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


async def transpile_cost(repeats: int) -> None:
    device = FakeBrisbane()
    backend = QiskitBackend(device, seed=1, isolation="thread")
    qc = bell()
    backend.prepare(qc)
    plain = timed(lambda: transpile(qc, backend=device, optimization_level=1), repeats)
    angles = iter(range(1, 1_000_000))

    def new_circuit() -> None:
        tilted = bell()
        tilted.rz(next(angles) * 1e-3, 0)  # a circuit the cache has not seen
        backend.prepare(tilted)

    kept = timed(new_circuit, repeats * 10)
    cached = timed(lambda: backend.prepare(bell()), repeats * 100)
    print("\n### Transpiling a Bell circuit for FakeBrisbane (median per call)\n")
    row("method", "per call")
    row("---", "---")
    row("`transpile(qc, backend=FakeBrisbane())`", ms(plain))
    row("`QiskitBackend.prepare(qc)`, a new circuit (pass manager kept)", ms(kept))
    row("`QiskitBackend.prepare(qc)`, an equal circuit again (transpile cache)", ms(cached))


async def device_noise_cost(shots: int, repeats: int) -> None:
    device = FakeBrisbane()
    active = QiskitBackend(device, noise="active", seed=1, isolation="thread")
    full = QiskitBackend(device, noise="full", seed=1, isolation="thread")
    prepared = active.prepare(bell())
    job = [CircuitJob(prepared, shots=shots, task_id=0, idempotency_key="k")]

    started = time.perf_counter()
    await full.run(job)  # builds the 127-qubit noise model (once per backend)
    full_first = time.perf_counter() - started
    full_run = await atimed(lambda: full.run(job), repeats)
    native_run = timed(
        lambda: device.run(prepared.circuit, shots=shots, seed_simulator=1).result(), repeats
    )
    started = time.perf_counter()
    await active.run(job)  # builds the 2-qubit noise model (once per qubit set)
    active_first = time.perf_counter() - started
    active_run = await atimed(lambda: active.run(job), repeats * 5)
    seeded = [CircuitJob(prepared, shots, 0, "s", options={"seed_simulator": 7})]
    (active_counts,) = await active.run(seeded)
    (full_counts,) = await full.run(seeded)

    print(f"\n### A Bell circuit on FakeBrisbane (127 qubits), {shots} shots, per run\n")
    row("simulation", "first run", "per run (median)")
    row("---", "---", "---")
    row("Aer, whole device noise model (`noise='full'`)", ms(full_first), ms(full_run))
    row("`FakeBrisbane().run()` (the device model's own)", "-", ms(native_run))
    row("Aer, noise on the 2 active qubits (`noise='active'`)", ms(active_first), ms(active_run))
    print(f"\nspeed-up per run: {full_run / active_run:.0f}x")
    print("counts with seed_simulator=7:")
    print(f"  active: {dict(sorted(active_counts.items()))}")  # type: ignore[union-attr]
    print(f"  full:   {dict(sorted(full_counts.items()))}")  # type: ignore[union-attr]


async def batching_cost(circuits: int, shots: int, repeats: int) -> None:
    sim = AerSimulator()
    qc = transpile(bell(), sim)
    batch = [qc] * circuits
    sim.run(batch[:10], shots=shots).result()  # warm up

    raw_batched = timed(lambda: sim.run(batch, shots=shots).result(), repeats)
    raw_single = timed(lambda: [sim.run(c, shots=shots).result() for c in batch], repeats)

    print(f"\n### {circuits} Bell circuits on Aer, {shots} shots each\n")
    row("how", "wall time", "circuits/s")
    row("---", "---", "---")
    row(
        "`AerSimulator.run(all circuits)`, one call",
        ms(raw_batched),
        f"{circuits / raw_batched:.0f}",
    )
    row(
        "`AerSimulator.run(circuit)`, one call each", ms(raw_single), f"{circuits / raw_single:.0f}"
    )
    for isolation in ("thread", "process"):
        backend = QiskitBackend(AerSimulator(), seed=1, isolation=isolation)  # type: ignore[arg-type]
        try:
            await backend.start()
            prepared = backend.prepare(bell())
            jobs = [CircuitJob(prepared, shots, i, str(i)) for i in range(circuits)]
            await backend.run(jobs[:10])  # warm up (first call ships the simulator)
            one_job = await atimed(lambda b=backend, j=jobs: b.run(j), repeats)  # type: ignore[misc]

            async def one_each(b: QiskitBackend = backend, j: list[CircuitJob] = jobs) -> None:
                for item in j:
                    await b.run([item])

            each = await atimed(one_each, repeats)
        finally:
            await backend.aclose()
        row(f"`QiskitBackend.run`, one job ({isolation})", ms(one_job), f"{circuits / one_job:.0f}")
        row(
            f"`QiskitBackend.run`, one job per circuit ({isolation})",
            ms(each),
            f"{circuits / each:.0f}",
        )


async def loop_ticks(work: Callable[[], Awaitable[Any]] | None, seconds: float = 1.0) -> float:
    """Iterations per second of a pure-Python loop task while ``work`` runs (or idles)."""
    stop = asyncio.Event()
    count = 0

    async def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1
            await asyncio.sleep(0)

    spinner = asyncio.create_task(spin())
    started = time.perf_counter()
    if work is None:
        await asyncio.sleep(seconds)
    else:
        await work()
    elapsed = time.perf_counter() - started
    stop.set()
    await spinner
    return count / elapsed


async def loop_cost(circuits: int, shots: int) -> None:
    idle = await loop_ticks(None)
    print(f"\n### The event loop while {circuits} Bell circuits simulate ({shots} shots)\n")
    row("simulation runs in", "loop iterations/s", "of idle")
    row("---", "---", "---")
    row("(nothing running)", f"{idle:,.0f}", "100%")
    for isolation in ("thread", "process"):
        backend = QiskitBackend(AerSimulator(), seed=1, isolation=isolation)  # type: ignore[arg-type]
        try:
            await backend.start()
            prepared = backend.prepare(bell())
            jobs = [CircuitJob(prepared, shots, i, str(i)) for i in range(circuits)]
            await backend.run(jobs[:10])
            ticks = await loop_ticks(lambda b=backend, j=jobs: b.run(j))  # type: ignore[misc]
        finally:
            await backend.aclose()
        row(f"a worker {isolation}", f"{ticks:,.0f}", f"{ticks / idle:.0%}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--circuits", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    await transpile_cost(args.repeats)
    await device_noise_cost(args.shots, args.repeats)
    await batching_cost(args.circuits, args.shots, args.repeats)
    await loop_cost(args.circuits, args.shots)


if __name__ == "__main__":
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.run(main())
