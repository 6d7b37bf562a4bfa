"""What the core keeps about each backend: its pool, capabilities, breaker, cost and jobs.

The runtime's registry entry extends :class:`BackendState` with what only the runtime holds
(the backend object, its timers, its asyncio jobs); the policy in :mod:`._policy` reads and
changes only the fields here, so the virtual-time simulator can drive the same policy with
the same state and no backend object at all.
"""

from __future__ import annotations

from typing import Any

from ._breaker import CircuitBreaker
from ._capabilities import BackendCapabilities
from ._core import Pool

__all__ = ["COST_MEMORY", "BackendState", "Flight"]

# Weight of the latest job in a backend's seconds-per-circuit average (an EWMA that forgets
# old jobs at 0.7 a job).
COST_MEMORY = 0.3


class Flight:
    """A job handed to a backend that can withdraw jobs, from its start to its end.

    Attributes:
        batch: Its tasks, in the job's order.
        jobs: What the runtime handed the backend (the backend knows the job by it; opaque
            to the core).
        launched: When it was sent.
        started: Set once the backend refused to withdraw it: it has started, so it is never
            asked again.
        withdrawn: Set when it was withdrawn unstarted.
    """

    __slots__ = ("batch", "jobs", "launched", "started", "withdrawn")

    def __init__(self, batch: list[Any], jobs: Any, launched: float) -> None:
        self.batch = batch
        self.jobs = jobs
        self.launched = launched
        self.started = False
        self.withdrawn = False


class BackendState:
    """One registered backend as the policy sees it.

    Args:
        name: The name it is registered under.
        caps: Its capabilities now.
        pool: Its slots and ready queue in the core.
        breaker: Its circuit breaker.
    """

    __slots__ = (
        "name",
        "caps",
        "pool",
        "breaker",
        "per_circuit",
        "removed",
        "completed",
        "failed_attempts",
        "withdrawn_jobs",
        "flights",
    )

    def __init__(
        self, name: str, caps: BackendCapabilities, pool: Pool, breaker: CircuitBreaker
    ) -> None:
        self.name = name
        self.caps = caps
        self.pool = pool
        self.breaker = breaker
        # Seconds per circuit of its recent jobs (exponentially weighted), 0 before any.
        self.per_circuit = 0.0
        # Set when it is being unregistered: it takes no new work.
        self.removed = False
        self.completed = 0
        self.failed_attempts = 0
        self.withdrawn_jobs = 0
        # Invariant: flights holds, oldest first, every job of this backend under way, if
        # the backend supports withdrawal (empty otherwise); a job leaves it when it ends or
        # when it is withdrawn.
        self.flights: list[Flight] = []

    def in_rotation(self, now: float) -> bool:
        """Whether new work may go to it: registered and its breaker closed."""
        return not self.removed and self.breaker.allows(now)

    def record_job(self, circuits: int, seconds: float) -> None:
        """A job of ``circuits`` circuits took ``seconds``: update the per-circuit average."""
        per = seconds / max(1, circuits)
        if self.per_circuit == 0.0:
            self.per_circuit = per
        else:
            self.per_circuit = (1 - COST_MEMORY) * self.per_circuit + COST_MEMORY * per

    def job_seconds(self, circuits: int, shots: int) -> float:
        """Expected seconds of a job here: the declared cost, or the observed one if larger
        (a backend that simulates noise on many qubits can be far slower than it declares)."""
        declared = self.caps.cost.seconds(circuits, shots)
        observed = self.per_circuit * circuits
        return declared if declared >= observed else observed

    def __repr__(self) -> str:
        return f"<BackendState {self.name!r} {self.pool!r}>"
