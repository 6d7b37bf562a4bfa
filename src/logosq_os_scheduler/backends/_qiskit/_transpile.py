"""Transpiled circuits and the transpile cache's pieces.

Holds :class:`PreparedCircuit` (a circuit transpiled for one QiskitBackend), the transpile
cache's size and its trial-and-rest policy, the structural fingerprint it is keyed by, and the
circuit helpers preparing uses (physical qubits, dropping idle qubits). The cache itself (the
dictionary and its lock) lives on each :class:`._adapter.QiskitBackend`.

Imports Qiskit only when called, so importing it is free.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ...core._overhead import Figures, RoutingOverhead
from .. import _aer_worker
from .._circuits import _collect
from ._cost import CircuitProfile

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

# Distinct circuits whose transpilation is remembered per backend. A small circuit on a
# 127-qubit device is slow to transpile even with a kept pass manager (layout scoring looks
# at the whole device); a repeat costs only a fingerprint.
_TRANSPILE_CACHE_SIZE = 256
# The cache pays for itself only if circuits repeat: every lookup costs a fingerprint, and
# only a hit saves a transpilation (which costs far more). Circuits that never repeat
# (freshly bound parameters, every step of an optimiser) gain nothing from it. So the cache
# is judged over trials of _CACHE_TRIAL lookups: one with fewer than _CACHE_MIN_HITS hits
# rests the cache for the next _CACHE_REST circuits (no fingerprint, no lookup, no insert),
# after which a new trial starts. Entries stay while it rests, so a workload that cycles
# through up to _TRANSPILE_CACHE_SIZE circuits finds hits again in a later trial.
_CACHE_TRIAL = 64
_CACHE_MIN_HITS = 2
_CACHE_REST = 192
# Non-gate instructions whose meaning is fixed by their name, parameters and operands.
_PLAIN_INSTRUCTIONS = frozenset({"measure", "barrier", "reset", "delay"})


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class PreparedCircuit:
    """A circuit transpiled for one :class:`QiskitBackend`, as :meth:`QiskitBackend.prepare`
    returns it and :meth:`QiskitBackend.run` takes it.

    Prepared circuits belong to the backend that prepared them: another QiskitBackend given
    one prepares its ``source`` again.

    Attributes:
        circuit: The transpiled circuit, on the device's physical qubits. Equal circuits
            share one transpiled object (the backend's transpile cache, which stands aside
            while circuits do not repeat): treat it as read-only.
        source: The circuit as submitted (after :func:`normalize_circuit`).
        physical_qubits: The physical qubits it acts on, sorted (found on first use when the
            backend did not need them to simulate).
        backend_token: Identifies the backend that prepared it.
        payload: The transpiled circuit as bytes (:func:`.._aer_worker.dump_circuit`), when
            the backend runs in a worker process and keeps the circuit in its transpile
            cache, and the circuit cannot go as a template (others are serialised with the
            rest of their job, or go as a template's number and angles).
        memo: What is worked out about the transpiled circuit on first need (its cost
            profile, its routing overhead), shared through the transpile cache by every
            prepared circuit of the same structure.
    """

    circuit: QuantumCircuit
    source: QuantumCircuit
    known_physical_qubits: tuple[int, ...] | None
    backend_token: object
    payload: bytes | None = None
    memo: Memo = dataclasses.field(default_factory=lambda: Memo())

    @property
    def physical_qubits(self) -> tuple[int, ...]:
        """The physical qubits the transpiled circuit acts on, sorted."""
        found = self.known_physical_qubits
        if found is None:
            found = _physical_qubits(self.circuit)
            object.__setattr__(self, "known_physical_qubits", found)
        return found

    @property
    def num_qubits(self) -> int:
        """Physical qubits it acts on (at least 1)."""
        return max(1, len(self.physical_qubits))


class Memo:
    """What is worked out about one transpiled circuit when first needed, then kept.

    One per transpile-cache entry, so every circuit of that structure shares it: the cost
    profile the guard on costly simulations reads (:mod:`._cost`) and the routing overhead
    (measured on first read). Each slot is None until first set; setting one twice (two
    threads at once) stores equal values, so no lock is needed.
    """

    __slots__ = ("profile", "overhead")

    def __init__(self) -> None:
        self.profile: CircuitProfile | None = None
        self.overhead: RoutingOverhead | None = None


@functools.cache
def _plain_instruction_types() -> tuple[type, ...]:
    from qiskit.circuit import Barrier, Delay, Measure, Reset

    return (Barrier, Delay, Measure, Reset)


def _is_plain(instruction: Any) -> bool:
    """Whether a circuit instruction is Qiskit's own measure, barrier, reset or delay, whose
    meaning its name, parameters and operands fix (a custom instruction may share a name)."""
    return instruction.name in _PLAIN_INSTRUCTIONS and isinstance(
        instruction.operation, _plain_instruction_types()
    )


def _fingerprint(qc: QuantumCircuit) -> Hashable | None:
    """A key equal for two circuits iff they transpile the same way, or None if unsure.

    Only circuits made of standard gates and plain instructions (measure, barrier, reset,
    delay) get a key: a custom gate's name says nothing about its definition, and control
    flow carries blocks. Registers, operands and parameters are all part of the key.
    """
    if qc.layout is not None:
        return None  # already laid out: transpile it for real
    qubit = {bit: i for i, bit in enumerate(qc.qubits)}.__getitem__
    clbit = {bit: i for i, bit in enumerate(qc.clbits)}.__getitem__
    parts: list[Hashable] = [
        tuple((r.name, r.size) for r in qc.qregs),
        tuple((r.name, r.size) for r in qc.cregs),
        qc.num_qubits,
        qc.num_clbits,
    ]
    try:
        parts.append(qc.global_phase)
        for instruction in qc.data:
            name = instruction.name
            if not instruction.is_standard_gate() and not _is_plain(instruction):
                return None
            # `.operation` builds a Python gate object: read it only for a delay's unit.
            unit = getattr(instruction.operation, "unit", None) if name == "delay" else None
            parts.append(
                (
                    name,
                    tuple(instruction.params),
                    unit,
                    tuple(map(qubit, instruction.qubits)),
                    tuple(map(clbit, instruction.clbits)),
                )
            )
        key = tuple(parts)
        hash(key)
    except TypeError:
        return None  # an unhashable parameter
    return key


def two_qubit_figures(circuit: QuantumCircuit) -> tuple[int, int]:
    """(two-qubit gates, two-qubit depth) of a circuit whose gates act on at most two
    qubits: the routing overhead's measures."""
    position = {bit: i for i, bit in enumerate(circuit.qubits)}
    layer = [0] * circuit.num_qubits
    gates = depth = 0
    for instruction in circuit.data:
        if len(instruction.qubits) != 2 or instruction.name == "barrier":
            continue
        a, b = position[instruction.qubits[0]], position[instruction.qubits[1]]
        gates += 1
        layer[a] = layer[b] = level = max(layer[a], layer[b]) + 1
        depth = max(depth, level)
    return gates, depth


def overhead_figures(routed: QuantumCircuit, logical: QuantumCircuit) -> Figures:
    """The :class:`RoutingOverhead` figures of a circuit transpiled for a device
    (``routed``) against the same circuit transpiled with no coupling map (``logical``)."""
    logical_gates, logical_depth = two_qubit_figures(logical)
    gates, depth = two_qubit_figures(routed)
    return (logical_gates, gates, logical_depth, depth)


def _physical_qubits(circuit: QuantumCircuit) -> tuple[int, ...]:
    active: set[int] = set()
    pairs: set[tuple[int, int]] = set()
    _collect(circuit, list(range(circuit.num_qubits)), active, pairs)
    return tuple(sorted(active))


def _without_idle_qubits(qc: QuantumCircuit) -> QuantumCircuit:
    """``qc`` on a fresh register holding only the qubits something acts on, in order (so it
    fits a smaller device). Classical bits and registers are kept."""
    active: set[int] = set()
    _collect(qc, list(range(qc.num_qubits)), active, set())
    return _aer_worker.compact_circuit(qc, tuple(sorted(active)))
