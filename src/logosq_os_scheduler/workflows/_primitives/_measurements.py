"""The estimator's measurements: the Pauli bases a PUB needs, expectation values from counts."""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np
from qiskit.circuit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.quantum_info import Pauli, PauliList
from qiskit.result import sampled_expectation_value

__all__ = ["Measurement", "expvals", "measurements_for"]

# Observables whose measurement bases (_bases) are remembered, per process: a few hundred
# small circuits at most.
_BASES_CACHE_SIZE = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    """One circuit an estimator PUB needs: the bound circuit measured in one Pauli basis.

    ``labels`` are the Pauli terms (full width) it estimates; ``diagonal`` their Z/I form on
    the measured qubits only, in the order of the measurement register's bits.
    """

    circuit: QuantumCircuit
    param_index: tuple[int, ...]
    labels: tuple[str, ...]
    diagonal: tuple[str, ...]
    width: int
    support: tuple[int, ...] = ()


def _measurement_circuit(num_qubits: int, basis: Any) -> tuple[QuantumCircuit, np.ndarray]:
    """A circuit rotating ``basis`` (a Pauli) to the Z basis and measuring its support.

    The same construction as Qiskit's ``BackendEstimatorV2``: ``H`` turns X into Z,
    ``Sdg`` then ``H`` turns Y into Z. A basis that is all identity measures qubit 0, so that
    the circuit still has counts.
    """
    support = np.arange(basis.num_qubits)[basis.z | basis.x]
    if support.size == 0:
        support = np.array([0])
    meas = QuantumCircuit(
        QuantumRegister(num_qubits, "q"),
        ClassicalRegister(len(support), f"__c_{basis.to_label()}"),
    )
    for clbit, qubit in enumerate(support):
        if basis.x[qubit]:
            if basis.z[qubit]:
                meas.sdg(qubit)
            meas.h(qubit)
        meas.measure(qubit, clbit)
    return meas, support


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class _Basis:
    """One measurement basis of a set of Paulis: the circuit that measures it (read only:
    it is shared by every bound circuit measured in it) and what its counts estimate."""

    circuit: QuantumCircuit
    labels: tuple[str, ...]
    diagonal: tuple[str, ...]
    width: int
    support: tuple[int, ...]


@functools.lru_cache(maxsize=_BASES_CACHE_SIZE)
def _bases(num_qubits: int, labels: tuple[str, ...], grouping: bool) -> tuple[_Basis, ...]:
    """The measurement bases of the Paulis ``labels`` (sorted) on ``num_qubits`` qubits: one
    per group of qubit-wise commuting Paulis (``PauliList.group_commuting(qubit_wise=True)``),
    or one per Pauli without ``grouping``. Remembered: an optimiser measures the same
    observable at every step, and grouping it costs more than measuring a circuit in it."""
    out: list[_Basis] = []
    paulis = PauliList(list(labels))
    groups = paulis.group_commuting(qubit_wise=True) if grouping else [p for p in paulis]
    for group in groups:
        group = PauliList(group)
        basis = Pauli((np.logical_or.reduce(group.z), np.logical_or.reduce(group.x)))
        meas, support = _measurement_circuit(num_qubits, basis)
        # Each term in Z form on the measured qubits; the label's leftmost character is the
        # highest measured qubit, matching the register's bitstring order.
        nonidentity = group.z[:, support] | group.x[:, support]
        out.append(
            _Basis(
                circuit=meas,
                labels=tuple(p.to_label() for p in group),
                diagonal=tuple(
                    "".join("Z" if bit else "I" for bit in row[::-1]) for row in nonidentity
                ),
                width=len(support),
                support=tuple(int(q) for q in support),
            )
        )
    return tuple(out)


def measurements_for(
    circuit: QuantumCircuit,
    param_index: tuple[int, ...],
    labels: Iterable[str],
    grouping: bool = True,
) -> list[Measurement]:
    """The circuits that estimate every Pauli in ``labels`` on ``circuit``: ``circuit``
    measured in each of the labels' bases (:func:`_bases`)."""
    out: list[Measurement] = []
    for basis in _bases(circuit.num_qubits, tuple(sorted(labels)), grouping):
        register = basis.circuit.cregs[0]
        for creg in circuit.cregs:
            if creg.name == register.name:
                raise ValueError(
                    "Classical register for measurements conflict with those of the input "
                    f"circuit: {register}. Avoid register names starting with '__'."
                )
        measured = circuit.copy()
        measured.add_register(register)
        measured.compose(basis.circuit, clbits=register, inplace=True)
        out.append(
            Measurement(
                circuit=measured,
                param_index=param_index,
                labels=basis.labels,
                diagonal=basis.diagonal,
                width=basis.width,
                support=basis.support,
            )
        )
    return out


def expvals(counts: dict[str, int], m: Measurement) -> list[tuple[str, float, float]]:
    """Expectation value and single-shot variance of each Pauli of ``m`` from its counts.

    Only the measurement register (the leftmost ``width`` bits of each key) matters; the
    circuit's own registers, if any, are summed over.
    """
    marginal: dict[str, int] = defaultdict(int)
    for key, n in counts.items():
        marginal[key.replace(" ", "")[: m.width]] += n
    out = []
    for label, diag in zip(m.labels, m.diagonal, strict=True):
        ev = float(sampled_expectation_value(marginal, diag))
        out.append((label, ev, 1.0 - ev * ev))
    return out
