"""Parameter-shift gradients: every shifted point of one gradient, evaluated in one batch.

For a gate ``exp(-i phi G)`` whose generator ``G`` has eigenvalues +-1/2 (the Pauli rotations
``rx``, ``ry``, ``rz``, ``rxx``, ``ryy``, ``rzz``, ``rzx``, and the phase gates ``p`` / ``u1``
up to a global phase), the exact derivative of an expectation value is

    dE/dphi = (E(phi + pi/2) - E(phi - pi/2)) / 2.

A parameter ``theta_j`` may appear in several gates, each with an angle linear in the
parameters, ``phi_k = sum_j A_kj theta_j + b_k`` (QAOA's ``rzz(2 * gamma)`` on every edge, for
instance). The circuit is rewritten with one fresh parameter per gate occurrence; the chain
rule then gives ``dE/dtheta_j = sum_k A_kj (E(phi + pi/2 e_k) - E(phi - pi/2 e_k)) / 2``. The
``2K`` shifted points (``K`` occurrences), and the unshifted point for the value itself, are
evaluated together: one gradient costs one round trip through the scheduler.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import ParameterExpression, ParameterVector, QuantumCircuit

from .._errors import InvalidTaskError

__all__ = ["ParameterShift"]

_SHIFTABLE = frozenset({"rx", "ry", "rz", "rxx", "ryy", "rzz", "rzx", "p", "u1"})
_MAX_DECOMPOSE = 8


def _is_parametrised(operation: Any) -> bool:
    return any(
        isinstance(p, ParameterExpression) and p.parameters
        for p in getattr(operation, "params", [])
    )


def _offending(circuit: QuantumCircuit) -> set[str]:
    return {
        inst.operation.name
        for inst in circuit.data
        if _is_parametrised(inst.operation) and inst.operation.name not in _SHIFTABLE
    }


def shiftable_circuit(circuit: QuantumCircuit) -> QuantumCircuit:
    """``circuit`` with every parametrised gate decomposed into shiftable rotations.

    Raises:
        InvalidTaskError: If some parametrised gate does not decompose into them.
    """
    for _ in range(_MAX_DECOMPOSE):
        bad = _offending(circuit)
        if not bad:
            return circuit
        circuit = circuit.decompose(gates_to_decompose=sorted(bad))
    bad = _offending(circuit)
    if bad:
        raise InvalidTaskError(
            "optimizer",
            "parameter-shift gradients need every parameter in rx/ry/rz/rxx/ryy/rzz/rzx/p "
            f"gates; these parametrised gates do not decompose into them: {sorted(bad)}. "
            "Use a gradient-free optimiser (COBYLA, SPSA) for this ansatz",
        )
    return circuit


class ParameterShift:
    """The parameter-shift rule for one ansatz.

    Args:
        circuit: The ansatz. Its parameters, in ``circuit.parameters`` order, are the
            ``theta`` of :meth:`points` and :meth:`gradient`.

    Raises:
        InvalidTaskError: If a gate's angle is not linear in the parameters, or a
            parametrised gate is not a shiftable rotation (after decomposition).
    """

    def __init__(self, circuit: QuantumCircuit) -> None:
        params = list(circuit.parameters)
        flat = shiftable_circuit(circuit)
        occurrences = [i for i, inst in enumerate(flat.data) if _is_parametrised(inst.operation)]
        phis = ParameterVector("_shift_phi", len(occurrences))
        unrolled = flat.copy_empty_like()
        # The global phase does not change an expectation value; a parametrised one would
        # leave the unrolled circuit with unbound parameters.
        unrolled.global_phase = 0.0
        rows = np.zeros((len(occurrences), len(params)))
        offsets = np.zeros(len(occurrences))
        position = {p: j for j, p in enumerate(params)}
        k = 0
        for i, inst in enumerate(flat.data):
            op = inst.operation
            if k < len(occurrences) and occurrences[k] == i:
                if len(op.params) != 1:
                    raise InvalidTaskError(
                        "optimizer", f"gate {op.name!r} has {len(op.params)} angles, expected 1"
                    )
                expr = op.params[0]
                for theta in expr.parameters:
                    slope = expr.gradient(theta)
                    if isinstance(slope, ParameterExpression):
                        raise InvalidTaskError(
                            "optimizer",
                            f"the angle {expr} of a {op.name!r} gate is not linear in {theta}: "
                            "parameter-shift gradients need linear angles",
                        )
                    rows[k, position[theta]] = float(np.real(complex(slope)))
                offsets[k] = float(expr.bind(dict.fromkeys(expr.parameters, 0.0)))
                shifted = op.copy()
                shifted.params = [phis[k]]
                unrolled.append(shifted, inst.qubits, inst.clbits)
                k += 1
            else:
                unrolled.append(op, inst.qubits, inst.clbits)
        self._circuit = unrolled
        self._rows = rows
        self._offsets = offsets

    @property
    def circuit(self) -> QuantumCircuit:
        """The ansatz with one parameter per gate occurrence (evaluate :meth:`points` on it)."""
        return self._circuit

    @property
    def num_occurrences(self) -> int:
        """How many parametrised gates there are (``K``): a gradient evaluates ``2K + 1``
        points."""
        return len(self._offsets)

    def points(self, theta: NDArray[np.float64]) -> NDArray[np.float64]:
        """The ``2K + 1`` points of :attr:`circuit` to evaluate: the angles at ``theta``, then
        each angle shifted by +pi/2, then each by -pi/2."""
        phi = self._rows @ np.asarray(theta, dtype=float) + self._offsets
        shifts = np.eye(len(phi)) * (np.pi / 2)
        return np.vstack([phi[None, :], phi + shifts, phi - shifts])

    def gradient(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """The gradient with respect to ``theta`` from the values at :meth:`points`."""
        k = len(self._offsets)
        plus = values[1 : 1 + k]
        minus = values[1 + k : 1 + 2 * k]
        return np.asarray(self._rows.T @ ((plus - minus) / 2.0), dtype=float)
