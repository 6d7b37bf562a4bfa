"""Basic task scheduling: the seed's first example.

A quantum task (a Bell circuit, HIGH priority) and a classical task (a small optimisation,
NORMAL priority) share one scheduler. With no backend registered, quantum tasks run on the
local Aer simulator.

Run it with ``python examples/basic_scheduling.py`` (needs the qiskit extra).
"""

from __future__ import annotations

import asyncio

from qiskit import QuantumCircuit
from qiskit.quantum_info import Statevector
from scipy.optimize import minimize_scalar

from logosq_os_scheduler import QuantumScheduler, Task, TaskPriority
from logosq_os_scheduler.workflows import h2_ansatz, h2_hamiltonian


def bell_circuit() -> QuantumCircuit:
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.cx(0, 1)
    qc.measure_all()
    return qc


def optimize_vqe_params() -> float:
    """Find the best angle of the one-parameter H2 ansatz by exact simulation."""
    hamiltonian = h2_hamiltonian()
    ansatz = h2_ansatz()

    def energy(theta: float) -> float:
        return float(
            Statevector(ansatz.assign_parameters([theta])).expectation_value(hamiltonian).real
        )

    return float(minimize_scalar(energy, bounds=(0.0, 6.3), method="bounded").x)


async def main() -> None:
    # Create a scheduler with 4 worker threads.
    async with QuantumScheduler(4) as scheduler:
        # Submit a quantum task.
        quantum_task = (
            Task.quantum("bell_state").with_priority(TaskPriority.HIGH).with_circuit(bell_circuit())
        )
        handle = await scheduler.submit(quantum_task)

        # Submit a classical task.
        classical_task = (
            Task.classical("optimize_params")
            .with_priority(TaskPriority.NORMAL)
            .with_function(optimize_vqe_params)
        )
        classical = await scheduler.submit(classical_task)

        # Wait for the quantum result.
        result = await handle
        print(f"Result: {result}")
        print(f"bell_state counts: {result.counts} on {result.backend!r}")
        print(f"optimize_params: best angle {(await classical).value:.4f} rad")


if __name__ == "__main__":
    asyncio.run(main())
