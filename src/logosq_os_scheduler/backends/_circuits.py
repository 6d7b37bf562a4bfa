"""Circuit intake (provisional: objects with ``num_qubits``; Qiskit support lands next)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .._errors import InvalidTaskError
from ._base import CircuitRequirements

__all__ = ["CircuitSpec", "analyze_circuit", "normalize_circuit"]


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitSpec:
    """A circuit described only by its shape: for backends that need no gates (mocks)."""

    num_qubits: int
    interactions: tuple[tuple[int, int], ...] = ()


def normalize_circuit(circuit: Any) -> Any:
    """Return the circuit in the form backends take."""
    if isinstance(circuit, CircuitSpec):
        return circuit
    raise InvalidTaskError("circuit", f"unsupported circuit type {type(circuit).__name__}")


def analyze_circuit(circuit: Any) -> CircuitRequirements:
    """What the circuit needs from a backend."""
    pairs = frozenset((min(a, b), max(a, b)) for a, b in circuit.interactions)
    return CircuitRequirements.from_interactions(circuit.num_qubits, pairs)
