"""What a local simulation will cost before it runs: the guard on ruinous simulations.

A 25-qubit circuit with device noise looks like any other job until Aer has held a core and
a gigabyte for an hour: with gate noise every shot is a simulation of its own, and each one
touches all ``2**n`` amplitudes once per operation. :class:`QiskitBackend` asks this module,
after transpiling and before simulating, what a simulator call will cost, and refuses one
over its budget with :class:`SimulationTooCostlyError`, whose message names the estimate and
the ways out this module finds (fewer shots, another method, the noise cut to the circuit's
qubits, a larger budget).

The model, per circuit (``n`` qubits the circuit acts on, ``ops`` its instructions):

* ``statevector``: ``ops * 2**n`` amplitude updates, once per shot with gate noise (each shot
  is a trajectory of its own), once in all without it (Aer samples the final state).
  Memory ``16 * 2**n`` bytes.
* ``density_matrix``: ``ops * 4**n`` once (noise acts on the matrix itself), memory
  ``16 * 4**n`` bytes.
* ``matrix_product_state``: ``ops * (c + chi**3)``, per shot with noise, once without
  (``c`` is Aer's fixed work per gate, which dominates for small bonds); ``chi`` bounded by
  the two-qubit gates crossing each cut of the qubit line (at most ``2**min(k, n - k)`` at
  cut ``k``). Memory ``32 * n * chi**2`` bytes.
* ``stabilizer`` (Clifford circuits): ``ops * n**2`` bit operations.

Unit costs are seconds on one core (:data:`_SECONDS_PER_UPDATE` and its kin), divided by the
threads the simulator may use. Aer's ``automatic`` method is resolved as Aer resolves it:
stabilizer for a Clifford circuit without noise, density matrix for a noisy circuit with more
shots than ``2**n``, statevector otherwise. What a backend learns from its own runs (the ratio
of measured to modelled time per method, :class:`CostModel`) corrects the model on that
machine. docs/routing.md compares the model with measured runs.

Pure Python: reads circuits, imports no Qiskit.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

# Seconds one core takes for one amplitude update of one operation (statevector and density
# matrix). Measured with Aer on noisy GHZ chains of 14 to 22 qubits (docs/routing.md).
_SECONDS_PER_UPDATE = 8e-9
# Seconds per operation of a matrix product state, on one core: a fixed part (Aer's work per
# gate, whatever the bond: it dominates for small bonds) and a part per chi**3.
_SECONDS_PER_MPS_OPERATION = 5e-5
_SECONDS_PER_MPS_UPDATE = 2e-8
# Seconds per operation per n**2 of a stabilizer tableau, on one core.
_SECONDS_PER_STABILIZER_UPDATE = 2e-9
# Seconds to draw one shot from a final state (measurement sampling), per qubit.
_SECONDS_PER_SAMPLED_QUBIT = 2e-8
# Seconds a simulator call costs whatever it runs.
_SECONDS_PER_CALL = 0.002
# Seconds per device qubit a call with the device's whole noise model costs (Aer ships the
# model to its core on every run: about 1 to 3 s a call on a 127-qubit device).
_SECONDS_PER_NOISE_QUBIT = 0.02
# The learned correction moves this far towards each new observation, and learns only from
# calls modelled to take at least _LEARN_FROM_SECONDS (below, fixed costs dominate).
_LEARN_WEIGHT = 0.3
_LEARN_FROM_SECONDS = 0.05
# Gates Aer's stabilizer method runs (besides rotations by multiples of pi/2).
_CLIFFORD = frozenset(
    {
        "id",
        "x",
        "y",
        "z",
        "h",
        "s",
        "sdg",
        "sx",
        "sxdg",
        "cx",
        "cy",
        "cz",
        "swap",
        "ecr",
        "measure",
        "barrier",
        "reset",
        "delay",
    }
)
_ROTATIONS = frozenset({"rz", "p", "u1"})
# Methods this model estimates; any other is estimated as a statevector.
METHODS = ("statevector", "density_matrix", "matrix_product_state", "stabilizer")


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitProfile:
    """What the cost model needs of one transpiled circuit.

    Attributes:
        qubits: Qubits it acts on (the simulator drops the others).
        operations: Its instructions, barriers excluded.
        clifford: Whether every gate is a Clifford gate.
        bond_log2: A bound on log2 of the largest bond dimension a matrix product state of
            it reaches (the two-qubit gates crossing a cut of the qubit line, at most
            ``min(k, n - k)`` at cut ``k``).
    """

    qubits: int
    operations: int
    clifford: bool
    bond_log2: int


def profile(circuit: Any) -> CircuitProfile:
    """The :class:`CircuitProfile` of a transpiled circuit (one walk over its instructions)."""
    position = {bit: i for i, bit in enumerate(circuit.qubits)}
    active: set[int] = set()
    spans: list[tuple[int, int]] = []
    operations = 0
    clifford = True
    for instruction in circuit.data:
        name = instruction.name
        if name == "barrier":
            continue
        operations += 1
        qubits = [position[q] for q in instruction.qubits]
        active.update(qubits)
        if len(qubits) >= 2:
            spans.append((min(qubits), max(qubits)))
        if clifford and name not in _CLIFFORD:
            clifford = name in _ROTATIONS and _quarter_turn(instruction.params)
    n = len(active)
    order = {q: i for i, q in enumerate(sorted(active))}
    crossings = [0] * (n + 1)
    for low, high in spans:  # a gate between line positions a < b crosses cuts a .. b-1
        crossings[order[low]] += 1
        crossings[order[high]] -= 1
    bond = running = 0
    for cut in range(n - 1):
        running += crossings[cut]
        bond = max(bond, min(running, cut + 1, n - cut - 1))
    return CircuitProfile(qubits=n, operations=operations, clifford=clifford, bond_log2=bond)


def _quarter_turn(params: Sequence[Any]) -> bool:
    """Whether a rotation's one angle is a multiple of pi/2 (a Clifford rotation)."""
    if len(params) != 1:
        return False
    try:
        turns = float(params[0]) / (math.pi / 2)
    except (TypeError, ValueError):
        return False  # a free parameter
    return abs(turns - round(turns)) < 1e-9


@dataclasses.dataclass(frozen=True, slots=True)
class SimulationEstimate:
    """What one simulator call is expected to cost.

    Attributes:
        method: The simulation method (Aer's ``automatic`` resolved).
        qubits: Qubits of its widest circuit.
        circuits: Circuits in the call.
        shots: Shots per circuit.
        noisy: Whether gate noise is simulated.
        seconds: Expected wall time.
        memory_bytes: Expected memory of its largest state.
        per_shot_seconds: The part of ``seconds`` that grows with the shots (0 when the
            method samples a final state).
        learned: Whether ``seconds`` was corrected by what the backend learned from its runs.
    """

    method: str
    qubits: int
    circuits: int
    shots: int
    noisy: bool
    seconds: float
    memory_bytes: int
    per_shot_seconds: float
    learned: bool = False

    def describe(self) -> str:
        """The estimate in words."""
        noise = "with noise" if self.noisy else "without noise"
        plural = "s" if self.circuits != 1 else ""
        basis = ", corrected by this backend's runs" if self.learned else ""
        return (
            f"{self.qubits} qubits, {self.method} {noise}, {self.circuits} circuit{plural} x "
            f"{self.shots} shots: {about(self.seconds)} and "
            f"{format_bytes(self.memory_bytes)}{basis}"
        )


def resolve_method(method: str, profile: CircuitProfile, *, noisy: bool, shots: int) -> str:
    """The method Aer runs a circuit with: ``automatic`` resolved as Aer does, roughly."""
    if method != "automatic":
        return method if method in METHODS else "statevector"
    if profile.clifford and not noisy:
        return "stabilizer"
    if noisy and profile.qubits < 30 and shots > 2**profile.qubits:
        return "density_matrix"
    return "statevector"


def estimate(
    profiles: Iterable[CircuitProfile],
    *,
    shots: int,
    method: str,
    noisy: bool,
    threads: int,
    noise_qubits: int = 0,
    correction: float | None = None,
) -> SimulationEstimate:
    """The cost of one simulator call of ``profiles`` with ``shots`` shots each.

    Args:
        profiles: The call's circuits.
        shots: Shots per circuit.
        method: The method asked for (``"automatic"`` is resolved per circuit).
        noisy: Whether gate noise is simulated.
        threads: Threads the simulator may use.
        noise_qubits: Qubits of a whole device noise model shipped with the call (0 when the
            noise is cut to the circuit's qubits).
        correction: The learned ratio of measured to modelled time, if any.
    """
    seconds = _SECONDS_PER_CALL + _SECONDS_PER_NOISE_QUBIT * noise_qubits
    per_shot = 0.0
    memory = 0
    widest = 0
    count = 0
    methods: list[str] = []
    for p in profiles:
        count += 1
        widest = max(widest, p.qubits)
        resolved = resolve_method(method, p, noisy=noisy, shots=shots)
        methods.append(resolved)
        once, each, bytes_ = _circuit_cost(resolved, p, noisy=noisy)
        seconds += (once + each * shots) / threads
        per_shot += each / threads
        memory = max(memory, bytes_)
    if correction is not None:
        seconds *= correction
        per_shot *= correction
    named = max(set(methods), key=methods.count) if methods else method
    return SimulationEstimate(
        method=named,
        qubits=widest,
        circuits=count,
        shots=shots,
        noisy=noisy,
        seconds=seconds,
        memory_bytes=memory,
        per_shot_seconds=per_shot,
        learned=correction is not None,
    )


def _circuit_cost(method: str, p: CircuitProfile, *, noisy: bool) -> tuple[float, float, int]:
    """(seconds once, seconds per shot, bytes) of one circuit on one core."""
    n, ops = p.qubits, max(1, p.operations)
    sample = _SECONDS_PER_SAMPLED_QUBIT * max(1, n)
    if method == "stabilizer":
        work = _SECONDS_PER_STABILIZER_UPDATE * ops * n * n
        return (0.0, work + sample, max(1, 2 * n * n // 8))
    if method == "density_matrix":
        return (_SECONDS_PER_UPDATE * ops * 4.0**n, sample, 16 * 4**n)
    if method == "matrix_product_state":
        chi = 2.0**p.bond_log2
        work = ops * (_SECONDS_PER_MPS_OPERATION + _SECONDS_PER_MPS_UPDATE * chi**3)
        if noisy:
            return (0.0, work + sample, int(32 * n * chi * chi))
        return (work, sample, int(32 * n * chi * chi))
    work = _SECONDS_PER_UPDATE * ops * 2.0**n
    if noisy:
        return (0.0, work, 16 * 2**n)
    return (work, sample, 16 * 2**n)


class CostModel:
    """What one backend learned of its simulations: per method and noise, the ratio of the
    time its calls took to the time the model gave them (an average that forgets).

    Thread-safe: calls end in worker threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ratios: dict[tuple[str, bool], float] = {}  # (method, noisy) -> measured/model

    def correction(self, method: str, noisy: bool) -> float | None:
        """The learned ratio for a method, or None before a run long enough to learn from."""
        with self._lock:
            return self._ratios.get((method, noisy))

    def learn(self, modelled: SimulationEstimate, seconds: float) -> None:
        """Fold in a call the model (uncorrected) gave ``modelled`` and that took ``seconds``."""
        if modelled.seconds < _LEARN_FROM_SECONDS or not math.isfinite(seconds) or seconds <= 0:
            return
        observed = seconds / modelled.seconds
        key = (modelled.method, modelled.noisy)
        with self._lock:
            known = self._ratios.get(key)
            self._ratios[key] = (
                observed if known is None else known + _LEARN_WEIGHT * (observed - known)
            )


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable, else free pages), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_seconds(seconds: float) -> str:
    """``under 0.1 s``, ``0.4 s``, ``12 s``, ``8.5 min``, ``3.1 h``, ``2.0 days``."""
    if seconds < 0.1:
        return "under 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def about(seconds: float) -> str:
    """``about 12 s``, or ``under 0.1 s``."""
    text = format_seconds(seconds)
    return text if text.startswith("under") else f"about {text}"


def format_bytes(count: float) -> str:
    """``512 B``, ``12 KiB``, ``512 MiB``, ``16.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit in ("GiB", "TiB") else f"{count:.0f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
