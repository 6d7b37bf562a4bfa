"""How a hybrid task runs: the :class:`HybridAlgorithm` protocol and its result.

A hybrid task (``Task.hybrid(name).with_algorithm(VQE(...)).with_optimizer(...)
.with_backend("aer")``) runs its algorithm's loop *through* the scheduler: the scheduler
starts ``algorithm.run(scheduler, priority=..., backend=..., optimizer=...)`` as a coroutine,
and the algorithm submits its circuits (and any classical work) back to the same scheduler as
ordinary tasks with the hybrid task's priority. The coroutine itself only waits; it is not a
worker-slot holder (see :func:`run_hybrid`). Cancelling or timing out the hybrid task cancels
the coroutine, and with it every task the algorithm has out.

This module needs only the standard library.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import InvalidTaskError
from .._task import TaskPriority

if TYPE_CHECKING:
    from .._protocols import WorkflowRuntime

__all__ = ["AlgorithmResult", "HybridAlgorithm", "run_hybrid"]


@dataclasses.dataclass(frozen=True, slots=True)
class AlgorithmResult:
    """What a hybrid algorithm found.

    Attributes:
        energy: The lowest value of the objective found (for VQE, the ground-state energy
            estimate; for QAOA, the lowest expected cost).
        parameters: The parameters at which it was found.
        history: The objective value at each optimiser iteration, oldest first.
        iterations: Optimiser iterations run.
        evaluations: Parameter points evaluated (each costs one set of circuits).
        task_ids: Every scheduler task the algorithm ran, in submission order.
        elapsed: Seconds the algorithm ran, on the scheduler's clock.
        converged: Whether the optimiser met its own stopping criterion before its budget.
        metadata: Details (optimiser, estimation mode, shots, ...).
    """

    energy: float
    parameters: tuple[float, ...]
    history: tuple[float, ...]
    iterations: int
    evaluations: int
    task_ids: tuple[int, ...]
    elapsed: float
    converged: bool
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def value(self) -> float:
        """The same as :attr:`energy` (the optimum of the objective)."""
        return self.energy


@runtime_checkable
class HybridAlgorithm(Protocol):
    """Anything a hybrid task can run: VQE, QAOA, or a user's own algorithm.

    ``run`` is a coroutine on the scheduler's loop. It submits its quantum (and classical)
    work to ``scheduler`` with ``priority``, pins circuits to ``backend`` when one is given,
    and uses ``optimizer`` when one is given (else its own default).
    """

    async def run(
        self,
        scheduler: WorkflowRuntime,
        *,
        priority: TaskPriority,
        backend: str | None,
        optimizer: object | None,
    ) -> AlgorithmResult:
        """Run the algorithm to the end and return what it found."""
        ...


async def run_hybrid(
    scheduler: WorkflowRuntime,
    algorithm: object,
    *,
    priority: TaskPriority = TaskPriority.NORMAL,
    backend: str | None = None,
    optimizer: object | None = None,
) -> AlgorithmResult:
    """Run a hybrid algorithm through ``scheduler``: the body of a hybrid task.

    The scheduler runs a ``Task.hybrid(...).with_algorithm(a)`` task as this coroutine with
    the task's priority, backend and optimizer. It can also be awaited directly.

    Raises:
        InvalidTaskError: If ``algorithm`` does not implement :class:`HybridAlgorithm`.
    """
    if not isinstance(algorithm, HybridAlgorithm):
        raise InvalidTaskError(
            "algorithm",
            f"{type(algorithm).__name__} is not a hybrid algorithm: it needs an async "
            "run(scheduler, *, priority, backend, optimizer) method",
        )
    return await algorithm.run(scheduler, priority=priority, backend=backend, optimizer=optimizer)
