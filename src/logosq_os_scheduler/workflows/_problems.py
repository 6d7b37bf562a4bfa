"""Standard problem Hamiltonians for examples, tests and benchmarks (needs the qiskit extra)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qiskit.quantum_info import SparsePauliOp

from .._errors import InvalidTaskError

__all__ = [
    "H2_FCI_ELECTRONIC_ENERGY",
    "H2_FCI_TOTAL_ENERGY",
    "H2_NUCLEAR_REPULSION",
    "cut_value",
    "h2_ansatz",
    "h2_hamiltonian",
    "maxcut_hamiltonian",
]

# H2 in the STO-3G basis at a bond length of 0.735 Angstrom.
H2_NUCLEAR_REPULSION = 0.7199689944489797
"""Nuclear repulsion energy of H2 at 0.735 Angstrom, in Hartree."""
H2_FCI_ELECTRONIC_ENERGY = -1.857275
"""The FCI (exact) electronic ground-state energy of H2/STO-3G at 0.735 Angstrom, in Hartree."""
H2_FCI_TOTAL_ENERGY = -1.137306
"""The FCI total energy (electronic plus nuclear repulsion), in Hartree."""


def h2_hamiltonian() -> SparsePauliOp:
    """The electronic Hamiltonian of H2 (STO-3G, 0.735 Angstrom) on two qubits, in Hartree.

    Parity mapping with two-qubit reduction, as produced by qiskit-nature (PySCF driver,
    ``ParityMapper(num_particles=(1, 1))``); these are the published coefficients used by the
    Qiskit textbook's VQE chapter and by Qiskit's own primitive tests
    (``test/python/primitives/test_statevector_estimator.py``). Its lowest eigenvalue is the
    FCI electronic energy, :data:`H2_FCI_ELECTRONIC_ENERGY`; add
    :data:`H2_NUCLEAR_REPULSION` for the total energy.
    """
    return SparsePauliOp.from_list(
        [
            ("II", -1.052373245772859),
            ("IZ", 0.39793742484318045),
            ("ZI", -0.39793742484318045),
            ("ZZ", -0.01128010425623538),
            ("XX", 0.18093119978423156),
        ]
    )


def h2_ansatz() -> Any:
    """A one-parameter ansatz for :func:`h2_hamiltonian`: ``cos(t/2)|10> + sin(t/2)|01>``.

    The two-qubit H2 ground state keeps the particle number, so it lies in the span of
    ``|01>`` and ``|10>`` with real amplitudes: one ``RY`` and a ``CX`` reach every such
    state. With a single parameter, optimisers converge in few iterations even on noisy,
    shot-based energies.
    """
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    theta = Parameter("t")
    qc = QuantumCircuit(2, name="h2_ansatz")
    qc.ry(theta, 0)
    qc.x(1)
    qc.cx(0, 1)
    return qc


def maxcut_hamiltonian(edges: Iterable[tuple[int, int]], num_nodes: int | None = None) -> Any:
    """The MaxCut cost Hamiltonian of a graph, as a ``SparsePauliOp`` to minimise.

    ``H = sum over edges (i, j) of (Z_i Z_j - 1) / 2``: a bitstring's energy is minus the
    number of edges it cuts, so the ground state is the maximum cut.

    Args:
        edges: The graph's edges as pairs of node indices (qubit ``i`` is node ``i``).
        num_nodes: Number of nodes (default: one more than the largest index).

    Raises:
        InvalidTaskError: If there are no edges, or an edge is a loop or names a node out of
            range.
    """
    pairs = [(int(a), int(b)) for a, b in edges]
    if not pairs:
        raise InvalidTaskError("edges", "the graph has no edges")
    n = num_nodes if num_nodes is not None else 1 + max(max(p) for p in pairs)
    for a, b in pairs:
        if a == b or not (0 <= a < n and 0 <= b < n):
            raise InvalidTaskError("edges", f"edge {(a, b)} is a loop or out of range({n})")
    terms: list[tuple[str, list[int], float]] = [("ZZ", [a, b], 0.5) for a, b in pairs]
    terms.append(("", [], -0.5 * len(pairs)))
    return SparsePauliOp.from_sparse_list(terms, num_qubits=n).simplify()


def cut_value(bitstring: str, edges: Iterable[tuple[int, int]]) -> int:
    """How many edges a partition cuts. ``bitstring`` is in Qiskit order (node 0 rightmost)."""
    bits = bitstring.replace(" ", "")[::-1]
    return sum(1 for a, b in edges if bits[a] != bits[b])
