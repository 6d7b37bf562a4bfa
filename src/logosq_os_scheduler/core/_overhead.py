"""Routing overhead: what fitting a circuit to a device's coupling map added to it.

A circuit whose two-qubit gates join qubits the device does not couple directly runs with
SWAPs the transpiler inserts (each three two-qubit gates on the device). Those gates cost
time and fidelity, so the routing decision records them: the two-qubit gates and the
two-qubit depth of the circuit as transpiled for the device, against the same circuit
transpiled for the same gates with no coupling map (the logical circuit in the device's
gates). The difference is what routing added; zero for a circuit that fits the coupling map
as it is, such as a chain of CNOTs on a heavy-hex device.

Depth is counted in two-qubit layers: a device's one-qubit gates (and the ones its gate
directions need) say nothing about routing, and are cheap besides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["RoutingOverhead"]

# (logical two-qubit gates, routed two-qubit gates, logical depth, routed depth)
Figures = tuple[int, int, int, int]


class RoutingOverhead:
    """The routing overhead of one transpiled circuit (see the module's docstring).

    A backend that transpiles builds one per circuit structure, and may give the means to
    measure it rather than the figures (``measure``): measuring transpiles the circuit once
    more without a coupling map, which is not worth doing for a result nobody reads. The
    figures are measured on first read, once, and kept.

    Attributes:
        logical_two_qubit_gates: Two-qubit gates of the circuit in the device's gates,
            with no coupling map.
        two_qubit_gates: Two-qubit gates of the circuit as transpiled for the device.
        logical_depth: Two-qubit depth of the first.
        depth: Two-qubit depth of the second.
        added_two_qubit_gates: What routing added (``two_qubit_gates`` less
            ``logical_two_qubit_gates``; three per SWAP).
        added_depth: What routing added to the two-qubit depth.
    """

    __slots__ = ("_figures", "_measure", "_lock")

    def __init__(
        self,
        figures: Figures | None = None,
        *,
        measure: Callable[[], Figures] | None = None,
    ) -> None:
        if (figures is None) == (measure is None):
            raise ValueError("RoutingOverhead takes figures or measure, one of them")
        self._figures = figures
        self._measure = measure
        self._lock = threading.Lock()

    def _get(self) -> Figures:
        figures = self._figures
        if figures is None:
            with self._lock:
                figures = self._figures
                if figures is None:
                    assert self._measure is not None
                    figures = self._figures = self._measure()
                    self._measure = None
        return figures

    @property
    def logical_two_qubit_gates(self) -> int:
        """Two-qubit gates with no coupling map."""
        return self._get()[0]

    @property
    def two_qubit_gates(self) -> int:
        """Two-qubit gates as transpiled for the device."""
        return self._get()[1]

    @property
    def logical_depth(self) -> int:
        """Two-qubit depth with no coupling map."""
        return self._get()[2]

    @property
    def depth(self) -> int:
        """Two-qubit depth as transpiled for the device."""
        return self._get()[3]

    @property
    def added_two_qubit_gates(self) -> int:
        """Two-qubit gates routing added."""
        figures = self._get()
        return figures[1] - figures[0]

    @property
    def added_depth(self) -> int:
        """Two-qubit depth routing added."""
        figures = self._get()
        return figures[3] - figures[2]

    def as_dict(self) -> dict[str, int]:
        """Plain data, for traces, logs and signatures."""
        logical_gates, gates, logical_depth, depth = self._get()
        return {
            "logical_two_qubit_gates": logical_gates,
            "two_qubit_gates": gates,
            "added_two_qubit_gates": gates - logical_gates,
            "logical_depth": logical_depth,
            "depth": depth,
            "added_depth": depth - logical_depth,
        }

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, RoutingOverhead):
            return NotImplemented
        return self._get() == other._get()

    def __hash__(self) -> int:
        return hash(self._get())

    def __repr__(self) -> str:
        if self._figures is None:
            return "<RoutingOverhead (not measured yet)>"
        return (
            f"<RoutingOverhead +{self.added_two_qubit_gates} two-qubit gates "
            f"({self.logical_two_qubit_gates} -> {self.two_qubit_gates}), "
            f"+{self.added_depth} depth ({self.logical_depth} -> {self.depth})>"
        )
