"""Quantum backends: the Backend contract, MockBackend, and adapters for Qiskit backends."""

from ._base import Backend, CircuitJob, CircuitRequirements, Counts, JobOutcome

__all__ = ["Backend", "CircuitJob", "CircuitRequirements", "Counts", "JobOutcome"]
