"""VQE and QAOA whose every evaluation runs through the scheduler.

Both minimise ``<psi(theta)| H |psi(theta)>`` for a parametrised circuit ``psi`` with one of
the optimisers of :mod:`._optimizers`. Energies come from a :class:`SchedulerEstimator`: the
circuits of one optimiser request (every measurement basis of the Hamiltonian's qubit-wise
commuting groups, for every parameter point of the request: SPSA's two perturbed points, the
``2K + 1`` points of a parameter-shift gradient) are submitted together as quantum tasks, so
they batch into one backend job and fan out across backends.

Estimation modes: with ``shots=n`` every measurement basis is sampled ``n`` times on a backend
(the default, what a device does). With ``shots=None`` energies are exact expectation values,
computed by Qiskit's ``StatevectorEstimator`` in classical tasks on the scheduler: no backend
is used, so there is no shot noise to limit the accuracy (see the module documentation of
:mod:`._primitives`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import QuantumCircuit
from qiskit.primitives.containers.estimator_pub import EstimatorPub
from qiskit.quantum_info import SparsePauliOp
from qiskit.result import sampled_expectation_value

from .._context import TaskContext, _current_task
from .._errors import InvalidTaskError
from .._task import Task, TaskPriority, transient
from ._gradients import ParameterShift, shiftable_circuit
from ._hybrid import AlgorithmResult
from ._optimizers import COBYLA, Optimizer, OptimizerResult, as_optimizer
from ._primitives import SchedulerEstimator, await_all

if TYPE_CHECKING:
    from .._protocols import WorkflowRuntime

__all__ = ["QAOA", "VQE", "EnergyObjective", "QAOAResult", "VQEResult"]

Vector = NDArray[np.float64]
IterationCallback = Callable[[int, Vector, float], None]


@dataclasses.dataclass(frozen=True, slots=True)
class VQEResult(AlgorithmResult):
    """What :class:`VQE` found; ``energy`` is the ground-state energy estimate (the
    Hamiltonian's units; for :func:`h2_hamiltonian`, electronic Hartree)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QAOAResult(AlgorithmResult):
    """What :class:`QAOA` found.

    Attributes:
        best_bitstring: The lowest-cost bitstring among the final samples (Qiskit order,
            qubit 0 rightmost).
        best_cost: Its cost (the Hamiltonian's diagonal entry).
        counts: The final samples of the optimised circuit.
    """

    best_bitstring: str
    best_cost: float
    counts: dict[str, int]


class EnergyObjective:
    """The energy of an ansatz under a Hamiltonian, evaluated through the scheduler.

    Implements :class:`~._optimizers.Objective`. Every call sends all of its points at once.

    Args:
        scheduler: The scheduler.
        ansatz: The parametrised circuit (no measurements).
        hamiltonian: The observable.
        shots: Shots per measurement basis, or None for exact expectation values.
        backend: Pin circuits to this backend, or None to route.
        priority: Priority of the tasks.
        seed: Seed of the exact path.
        callback: Called with ``(iteration, parameters, energy)`` at every optimiser
            iteration.
    """

    def __init__(
        self,
        scheduler: WorkflowRuntime,
        ansatz: QuantumCircuit,
        hamiltonian: SparsePauliOp,
        *,
        shots: int | None,
        backend: str | None,
        priority: TaskPriority,
        seed: int | None = None,
        callback: IterationCallback | None = None,
    ) -> None:
        self._ansatz = ansatz
        self._hamiltonian = hamiltonian
        self._shots = shots
        self._precision = 0.0 if shots is None else 1.0 / math.sqrt(shots)
        self._estimator = SchedulerEstimator(
            scheduler,
            default_precision=self._precision,
            backend=backend,
            priority=priority,
            seed=seed,
        )
        self._shift: ParameterShift | None = None
        self._callback = callback
        self.task_ids: list[int] = []
        self.history: list[float] = []
        self.evaluations = 0

    @property
    def num_parameters(self) -> int:
        """The ansatz's number of parameters."""
        return int(self._ansatz.num_parameters)

    async def energies(
        self, circuit: QuantumCircuit, points: Vector, shots: int | None = None
    ) -> Vector:
        """Energies of ``circuit`` at every row of ``points``, in one round trip."""
        pubs = [
            EstimatorPub.coerce((circuit, self._hamiltonian, point), self._precision)
            for point in np.atleast_2d(points)
        ]
        result = await self._estimator._execute(
            pubs, self.task_ids, shots=shots if shots is not None else self._shots
        )
        self.evaluations += len(pubs)
        return np.array([float(r.data.evs) for r in result])

    async def evaluate(self, points: Vector) -> Vector:
        """Energies at every row of ``points``."""
        return await self.energies(self._ansatz, points)

    async def value_and_gradient(self, point: Vector) -> tuple[float, Vector]:
        """The energy at ``point`` and its parameter-shift gradient, in one round trip."""
        if self._shift is None:
            self._shift = ParameterShift(self._ansatz)
        shift = self._shift
        values = await self.energies(shift.circuit, shift.points(point))
        return float(values[0]), shift.gradient(values)

    def report(self, iteration: int, point: Vector, value: float) -> None:
        """Record an iteration and tell the callback."""
        self.history.append(float(value))
        if self._callback is not None:
            self._callback(iteration, point, float(value))


def _check_shots(field: str, shots: object, *, allow_none: bool) -> int | None:
    if shots is None and allow_none:
        return None
    if not isinstance(shots, int) or isinstance(shots, bool) or shots <= 0:
        raise InvalidTaskError(field, f"must be a positive integer or None, got {shots!r}")
    return shots


def _identity(*parts: object) -> str:
    """A digest of what defines an algorithm's task (see :meth:`VQE.identity`)."""
    import hashlib

    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _operator_terms(op: SparsePauliOp) -> list[tuple[str, complex]]:
    return [(str(label), complex(coeff)) for label, coeff in op.to_list()]


def _circuit_text(circuit: QuantumCircuit) -> str:
    """The circuit as OpenQASM 3: its gates and its parameters by name, not by identity (a
    circuit built again has new Parameter objects, and the same text). A gate OpenQASM 3
    cannot write leaves the circuit's own repr of its instructions, parameters by name."""
    from qiskit import qasm3

    try:
        return str(qasm3.dumps(circuit))
    except Exception:
        return repr(
            [
                (
                    i.operation.name,
                    [str(p) for p in i.operation.params],
                    [circuit.find_bit(q).index for q in i.qubits],
                )
                for i in circuit.data
            ]
        )


def _initial_point(given: Sequence[float] | Vector | None, size: int, seed: int | None) -> Vector:
    if given is None:
        return np.random.default_rng(seed).uniform(-np.pi, np.pi, size)
    point = np.asarray(given, dtype=float)
    if point.shape != (size,):
        raise InvalidTaskError(
            "initial_point", f"needs {size} values (one per parameter), got shape {point.shape}"
        )
    return point


class VQE:
    """The variational quantum eigensolver, run through the scheduler.

    Use it as a hybrid task::

        task = (
            Task.hybrid("vqe_h2")
            .with_algorithm(VQE(h2_hamiltonian(), real_amplitudes(2, reps=1)))
            .with_optimizer(Adam(maxiter=60))
            .with_backend("aer")
        )
        energy = (await (await scheduler.submit(task))).value.energy

    or directly: ``await vqe.run(scheduler)``.

    Args:
        hamiltonian: The observable whose lowest eigenvalue is sought.
        ansatz: A parametrised circuit without measurements.
        optimizer: The optimiser (default ``COBYLA()``); a hybrid task's own
            ``with_optimizer`` wins.
        initial_point: Starting parameters (default: uniform in [-pi, pi) from ``seed``).
        shots: Shots per measurement basis, or None for exact energies (no backend).
        final_shots: If given, the energy at the optimum is estimated afresh with this many
            shots per basis (a precise final figure at little cost).
        seed: Seeds the initial point and the exact path.
        callback: Called with ``(iteration, parameters, energy)`` at every iteration.

    Raises:
        InvalidTaskError: If a field is malformed (the Hamiltonian's and the ansatz's qubit
            counts differ, measurements in the ansatz, ...).
    """

    def __init__(
        self,
        hamiltonian: SparsePauliOp,
        ansatz: QuantumCircuit,
        *,
        optimizer: Optimizer | str | None = None,
        initial_point: Sequence[float] | Vector | None = None,
        shots: int | None = 4096,
        final_shots: int | None = None,
        seed: int | None = None,
        callback: IterationCallback | None = None,
    ) -> None:
        if not isinstance(hamiltonian, SparsePauliOp):
            raise InvalidTaskError(
                "hamiltonian", f"expected a SparsePauliOp, got {type(hamiltonian).__name__}"
            )
        if not isinstance(ansatz, QuantumCircuit):
            raise InvalidTaskError(
                "ansatz", f"expected a QuantumCircuit, got {type(ansatz).__name__}"
            )
        if ansatz.num_qubits != hamiltonian.num_qubits:
            raise InvalidTaskError(
                "ansatz",
                f"has {ansatz.num_qubits} qubits, the Hamiltonian acts on {hamiltonian.num_qubits}",
            )
        if ansatz.num_clbits:
            raise InvalidTaskError(
                "ansatz", "must not measure: the measurements are added per Pauli basis"
            )
        if ansatz.num_parameters == 0:
            raise InvalidTaskError("ansatz", "has no parameters to optimise")
        self.hamiltonian = hamiltonian
        self.ansatz = ansatz
        self.optimizer = as_optimizer(optimizer) if optimizer is not None else None
        self.initial_point = _initial_point(initial_point, ansatz.num_parameters, seed)
        # Whether the start was given, not drawn (from the seed, or at random without one).
        self.initial_point_given = initial_point is not None
        self.shots = _check_shots("shots", shots, allow_none=True)
        self.final_shots = _check_shots("final_shots", final_shots, allow_none=True)
        self.seed = seed
        self.callback = callback

    def identity(self) -> str:
        """A digest of what defines this VQE as a task: its Hamiltonian, its ansatz (gates and
        parameter names), its optimiser, its start if given (a drawn start is the seed's, or
        random), its shots and its seed. Two VQEs built alike have the same identity: a task
        submitted again under its client key is the same task if its algorithm's identity is
        the same."""
        return _identity(
            "VQE",
            _operator_terms(self.hamiltonian),
            _circuit_text(self.ansatz),
            repr(self.optimizer),
            self.initial_point.tolist() if self.initial_point_given else None,
            self.shots,
            self.final_shots,
            self.seed,
        )

    async def run(
        self,
        scheduler: WorkflowRuntime,
        *,
        priority: TaskPriority = TaskPriority.NORMAL,
        backend: str | None = None,
        optimizer: object | None = None,
    ) -> VQEResult:
        """Minimise the energy through ``scheduler`` (see :class:`HybridAlgorithm`)."""
        opt = _choose_optimizer(optimizer, self.optimizer)
        clock = scheduler.clock
        started = clock.now()
        objective = EnergyObjective(
            scheduler,
            self.ansatz,
            self.hamiltonian,
            shots=self.shots,
            backend=backend,
            priority=priority,
            seed=self.seed,
            callback=self.callback,
        )
        res = await _minimize(self, opt, objective, self.initial_point.copy())
        energy = res.fun
        if self.final_shots is not None and self.shots is not None:
            (energy,) = await objective.energies(self.ansatz, res.x, shots=self.final_shots)
        return VQEResult(
            energy=float(energy),
            parameters=tuple(float(v) for v in res.x),
            history=tuple(objective.history),
            iterations=res.iterations,
            evaluations=objective.evaluations,
            task_ids=tuple(objective.task_ids),
            elapsed=clock.now() - started,
            converged=res.converged,
            metadata=_metadata(opt, self.shots, self.final_shots, backend, res.message),
        )

    def __repr__(self) -> str:
        return (
            f"VQE({self.hamiltonian.num_qubits} qubits, {len(self.hamiltonian)} terms, "
            f"{self.ansatz.num_parameters} parameters, shots={self.shots})"
        )


async def _minimize(
    algorithm: object, opt: Optimizer, objective: EnergyObjective, x0: Vector
) -> OptimizerResult:
    """Run ``opt`` on ``objective``; in a hybrid task running ``algorithm``, and with a
    resumable optimiser, save its state after each iteration and go on from a state saved
    before a restart.

    The state holds the optimiser's own and the objective's history and evaluation count, so
    a resumed run's result (with exact estimation) equals an uninterrupted run's.
    """
    task = _current_task.get()
    if task is None or task.algorithm is not algorithm or not getattr(opt, "resumable", False):
        return await opt.minimize(objective, x0)
    context = TaskContext(task)
    resume = None
    saved = context.saved_state
    if isinstance(saved, dict) and saved.get("kind") == "optimizer":
        resume = saved["optimizer"]
        objective.history[:] = saved["history"]
        objective.evaluations = saved["evaluations"]

    def checkpoint(state: dict[str, Any]) -> None:
        context.save_state(
            {
                "kind": "optimizer",
                "optimizer": state,
                "history": list(objective.history),
                "evaluations": objective.evaluations,
            }
        )

    minimize = opt.minimize  # resumable: it takes the keywords
    return await minimize(objective, x0, resume=resume, checkpoint=checkpoint)  # type: ignore[call-arg]


def _choose_optimizer(given: object | None, own: Optimizer | None) -> Optimizer:
    if given is not None:
        return as_optimizer(given)
    return own if own is not None else COBYLA()


def _metadata(
    opt: Optimizer, shots: int | None, final_shots: int | None, backend: str | None, msg: str
) -> dict[str, Any]:
    return {
        "optimizer": repr(opt),
        "estimation": "exact" if shots is None else "sampled",
        "shots": shots,
        "final_shots": final_shots,
        "backend": backend,
        "message": msg,
    }


def _ramp(reps: int) -> Vector:
    """A linear-ramp start (a discretised annealing schedule, Sack and Serbyn 2021): betas
    falling, gammas rising, as ``qaoa_ansatz`` orders them (all betas, then all gammas)."""
    steps = (np.arange(reps) + 0.5) / reps
    dt = 0.75
    return np.concatenate([(1 - steps) * dt, steps * dt])


class QAOA:
    """The quantum approximate optimisation algorithm, run through the scheduler.

    Minimises the expected cost of Qiskit's ``qaoa_ansatz(cost, reps)`` state, then samples the
    optimised circuit and reports the lowest-cost bitstring it saw.

    Args:
        cost: A diagonal cost Hamiltonian (Z and I only), for example
            :func:`maxcut_hamiltonian`.
        reps: QAOA layers ``p``.
        optimizer: The optimiser (default ``COBYLA()``); a hybrid task's own wins.
        initial_point: Starting ``(betas..., gammas...)``, the order of the circuit's
            parameters (default: a linear ramp).
        shots: Shots per energy evaluation, or None for exact energies.
        final_shots: Shots of the final sampling of the optimised circuit.
        seed: Seeds the exact path.
        callback: Called with ``(iteration, parameters, energy)`` at every iteration.

    Raises:
        InvalidTaskError: If the cost is not diagonal, or a field is malformed.
    """

    def __init__(
        self,
        cost: SparsePauliOp,
        *,
        reps: int = 1,
        optimizer: Optimizer | str | None = None,
        initial_point: Sequence[float] | Vector | None = None,
        shots: int | None = 4096,
        final_shots: int = 4096,
        seed: int | None = None,
        callback: IterationCallback | None = None,
    ) -> None:
        from qiskit.circuit.library import qaoa_ansatz

        if not isinstance(cost, SparsePauliOp):
            raise InvalidTaskError("cost", f"expected a SparsePauliOp, got {type(cost).__name__}")
        if np.any(cost.paulis.x):
            raise InvalidTaskError("cost", "must be diagonal (only Z and I terms)")
        if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
            raise InvalidTaskError("reps", f"must be a positive integer, got {reps!r}")
        self.cost = cost
        self.reps = reps
        # Qiskit's QAOA circuit, flat rzz / rx rotations (the parameter-shift rule needs
        # plain rotations; any other optimiser does not mind).
        self.ansatz = shiftable_circuit(qaoa_ansatz(cost, reps=reps))
        self.optimizer = as_optimizer(optimizer) if optimizer is not None else None
        self.initial_point = (
            _ramp(reps) if initial_point is None else _initial_point(initial_point, 2 * reps, seed)
        )
        self.initial_point_given = initial_point is not None
        self.shots = _check_shots("shots", shots, allow_none=True)
        self.final_shots = _check_shots("final_shots", final_shots, allow_none=False)
        self.seed = seed
        self.callback = callback

    def identity(self) -> str:
        """A digest of what defines this QAOA as a task (see :meth:`VQE.identity`): its
        cost, layers, optimiser, start if given, shots and seed."""
        return _identity(
            "QAOA",
            _operator_terms(self.cost),
            self.reps,
            repr(self.optimizer),
            self.initial_point.tolist() if self.initial_point_given else None,
            self.shots,
            self.final_shots,
            self.seed,
        )

    async def run(
        self,
        scheduler: WorkflowRuntime,
        *,
        priority: TaskPriority = TaskPriority.NORMAL,
        backend: str | None = None,
        optimizer: object | None = None,
    ) -> QAOAResult:
        """Optimise, then sample the optimum (see :class:`HybridAlgorithm`)."""
        opt = _choose_optimizer(optimizer, self.optimizer)
        clock = scheduler.clock
        started = clock.now()
        objective = EnergyObjective(
            scheduler,
            self.ansatz,
            self.cost,
            shots=self.shots,
            backend=backend,
            priority=priority,
            seed=self.seed,
            callback=self.callback,
        )
        res = await _minimize(self, opt, objective, self.initial_point.copy())
        final = self.ansatz.assign_parameters(res.x)
        final.measure_all()
        builder = (
            Task.quantum("qaoa.sample")
            .with_circuit(final)
            .with_shots(self.final_shots or 1)
            .with_priority(priority)
        )
        if backend is not None:
            builder = builder.with_backend(backend)
        handle = scheduler.submit_nowait(transient(builder))
        objective.task_ids.append(handle.task_id)
        (counts,) = await await_all([handle])
        costs = {b: float(np.real(sampled_expectation_value({b: 1}, self.cost))) for b in counts}
        best = min(costs, key=lambda b: (costs[b], -counts[b]))
        return QAOAResult(
            energy=float(res.fun),
            parameters=tuple(float(v) for v in res.x),
            history=tuple(objective.history),
            iterations=res.iterations,
            evaluations=objective.evaluations,
            task_ids=tuple(objective.task_ids),
            elapsed=clock.now() - started,
            converged=res.converged,
            metadata=_metadata(opt, self.shots, self.final_shots, backend, res.message),
            best_bitstring=best,
            best_cost=costs[best],
            counts=dict(counts),
        )

    def __repr__(self) -> str:
        return f"QAOA({self.cost.num_qubits} qubits, reps={self.reps}, shots={self.shots})"
