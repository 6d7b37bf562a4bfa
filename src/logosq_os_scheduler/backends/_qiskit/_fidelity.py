"""Expected fidelity of a circuit on a device, from the device's calibration data.

What :meth:`QiskitBackend.estimate_fidelity` answers, and what the fidelity routing rules
decide on. The method is mapomatic's (``matching_layouts``, ``evaluate_layouts``,
``default_cost``), with the idle term of QOS's estimator (``accurate_cost_func``,
``idle_error``) as an option; docs/fidelity.md gives the formulas and their sources:

1. The circuit is transpiled once per circuit structure and *device family* (devices with
   the same qubits, coupling graph and basis gates: FakeBrisbane, FakeKyiv and FakeSherbrooke
   are one family) and its idle qubits dropped (mapomatic's ``deflate_circuit``). That routed
   circuit is what any device of the family would run, SWAPs included.
2. Its interaction graph is matched onto each device's coupling graph with rustworkx's VF2
   (as mapomatic's ``matching_layouts``, undirected, at most :data:`_MAX_LAYOUTS` layouts),
   and every layout scored by ``prod(1 - e_gate) * prod(1 - e_readout)`` over its gates and
   measurements (mapomatic's ``default_cost``; rz is virtual and free). The best layout's
   score is the estimate. Qubits that share no two-qubit gate go to the best free qubits.
3. Optionally, each qubit's idle time between its first and last operation (an as-soon-as-
   possible schedule with the device's gate durations) multiplies in
   ``1 - idle_error(t, T1, T2)`` (QOS's formula).

The device's errors are read once, into arrays (:class:`Calibration`); estimates are kept per
circuit structure (the transpile cache's fingerprint), so a repeated circuit costs a
fingerprint and a dictionary lookup.

Imports Qiskit, rustworkx and numpy only when called.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ._transpile import _fingerprint

if TYPE_CHECKING:
    from qiskit import QuantumCircuit

# How many VF2 layouts of one circuit are scored on a device (mapomatic scores them all; QOS
# caps the search with call_limit=1000). Scoring is vectorised, so this costs milliseconds;
# the cap bounds circuits with many symmetric placements (a short chain on 127 qubits).
_MAX_LAYOUTS = 4000
# VF2's own budget of search steps per circuit and device.
_VF2_CALL_LIMIT = 200_000
# Routed circuits kept per family (shared by the devices of a family), and estimates kept
# per device.
_ROUTED_CACHE_SIZE = 512
_ESTIMATE_CACHE_SIZE = 1024
# Operations that take no error (directives and virtual gates).
_FREE = frozenset({"barrier", "delay", "rz", "id", "global_phase"})


@dataclasses.dataclass(frozen=True, slots=True)
class Routed:
    """A circuit as a device family runs it, with its idle qubits dropped.

    Attributes:
        num_qubits: Qubits it acts on (``n``, numbered ``0..n-1`` here).
        counts: How many times each (operation, qubits) pair occurs, qubits in ``0..n-1``.
        edges: Pairs of qubits that share a two-qubit gate (low, high).
        ops: The operations in order, as (name, qubits), for the idle-time schedule.
        circuit: The routed circuit itself on qubits ``0..n-1`` (what :meth:`laid_out`
            places on a device).
    """

    num_qubits: int
    counts: tuple[tuple[str, tuple[int, ...], int], ...]
    edges: tuple[tuple[int, int], ...]
    ops: tuple[tuple[str, tuple[int, ...]], ...]
    circuit: Any = dataclasses.field(compare=False, repr=False, default=None)


class Calibration:
    """A device's errors, durations and coherence times, read once from its ``Target``.

    Attributes:
        family: Equal for devices whose circuits transpile alike (qubits, undirected
            coupling graph, operation names).
        has_errors: Whether the Target gives any gate or readout error (without one, no
            estimate).
    """

    def __init__(self, target: Any, num_qubits: int) -> None:
        import numpy as np

        n = num_qubits
        self.num_qubits = n
        # log(1 - error) per one-qubit operation and qubit, and per two-qubit operation and
        # (ordered) pair; a missing or unusable entry is left NaN and filled below.
        self.one: dict[str, Any] = {}
        self.two: dict[str, Any] = {}
        self.readout = np.full(n, np.nan)
        self.durations: dict[tuple[str, tuple[int, ...]], float] = {}
        edges: set[tuple[int, int]] = set()
        names: list[str] = []
        found = False
        for name in target.operation_names:
            operation = target.operation_from_name(name)
            if isinstance(operation, type):
                continue  # a control-flow class, not a gate
            props_map = target[name] or {}
            arity = getattr(operation, "num_qubits", 0)
            names.append(name)
            if arity == 2:
                table = np.full((n, n), np.nan)
                for qargs, props in props_map.items():
                    if qargs is None:
                        continue
                    a, b = int(qargs[0]), int(qargs[1])
                    if a >= n or b >= n:
                        continue
                    edges.add((min(a, b), max(a, b)))
                    if props is not None:
                        self._duration(name, (a, b), props)
                        error = _usable(getattr(props, "error", None))
                        if error is not None:
                            table[a, b] = math.log1p(-error) if error < 1 else -math.inf
                            found = True
                # A gate given in one direction runs the other way too (with one-qubit
                # gates around it): score it as the given direction.
                table = np.where(np.isnan(table), table.T, table)
                self.two[name] = table
            elif arity == 1 or name == "measure":
                row = np.full(n, np.nan)
                for qargs, props in props_map.items():
                    if qargs is None or props is None or int(qargs[0]) >= n:
                        continue
                    q = int(qargs[0])
                    self._duration(name, (q,), props)
                    error = _usable(getattr(props, "error", None))
                    if error is not None:
                        row[q] = math.log1p(-error) if error < 1 else -math.inf
                        found = True
                if name == "measure":
                    self.readout = row
                else:
                    self.one[name] = row
        self.has_errors = found
        # Unknown entries score as the device's median (a device that lists an operation
        # without its error is not perfect there); with no entry at all, as free.
        for table in (*self.one.values(), *self.two.values(), self.readout):
            known = table[np.isfinite(table)]
            fill = float(np.median(known)) if known.size else 0.0
            table[np.isnan(table)] = fill
        self.edges = tuple(sorted(edges))
        self.family: Hashable = (n, self.edges, tuple(sorted(names)))
        props = getattr(target, "qubit_properties", None) or [None] * n
        self.t1 = [getattr(p, "t1", None) for p in props]
        self.t2 = [getattr(p, "t2", None) for p in props]
        self._graph: Any = None

    def _duration(self, name: str, qargs: tuple[int, ...], props: Any) -> None:
        duration = getattr(props, "duration", None)
        if duration is not None and math.isfinite(duration):
            self.durations[(name, qargs)] = float(duration)

    @property
    def graph(self) -> Any:
        """The coupling graph, undirected (rustworkx), built on first use."""
        if self._graph is None:
            import rustworkx as rx

            graph = rx.PyGraph(multigraph=False)
            graph.add_nodes_from(range(self.num_qubits))
            graph.add_edges_from_no_data(list(self.edges))
            self._graph = graph
        return self._graph


def _usable(error: Any) -> float | None:
    if error is None:
        return None
    value = float(error)
    if not math.isfinite(value) or value < 0:
        return None
    return min(value, 1.0)


def idle_error(seconds: float, t1: float, t2: float) -> float:
    """The chance that a qubit idle for ``seconds`` has decayed or dephased (QOS's
    ``idle_error``: amplitude damping at rate 1/T1, then pure dephasing at 1/T2 - 1/T1,
    with T2 capped at T1)."""
    t2 = min(t1, t2)
    p_reset = 1.0 - math.exp(-seconds / t1)
    p_z = (1.0 - p_reset) * (1.0 - math.exp(-seconds * (1.0 / t2 - 1.0 / t1))) / 2.0
    return p_z + p_reset


def route(circuit: QuantumCircuit, pass_manager: Any) -> Routed:
    """Transpile ``circuit`` with a family's pass manager and drop its idle qubits."""
    from .._aer_worker import compact_circuit

    transpiled = pass_manager.run(circuit)
    index = {bit: i for i, bit in enumerate(transpiled.qubits)}
    steps: list[tuple[str, tuple[int, ...]]] = []
    for instruction in transpiled.data:
        name = instruction.name
        if name in ("barrier", "delay"):
            continue
        steps.append((name, tuple(index[q] for q in instruction.qubits)))
    active = tuple(sorted({q for _, qargs in steps for q in qargs}))
    position = {q: i for i, q in enumerate(active)}
    ops = [(name, tuple(position[q] for q in qargs)) for name, qargs in steps]
    counts: collections.Counter[tuple[str, tuple[int, ...]]] = collections.Counter(ops)
    edges = sorted({(min(q), max(q)) for name, q in ops if len(q) == 2})
    return Routed(
        num_qubits=len(active),
        counts=tuple((name, q, c) for (name, q), c in counts.items()),
        edges=tuple(edges),
        ops=tuple(ops),
        circuit=compact_circuit(transpiled, active),
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """A circuit's estimated fidelity on one device.

    Attributes:
        fidelity: Its success probability on the best layout found, in [0, 1].
        layout: The physical qubit each of the routed circuit's qubits goes to.
        layouts_scored: How many layouts were scored.
    """

    fidelity: float
    layout: tuple[int, ...]
    layouts_scored: int


def best_layout(routed: Routed, cal: Calibration, *, idle: bool = False) -> Estimate | None:
    """The layout of ``routed`` on ``cal``'s device with the highest estimated fidelity, or
    None if its interactions do not fit the coupling graph."""
    import numpy as np
    import rustworkx as rx

    n = routed.num_qubits
    if n == 0:
        return Estimate(1.0, (), 0)
    if n > cal.num_qubits:
        return None
    coupled = sorted({q for edge in routed.edges for q in edge})
    loose = [q for q in range(n) if q not in set(coupled)]
    if coupled:
        pattern = rx.PyGraph(multigraph=False)
        pattern.add_nodes_from(coupled)
        position = {q: i for i, q in enumerate(coupled)}
        pattern.add_edges_from_no_data([(position[a], position[b]) for a, b in routed.edges])
        mappings = rx.vf2_mapping(
            cal.graph,
            pattern,
            subgraph=True,
            induced=False,
            id_order=False,
            call_limit=_VF2_CALL_LIMIT,
        )
        rows: list[list[int]] = []
        for mapping in mappings:
            row = [0] * len(coupled)
            for physical, logical in mapping.items():
                row[logical] = physical
            rows.append(row)
            if len(rows) >= _MAX_LAYOUTS:
                break
        if not rows:
            return None
        layouts = np.full((len(rows), n), -1, dtype=np.int64)
        layouts[:, coupled] = np.asarray(rows, dtype=np.int64)
    else:
        layouts = np.full((1, n), -1, dtype=np.int64)
    score = np.zeros(len(layouts))
    loose_cost = np.zeros(cal.num_qubits)  # log-fidelity of each loose qubit's work, per qubit
    loose_set = set(loose)
    for name, qargs, count in routed.counts:
        if name in _FREE:
            continue
        if len(qargs) == 2:
            table = cal.two.get(name)
            if table is not None:
                score += count * table[layouts[:, qargs[0]], layouts[:, qargs[1]]]
            continue
        if len(qargs) != 1:
            continue
        errors = cal.readout if name in ("measure", "reset") else cal.one.get(name)
        if errors is None:
            continue
        if qargs[0] in loose_set:
            continue  # placed below
        score += count * errors[layouts[:, qargs[0]]]
    best = int(np.argmax(score))
    chosen = layouts[best].copy()
    total = float(score[best])
    if loose:
        # Loose qubits interact with nothing: each takes the best free qubit for its own work.
        taken = set(int(q) for q in chosen if q >= 0)
        for q in loose:
            loose_cost[:] = 0.0
            for name, qargs, count in routed.counts:
                if qargs != (q,) or name in _FREE:
                    continue
                errors = cal.readout if name in ("measure", "reset") else cal.one.get(name)
                if errors is not None:
                    loose_cost += count * errors
            order = np.argsort(-loose_cost, kind="stable")
            for physical in order:
                if int(physical) not in taken:
                    chosen[q] = int(physical)
                    taken.add(int(physical))
                    total += float(loose_cost[physical])
                    break
    fidelity = math.exp(total) if total > -700 else 0.0
    layout = tuple(int(q) for q in chosen)
    if idle:
        fidelity *= _idle_factor(routed, cal, layout)
    return Estimate(min(max(fidelity, 0.0), 1.0), layout, len(layouts))


def _idle_factor(routed: Routed, cal: Calibration, layout: tuple[int, ...]) -> float:
    """``prod(1 - idle_error(idle_q, T1_q, T2_q))`` over the qubits, from an ASAP schedule
    with the device's durations; qubits idle only between their first and last operation
    (QOS counts delays on qubits already touched)."""
    free_at = [0.0] * routed.num_qubits
    first = [math.inf] * routed.num_qubits
    busy = [0.0] * routed.num_qubits
    for name, qargs in routed.ops:
        physical = tuple(layout[q] for q in qargs)
        duration = cal.durations.get((name, physical))
        if duration is None and len(physical) == 2:
            duration = cal.durations.get((name, (physical[1], physical[0])))
        duration = duration or 0.0
        start = max(free_at[q] for q in qargs)
        for q in qargs:
            first[q] = min(first[q], start)
            free_at[q] = start + duration
            busy[q] += duration
    factor = 1.0
    for q in range(routed.num_qubits):
        if first[q] == math.inf:
            continue
        idle = free_at[q] - first[q] - busy[q]
        t1, t2 = cal.t1[layout[q]], cal.t2[layout[q]]
        if idle > 0 and t1 and t2:
            factor *= 1.0 - idle_error(idle, t1, t2)
    return factor


class _Family:
    """What the devices of one family share: a pass manager and the routed circuits."""

    def __init__(self, backend: Any) -> None:
        from qiskit.transpiler import generate_preset_pass_manager

        self.lock = threading.Lock()
        # Seeded: the same circuit routes the same way for every device of the family. Level
        # 3 (as mapomatic advises) makes a quarter fewer two-qubit gates than level 1 on the
        # benchmark's circuits for 6 ms a circuit against 4 (BENCHMARKS.md, "Expected
        # fidelity"); the circuit is routed once per structure and family.
        self.pass_manager = generate_preset_pass_manager(
            optimization_level=3, backend=backend, seed_transpiler=11
        )
        self.routed: collections.OrderedDict[Hashable, Routed] = collections.OrderedDict()

    def routed_of(self, circuit: QuantumCircuit, key: Hashable | None) -> Routed:
        with self.lock:
            if key is not None and key in self.routed:
                self.routed.move_to_end(key)
                return self.routed[key]
            routed = route(circuit, self.pass_manager)
            if key is not None:
                self.routed[key] = routed
                if len(self.routed) > _ROUTED_CACHE_SIZE:
                    self.routed.popitem(last=False)
            return routed


# Families by key, shared by every estimator in the process: three devices of one family
# route a circuit once between them.
_families: dict[Hashable, _Family] = {}
_families_lock = threading.Lock()


class FidelityEstimator:
    """Estimates circuits' fidelity on one device (see the module docstring).

    Args:
        backend: The Qiskit ``BackendV2`` (its ``target`` carries the calibration).
        num_qubits: Its qubit count.
        idle: Whether to count idle errors from T1/T2.
    """

    def __init__(self, backend: Any, num_qubits: int, *, idle: bool) -> None:
        self._backend = backend
        self._idle = idle
        self.calibration = Calibration(backend.target, num_qubits)
        self._family: _Family | None = None
        self._lock = threading.Lock()
        self._estimates: collections.OrderedDict[Hashable, Estimate | None] = (
            collections.OrderedDict()
        )

    @property
    def available(self) -> bool:
        """Whether the device has calibration data to estimate from."""
        return self.calibration.has_errors

    def _family_of(self) -> _Family:
        if self._family is None:
            key = self.calibration.family
            with _families_lock:
                family = _families.get(key)
                if family is None:
                    family = _families[key] = _Family(self._backend)
            self._family = family
        return self._family

    def estimate(self, circuit: QuantumCircuit) -> Estimate | None:
        """The circuit's estimate here, or None if the device has no calibration or the
        circuit does not fit it."""
        if not self.available:
            return None
        key = _fingerprint(circuit)
        if key is not None:
            with self._lock:
                if key in self._estimates:
                    self._estimates.move_to_end(key)
                    return self._estimates[key]
        routed = self._family_of().routed_of(circuit, key)
        result = best_layout(routed, self.calibration, idle=self._idle)
        if result is not None and not result.layout:
            result = None if routed.num_qubits else result
        if key is not None:
            with self._lock:
                self._estimates[key] = result
                if len(self._estimates) > _ESTIMATE_CACHE_SIZE:
                    self._estimates.popitem(last=False)
        return result

    def laid_out(self, circuit: QuantumCircuit) -> QuantumCircuit | None:
        """The circuit as its estimate assumes it runs: routed for the family, placed on the
        best layout found, gate directions fixed for this device (mapomatic's last step:
        transpile with that ``initial_layout``). None where :meth:`estimate` gives none."""
        estimate = self.estimate(circuit)
        if estimate is None:
            return None
        routed = self._family_of().routed_of(circuit, _fingerprint(circuit))
        from qiskit import transpile

        # Level 0 keeps the layout as given; the layout fits the coupling graph, so nothing
        # is routed again, only gate directions and basis fixed.
        return transpile(
            routed.circuit,
            self._backend,
            initial_layout=list(estimate.layout),
            optimization_level=0,
        )
