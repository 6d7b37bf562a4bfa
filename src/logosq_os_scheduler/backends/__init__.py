"""Quantum backends: the Backend contract, MockBackend, and adapters for Qiskit backends."""

from ._base import Backend, CircuitJob, CircuitRequirements, Counts, JobOutcome
from ._circuits import CircuitSpec, analyze_circuit, normalize_circuit

__all__ = [
    "Backend",
    "CircuitJob",
    "CircuitRequirements",
    "CircuitSpec",
    "Counts",
    "JobOutcome",
    "analyze_circuit",
    "normalize_circuit",
]
