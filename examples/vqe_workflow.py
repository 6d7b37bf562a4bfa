"""VQE for H2 through the scheduler: the seed's workflow example and its end-to-end VQE task.

Part 1 is the seed's "interleaving quantum and classical work" example, written out: a
``HybridWorkflow`` whose steps are ``init_params`` (once), ``measure_energy`` (quantum: the
circuits for the energy and its parameter-shift gradient, submitted together so that they
run as one backend job) and ``update_params`` (classical: energies from counts, then an Adam
step). As in the seed, the optimiser object keeps its own state: ``measure_energy`` gets the
parameters, ``update_params`` gets the counts and returns the next parameters.

Part 2 is the seed's end-to-end VQE: ``Task.hybrid(...).with_algorithm(VQE(hamiltonian,
ansatz)).with_optimizer(Adam(...)).with_backend("aer")``, whose whole loop runs through the
scheduler.

Run it with ``python examples/vqe_workflow.py [--iterations N]`` (needs the qiskit extra).
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Callable

import numpy as np
from qiskit import QuantumCircuit
from qiskit.quantum_info import SparsePauliOp
from qiskit.result import sampled_expectation_value
from qiskit_aer import AerSimulator

from logosq_os_scheduler import QuantumScheduler, Task, TaskPriority
from logosq_os_scheduler.workflows import (
    H2_FCI_ELECTRONIC_ENERGY,
    VQE,
    Adam,
    HybridWorkflow,
    WorkflowProgress,
    WorkflowStep,
    h2_ansatz,
    h2_hamiltonian,
    run_workflow,
)

HAMILTONIAN = h2_hamiltonian()
ANSATZ = h2_ansatz()
# The Hamiltonian's terms in groups measurable together (qubit-wise commuting).
GROUPS: list[SparsePauliOp] = HAMILTONIAN.group_commuting(qubit_wise=True)
SHOTS = 4096


def measured(params: np.ndarray, group: SparsePauliOp) -> QuantumCircuit:
    """The ansatz at ``params``, rotated so that every Pauli of ``group`` reads as Z."""
    qc = ANSATZ.assign_parameters(params)
    for qubit in range(qc.num_qubits):
        if np.any(group.paulis.x[:, qubit]):
            if np.any(group.paulis.z[:, qubit]):
                qc.sdg(qubit)  # Y: Sdg then H
            qc.h(qubit)
    qc.measure_all()
    return qc


def build_ansatz(params: np.ndarray) -> list[QuantumCircuit]:
    """Circuits for the energy at theta and at theta +- pi/2 (the parameter-shift rule), for
    every group: one step's circuits, submitted together."""
    shift = np.pi / 2
    points = [params, params + shift, params - shift]
    return [measured(p, g) for p in points for g in GROUPS]


def energy_from(counts: list[dict[str, int]]) -> float:
    """The energy from the counts of one circuit per group."""
    total = 0.0
    for group, c in zip(GROUPS, counts, strict=True):
        for pauli, coeff in zip(group.paulis, group.coeffs, strict=True):
            # Measured in the rotated basis, every non-identity factor reads as Z.
            label = "".join("Z" if z or x else "I" for z, x in zip(pauli.z, pauli.x, strict=True))
            total += float(np.real(coeff)) * float(sampled_expectation_value(c, label[::-1]))
    return total


class AdamOnShifts:
    """The classical side of the loop: holds the parameters and Adam's state (as the seed's
    ``optimizer_step`` does), turns counts into energies and takes a step."""

    def __init__(self, lr: float = 0.05) -> None:
        self.lr = lr
        # theta = pi is the Hartree-Fock state |01>, the usual starting point.
        self.params = np.array([np.pi])
        self.energy = math.nan
        self.m = np.zeros(1)
        self.v = np.zeros(1)
        self.t = 0

    def initialize_parameters(self) -> np.ndarray:
        return self.params

    def optimizer_step(self, counts: list[dict[str, int]]) -> np.ndarray:
        n = len(GROUPS)
        self.energy, plus, minus = (energy_from(counts[i * n : (i + 1) * n]) for i in range(3))
        gradient = np.array([(plus - minus) / 2])
        beta1, beta2 = 0.9, 0.999
        self.t += 1
        self.m = beta1 * self.m + (1 - beta1) * gradient
        self.v = beta2 * self.v + (1 - beta2) * gradient**2
        m_hat = self.m / (1 - beta1**self.t)
        v_hat = self.v / (1 - beta2**self.t)
        self.params = self.params - self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        return self.params


def reporter(optimizer: AdamOnShifts) -> Callable[[WorkflowProgress], None]:
    def show(progress: WorkflowProgress) -> None:
        if progress.iteration % 10 == 0 or progress.iteration == progress.total:
            step = f"{progress.iteration:3d}/{progress.total}"
            print(f"  iteration {step}: E = {optimizer.energy:.6f} Ha")

    return show


def error_mha(energy: float) -> float:
    return 1000 * (energy - H2_FCI_ELECTRONIC_ENERGY)


async def main(iterations: int) -> None:
    async with QuantumScheduler(4) as scheduler:
        await scheduler.register_backend("aer", AerSimulator())

        # Part 1: the seed's workflow.
        adam = AdamOnShifts()
        workflow = (
            HybridWorkflow("vqe_h2")
            .add_step(WorkflowStep.classical("init_params", adam.initialize_parameters, once=True))
            .add_step(WorkflowStep.quantum("measure_energy", build_ansatz, shots=SHOTS))
            .add_step(WorkflowStep.classical("update_params", adam.optimizer_step))
            .with_iterations(iterations)
            .with_priority(TaskPriority.NORMAL)
            .on_progress(reporter(adam))
        )
        print(f"workflow {workflow.name!r}: {iterations} iterations")
        result = await run_workflow(scheduler, workflow)
        energy = adam.energy
        print(
            f"workflow: E = {energy:.6f} Ha after {result.iterations} iterations, "
            f"{len(result.task_ids)} tasks in {result.elapsed:.2f} s "
            f"(FCI {H2_FCI_ELECTRONIC_ENERGY} Ha, error {error_mha(energy):+.2f} mHa)"
        )

        # Part 2: the seed's end-to-end VQE as one hybrid task.
        vqe_task = (
            Task.hybrid("vqe_h2")
            .with_algorithm(
                VQE(HAMILTONIAN, ANSATZ, shots=SHOTS, final_shots=100_000, initial_point=[np.pi])
            )
            .with_optimizer(Adam(maxiter=iterations, lr=0.05))
            .with_backend("aer")
        )
        outcome = (await (await scheduler.submit(vqe_task))).value
        print(
            f"hybrid task: E = {outcome.energy:.6f} Ha after {outcome.iterations} iterations, "
            f"{len(outcome.task_ids)} tasks (error {error_mha(outcome.energy):+.2f} mHa)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    asyncio.run(main(parser.parse_args().iterations))
