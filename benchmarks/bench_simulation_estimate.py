"""The guard's cost estimate against measured simulations, on FakeBrisbane.

Run: ``python benchmarks/bench_simulation_estimate.py [--quick]``

For each case, ``QiskitBackend.estimate_simulation`` (the model alone: a fresh backend has
learned nothing) is printed beside the wall time of the same call run through the backend in
a worker thread, after a one-shot warm-up that builds the simulator (the noise model on the
circuit's qubits), and their ratio. Prints a Markdown table and the machine's core count: the
model divides by the threads the simulator may use, so the ratio says how well that holds on
this machine. ``--quick`` skips the largest cases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from qiskit import QuantumCircuit
from qiskit_ibm_runtime.fake_provider import FakeBrisbane

from logosq_os_scheduler.backends import CircuitJob, QiskitBackend
from logosq_os_scheduler.backends._qiskit._cost import format_bytes, format_seconds


def chain(n: int, *, clifford: bool = True) -> QuantumCircuit:
    qc = QuantumCircuit(n)
    qc.h(0)
    for i in range(n - 1):
        qc.cx(i, i + 1)
        if not clifford:
            qc.t(i + 1)
    qc.measure_all()
    return qc


# (label, qubits, shots, noise, run options, clifford)
CASES: list[tuple[str, int, int, str, dict[str, Any], bool]] = [
    ("noisy statevector", 12, 200, "active", {}, True),
    ("noisy statevector", 16, 40, "active", {}, True),
    ("noisy statevector", 18, 10, "active", {}, True),
    ("noisy statevector", 20, 4, "active", {}, True),
    ("noisy statevector", 22, 2, "active", {}, True),
    ("noisy density matrix", 8, 1000, "active", {}, True),
    ("noisy MPS", 25, 200, "active", {"method": "matrix_product_state"}, True),
    ("ideal statevector", 22, 1000, "none", {}, False),
    ("ideal stabilizer", 25, 1000, "none", {}, True),
    ("full noise model", 5, 100, "full", {}, True),
]
LARGE = 21


async def measure(
    device: Any, n: int, shots: int, noise: str, options: dict[str, Any], clifford: bool
) -> tuple[Any, float]:
    backend = QiskitBackend(
        device, noise=noise, isolation="thread", seed=1, max_simulation_seconds=None
    )
    circuit = backend.prepare(chain(n, clifford=clifford))
    estimate = backend.estimate_simulation([circuit], shots, options)
    await backend.run([CircuitJob(circuit, 1, 0, "warm", options)])
    started = time.perf_counter()
    await backend.run([CircuitJob(circuit, shots, 1, "timed", options)])
    return estimate, time.perf_counter() - started


async def main(quick: bool) -> None:
    device = FakeBrisbane()
    print(f"cores: {os.cpu_count()}\n")
    print("| case | qubits | shots | method | estimate | measured | measured/estimate | memory |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for label, n, shots, noise, options, clifford in CASES:
        if quick and n > LARGE:
            continue
        estimate, seconds = await measure(device, n, shots, noise, options, clifford)
        print(
            f"| {label} | {n} | {shots} | {estimate.method} | "
            f"{format_seconds(estimate.seconds)} | {format_seconds(seconds)} | "
            f"{seconds / estimate.seconds:.2f} | {format_bytes(estimate.memory_bytes)} |",
            flush=True,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the largest cases")
    asyncio.run(main(parser.parse_args().quick))
