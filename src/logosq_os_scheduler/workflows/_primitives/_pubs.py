"""What the sampler and the estimator share in turning a job's PUBs into tasks."""

from __future__ import annotations

from typing import Any

from qiskit.circuit import QuantumCircuit

from ...backends._base import CircuitRequirements
from ...backends._circuits import analyze_circuit

__all__ = ["OFFLOAD_BINDINGS", "count_bindings", "requirements_of"]


# Jobs binding at least this many parameter sets are prepared (bound, measured) in a worker
# thread, so that the event loop keeps scheduling meanwhile; smaller ones are cheaper inline.
OFFLOAD_BINDINGS = 32


def requirements_of(
    known: dict[tuple[int, tuple[int, ...]], CircuitRequirements],
    key: tuple[int, tuple[int, ...]],
    circuit: QuantumCircuit,
) -> CircuitRequirements:
    """What ``circuit`` needs from a backend, analysed once per ``key``: the bound copies of
    one PUB circuit (``id`` of the PUB's circuit, alive for the whole job) measured on the
    same qubits differ only in parameter values and single-qubit basis changes on measured
    qubits, so they need the same qubits and connectivity. Spares the scheduler a walk of
    every bound circuit at submit."""
    found = known.get(key)
    if found is None:
        found = known[key] = analyze_circuit(circuit)
    return found


def count_bindings(pubs: list[Any]) -> int:
    return sum(int(pub.parameter_values.size) for pub in pubs)
