"""Clocks: where the scheduling core takes its time from.

The core never reads the system time itself. The runtime hands it a :class:`Clock`; tests and
simulations hand it a :class:`ManualClock`, which moves only when told, so that timing policy
(aging, deadlines, breaker cool-downs) is tested exactly rather than slept for.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


@runtime_checkable
class Clock(Protocol):
    """Something that tells the time in seconds, never going backwards."""

    def now(self) -> float:
        """Return the current time in seconds."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`, the same time base as asyncio's default loop."""

    __slots__ = ()

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to.

    Args:
        start: The time the clock starts at, in seconds.

    Example:
        >>> clock = ManualClock()
        >>> clock.advance(2.5)
        >>> clock.now()
        2.5
    """

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """Return the current virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward.

        Raises:
            ValueError: If ``seconds`` is negative: clocks never go backwards.
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds!r}))")
        self._now += seconds

    def set(self, when: float) -> None:
        """Jump the clock to ``when``.

        Raises:
            ValueError: If ``when`` is earlier than the current time.
        """
        if when < self._now:
            raise ValueError(f"a clock cannot go backwards ({when!r} < {self._now!r})")
        self._now = float(when)
