"""A circuit breaker per backend: out of rotation after repeated failures, probed, restored.

Every change of state goes through one method, which checks the move against
:data:`BREAKER_MOVES` and raises :class:`InternalError` on an illegal one, as a task's moves
are checked against its own table::

    CLOSED ──trip (threshold failures in a row, or unavailable)──▶ OPEN
    OPEN ──cool-down passed──▶ HALF_OPEN ──good probe or success──▶ CLOSED
    OPEN ──good probe──▶ CLOSED        OPEN, HALF_OPEN ──failed probe or unavailable──▶ OPEN
"""

from __future__ import annotations

import enum

from .._errors import InternalError

__all__ = ["BREAKER_MOVES", "BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    """CLOSED: in rotation. OPEN: out of rotation until the cool-down passes. HALF_OPEN: the
    cool-down passed; one probe decides whether it closes or opens again."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_B = BreakerState

# Where each state may go. OPEN -> OPEN re-opens (a failed probe, or the backend reported
# unavailable again): the cool-down starts afresh.
BREAKER_MOVES: dict[BreakerState, frozenset[BreakerState]] = {
    _B.CLOSED: frozenset({_B.OPEN}),
    _B.OPEN: frozenset({_B.OPEN, _B.HALF_OPEN, _B.CLOSED}),
    _B.HALF_OPEN: frozenset({_B.OPEN, _B.CLOSED}),
}


class CircuitBreaker:
    """Counts consecutive failures of one backend and takes it out of rotation.

    Args:
        threshold: Consecutive failures that open the breaker.
        cooldown: Seconds it stays open before a probe is due.
    """

    __slots__ = ("threshold", "cooldown", "failures", "_state", "opened_at", "trips")

    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.failures = 0
        self._state = BreakerState.CLOSED
        self.opened_at = 0.0
        self.trips = 0

    def state(self, now: float) -> BreakerState:
        """The state at time ``now`` (OPEN turns HALF_OPEN once the cool-down has passed)."""
        if self._state is BreakerState.OPEN and now >= self.opened_at + self.cooldown:
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def allows(self, now: float) -> bool:
        """Whether new work may go to the backend (only while CLOSED)."""
        return self.state(now) is BreakerState.CLOSED

    def probe_due_at(self) -> float | None:
        """When a probe becomes due, if the breaker is open."""
        if self._state is BreakerState.CLOSED:
            return None
        return self.opened_at + self.cooldown

    def record_success(self) -> None:
        """A job succeeded: reset the failure count (and close a half-open breaker)."""
        self.failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED)

    def record_failure(self, now: float) -> bool:
        """A job failed. Returns True if this failure opened the breaker."""
        self.failures += 1
        if self._state is BreakerState.CLOSED and self.failures >= self.threshold:
            self._open(now)
            return True
        return False

    def probe_result(self, healthy: bool, now: float) -> BreakerState:
        """Record the outcome of a probe made while HALF_OPEN (or OPEN past its cool-down)."""
        if self.state(now) is BreakerState.CLOSED:
            return BreakerState.CLOSED
        if healthy:
            self._move(BreakerState.CLOSED)
            self.failures = 0
        else:
            self._open(now)
            self.trips -= 1  # re-opening after a failed probe is not a new trip
        return self._state

    def force_open(self, now: float) -> bool:
        """Take the backend out of rotation at once (it reported itself unavailable).

        Returns:
            True if this opened a closed breaker (a new trip), False if it was open already.
        """
        if self._state is BreakerState.CLOSED:
            self._open(now)
            return True
        self._move(BreakerState.OPEN)
        self.opened_at = now
        return False

    def _open(self, now: float) -> None:
        self._move(BreakerState.OPEN)
        self.opened_at = now
        self.trips += 1

    def _move(self, new: BreakerState) -> None:
        """The one place the state changes: a move not in :data:`BREAKER_MOVES` is a bug."""
        old = self._state
        if new not in BREAKER_MOVES[old]:
            raise InternalError(f"circuit breaker moved from {old.name} to {new.name}")
        self._state = new
