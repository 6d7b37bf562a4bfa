"""Clocks: where the scheduling core takes its time from, and when the runtime's timers fire.

The core never reads the system time itself. The runtime hands it a :class:`Clock` and arms
every timer it needs (deadlines, batch windows, retry back-off, breaker probes, job time-outs)
in that clock's time, through :class:`~logosq_os_scheduler._timers.Timers`:

* :class:`MonotonicClock` (the default): real time; timers are the event loop's.
* :class:`ManualClock`: moves only when told (:meth:`ManualClock.advance`), and the timers
  armed on it fire then, in time order, so timing policy (aging, deadlines, breaker
  cool-downs, back-off) is tested exactly rather than slept for.
* :class:`LoopClock`: the event loop's own time. On a virtual-time loop (the test suite runs
  such tests under ``looptime``, which jumps the loop's time to the next timer whenever the
  loop would only wait, as trio's ``MockClock(autojump_threshold=0)`` does) the whole runtime
  runs in virtual time: a test of a 30-second time-out takes microseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LoopClock", "ManualClock", "ManualTimer", "MonotonicClock"]


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


class LoopClock:
    """The running event loop's time (``loop.time()``), read from any thread.

    Args:
        loop: The loop to read; by default the loop running in the calling thread, or
            :func:`time.monotonic` where none runs (the default loop's own time base).
    """

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read ``loop``'s time from now on (the scheduler binds it to the loop it runs on)."""
        self._loop = loop

    def now(self) -> float:
        """Return the loop's time."""
        loop = self._loop or asyncio._get_running_loop()
        return loop.time() if loop is not None else time.monotonic()


class ManualTimer:
    """A callback armed on a :class:`ManualClock` (see :meth:`ManualClock.call_at`)."""

    __slots__ = ("when", "_callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Disarm it: it will not fire (nothing happens if it has fired already)."""
        self.cancelled = True

    def _fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._callback()


class ManualClock:
    """A clock that moves only when told to, firing the timers armed on it as it passes them.

    Args:
        start: The time the clock starts at, in seconds.

    Example:
        >>> clock = ManualClock()
        >>> fired = []
        >>> timer = clock.call_at(2.0, lambda: fired.append(clock.now()))
        >>> clock.advance(2.5)
        >>> fired, clock.now()
        ([2.0], 2.5)
    """

    __slots__ = ("_now", "_timers", "_seq")

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        # Invariant: a heap of (when, seq, timer) for every timer armed and not yet fired;
        # cancelled ones stay until they surface.
        self._timers: list[tuple[float, int, ManualTimer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """Return the current virtual time."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> ManualTimer:
        """Arm ``callback()`` to run when the clock reaches ``when`` (at once on the next
        move if ``when`` has passed). Timers fire in time order, ties in the order armed."""
        timer = ManualTimer(float(when), callback)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def next_timer(self) -> float | None:
        """When the earliest armed timer is due, or None if none is armed."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every timer it passes.

        Raises:
            ValueError: If ``seconds`` is negative: clocks never go backwards.
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance({seconds!r}))")
        self._move_to(self._now + seconds)

    def set(self, when: float) -> None:
        """Jump the clock to ``when``, firing every timer it passes.

        Raises:
            ValueError: If ``when`` is earlier than the current time.
        """
        if when < self._now:
            raise ValueError(f"a clock cannot go backwards ({when!r} < {self._now!r})")
        self._move_to(float(when))

    def advance_to_next_timer(self) -> float | None:
        """Jump to the earliest armed timer and fire it (and any due with it).

        Returns:
            The new time, or None (the clock stays) if no timer is armed.
        """
        when = self.next_timer()
        if when is None:
            return None
        self._move_to(max(when, self._now))
        return self._now

    def _move_to(self, target: float) -> None:
        # Each timer fires with the clock showing its own time; a timer armed by a callback
        # for a time the move passes fires within the same move.
        timers = self._timers
        while timers and timers[0][0] <= target:
            when, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            if when > self._now:
                self._now = when
            timer._fire()
        self._now = target
