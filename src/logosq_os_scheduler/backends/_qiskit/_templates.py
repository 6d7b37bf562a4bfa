"""Angle templates: circuits that differ only in their gate angles, sent as one template.

Holds :class:`_Templates` (the templates one backend keeps for its AerSimulator), with the
functions that find a circuit's structure and angles and make its template, and the bounds
on how many are kept.

Imports Qiskit only when called, so importing it is free.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Hashable, Sequence
from typing import Any

from .. import _aer_worker
from ._transpile import _is_plain

# Distinct templates (see _Templates) remembered per backend, and the largest circuit made
# one: the saving is per experiment, small beside a large circuit's simulation.
_TEMPLATES = 256
_TEMPLATE_MAX_SIZE = 2000
# Structures seen once, remembered so that a second sighting makes a template.
_SEEN = 1024


class _Templates:
    """The templates of the circuits one backend runs on its AerSimulator.

    A transpiled circuit whose only angles are those of standard gates is sent as a template
    (the circuit with each angle a parameter) and its angles (:class:`.._aer_worker.Bound`). The
    copies of one template in a job, the circuits of an optimiser's step that differ only in
    their angles, then run as one simulator experiment with a parameter bind each, and a worker
    process receives their angles rather than each circuit in QPY. Finding a circuit's structure
    (the instructions and the bits they act on) and angles is cheap; making a template costs
    more, and is done for a structure seen before, so circuits that never repeat their structure
    (random circuits, say) go as they are and do not pay it. Safe to use from several threads.

    Invariant: ``_by_structure`` holds at most ``_TEMPLATES`` entries, each with a number
    never given to another template of this backend; ``_seen`` at most ``_SEEN``
    structures, none of them in ``_by_structure``.
    """

    def __init__(self, *, serialise: bool) -> None:
        self._serialise = serialise
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self._by_structure: collections.OrderedDict[Hashable, tuple[int, Any]] = (
            collections.OrderedDict()
        )
        self._seen: collections.OrderedDict[Hashable, None] = collections.OrderedDict()

    def bind(
        self, circuits: Sequence[Any], templates: dict[int, Any]
    ) -> list[_aer_worker.Bound | None]:
        """Each circuit as a template and its angles, or None for one that cannot be a
        template; the templates used are added to ``templates`` (bytes if serialised)."""
        out: list[_aer_worker.Bound | None] = []
        seen: dict[int, _aer_worker.Bound | None] = {}
        for circuit in circuits:
            key = id(circuit)
            if key not in seen:  # a circuit sent many times (the transpile cache's) once
                seen[key] = self._bound(circuit, templates)
            out.append(seen[key])
        return out

    def _bound(self, circuit: Any, templates: dict[int, Any]) -> _aer_worker.Bound | None:
        shape = _structure_and_angles(circuit)
        if shape is None:
            return None
        structure, angles = shape
        with self._lock:
            found = self._by_structure.get(structure)
            if found is not None:
                self._by_structure.move_to_end(structure)
            elif structure not in self._seen:
                # First sighting: remembered; a template if the structure comes again.
                self._seen[structure] = None
                if len(self._seen) > _SEEN:
                    self._seen.popitem(last=False)
                return None
        if found is None:
            template = _template_of(circuit)
            payload = _aer_worker.dump_circuit(template) if self._serialise else template
            with self._lock:
                self._seen.pop(structure, None)
                found = self._by_structure.setdefault(structure, (next(self._numbers), payload))
                if len(self._by_structure) > _TEMPLATES:
                    self._by_structure.popitem(last=False)
        number, payload = found
        templates[number] = payload
        return _aer_worker.Bound(number, angles)


def _structure_and_angles(circuit: Any) -> tuple[Hashable, tuple[float, ...]] | None:
    """A transpiled circuit's structure (what two circuits of one template share) and its
    angles in order; None if it cannot be a template: too large, no angles, or an
    instruction other than a standard gate with float angles, a measurement, a barrier or
    a reset (a custom gate, a unitary, control flow, a delay)."""
    if len(circuit) > _TEMPLATE_MAX_SIZE:
        return None
    # The registers and bit counts fix the layout of the counts' bitstrings.
    structure: list[Any] = [
        circuit.num_qubits,
        circuit.num_clbits,
        tuple(circuit.qregs),
        tuple(circuit.cregs),
    ]
    angles: list[float] = []
    for instruction in circuit.data:
        params = instruction.params
        if instruction.is_standard_gate():
            for value in params:
                if type(value) is not float:
                    return None
            angles.extend(params)
        elif params or not _is_plain(instruction):  # a delay has a parameter
            return None
        structure.append(instruction.name)
        structure.append(instruction.qubits)
        structure.append(instruction.clbits)
    if not angles:
        return None
    return tuple(structure), tuple(angles)


def _template_of(circuit: Any) -> Any:
    """The circuit with each gate angle a parameter, in order (:func:`_structure_and_angles`
    accepted it)."""
    from qiskit.circuit import CircuitInstruction, ParameterVector

    count = sum(len(instruction.params) for instruction in circuit.data)
    vector = iter(ParameterVector("angle", count))
    template = circuit.copy_empty_like()
    for instruction in circuit.data:
        if instruction.params:
            operation = instruction.operation.copy()
            operation.params = [next(vector) for _ in instruction.params]
            instruction = CircuitInstruction(operation, instruction.qubits, instruction.clbits)
        template._append(instruction)
    return template
