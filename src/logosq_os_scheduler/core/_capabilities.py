"""What the policy knows of a circuit and of a backend, as plain frozen data.

Routing, batching and work stealing decide on these snapshots, never on live backend
objects: a runtime takes a :class:`BackendCapabilities` from each backend when it registers
and again after each of its jobs (what a backend learns from its runs changes only then), and
the virtual-time simulator builds them from its device models.
"""

from __future__ import annotations

import dataclasses

__all__ = ["BackendCapabilities", "CircuitRequirements", "JobCost"]


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitRequirements:
    """What a circuit needs from a backend, derived from the circuit (a task may override).

    Attributes:
        num_qubits: Qubits the circuit uses.
        interactions: The pairs of qubits (low, high) that share a two-qubit gate.
        requires_all_to_all: True only when the task's author asked for it
            (``with_all_to_all()``): then no device with a coupling map runs it. Otherwise
            connectivity is a cost, not a verdict: the transpiler routes any circuit onto a
            coupling map with SWAP gates, so a device with enough qubits can run it.
        max_degree: The most partners any one qubit interacts with.
        dense: Whether its interactions cannot be placed on sparse (heavy-hex or linear)
            hardware without SWAP gates (a qubit with four or more partners, or a triangle):
            such a circuit costs more on a coupling map, which routing may weigh.
    """

    num_qubits: int
    interactions: frozenset[tuple[int, int]] = frozenset()
    requires_all_to_all: bool = False
    max_degree: int = 0
    dense: bool = False

    @staticmethod
    def from_interactions(
        num_qubits: int, interactions: frozenset[tuple[int, int]]
    ) -> CircuitRequirements:
        """Build requirements from an interaction set, with its degree and density."""
        neighbours: dict[int, set[int]] = {}
        for a, b in interactions:
            neighbours.setdefault(a, set()).add(b)
            neighbours.setdefault(b, set()).add(a)
        max_degree = max((len(v) for v in neighbours.values()), default=0)
        triangle = any(neighbours[a] & neighbours[b] for a, b in interactions)
        return CircuitRequirements(
            num_qubits=num_qubits,
            interactions=interactions,
            max_degree=max_degree,
            dense=max_degree >= 4 or triangle,
        )

    def describe(self) -> str:
        """The requirements in words, for error messages."""
        need = f"{self.num_qubits} qubit{'s' if self.num_qubits != 1 else ''}"
        if self.requires_all_to_all:
            need += ", all-to-all connectivity (asked for with with_all_to_all())"
        return need


@dataclasses.dataclass(frozen=True, slots=True)
class JobCost:
    """Expected wall time of a backend job: ``fixed + per_circuit * circuits + per_shot * shots``.

    Attributes:
        fixed: Seconds every job costs (submission, set-up).
        per_circuit: Seconds each circuit adds.
        per_shot: Seconds each shot adds (shots summed over the job's circuits).
    """

    fixed: float = 0.001
    per_circuit: float = 0.0
    per_shot: float = 1e-6

    def seconds(self, circuits: int, shots: int) -> float:
        """Expected seconds of a job of ``circuits`` circuits and ``shots`` shots in total."""
        return self.fixed + self.per_circuit * circuits + self.per_shot * shots


@dataclasses.dataclass(frozen=True, slots=True)
class BackendCapabilities:
    """A backend's shape, capacity, quality and cost at one moment.

    Attributes:
        name: The backend's own name.
        num_qubits: How many qubits it has.
        all_to_all: Whether any two qubits may share a gate directly.
        max_concurrent_jobs: How many jobs it runs at once (at least 1).
        max_circuits_per_job: How many circuits one job may carry (at least 1).
        error_rate: A typical two-qubit error rate, if known (lower is better).
        cost: Its expected job time.
        pending_jobs: Jobs waiting at the backend itself, outside the scheduler.
    """

    name: str
    num_qubits: int
    all_to_all: bool = True
    max_concurrent_jobs: int = 1
    max_circuits_per_job: int = 1
    error_rate: float | None = None
    cost: JobCost = JobCost()
    pending_jobs: int = 0

    def __post_init__(self) -> None:
        # Capacity below one is clamped rather than refused: the registry refuses a backend
        # declaring it, and the policy divides by these.
        if self.max_concurrent_jobs < 1:
            object.__setattr__(self, "max_concurrent_jobs", 1)
        if self.max_circuits_per_job < 1:
            object.__setattr__(self, "max_circuits_per_job", 1)

    def job_seconds(self, circuits: int, shots: int) -> float:
        """Expected seconds of a job of ``circuits`` circuits and ``shots`` shots in total."""
        return self.cost.seconds(circuits, shots)

    def check_requirements(self, req: CircuitRequirements) -> str | None:
        """Why this backend cannot run a circuit with these needs, or None if it can."""
        if req.num_qubits > self.num_qubits:
            return f"has {self.num_qubits} qubits, circuit needs {req.num_qubits}"
        if req.requires_all_to_all and not self.all_to_all:
            return (
                "has a coupling map, and the task asks for all-to-all connectivity: leave "
                "with_all_to_all() out and the transpiler routes the circuit onto the "
                "coupling map with SWAP gates"
            )
        return None
