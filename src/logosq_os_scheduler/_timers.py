"""The runtime's timers, armed in the scheduler's clock time.

Every wait the runtime does for time to pass (a task's deadline, a partial batch's window, a
retry's back-off, a tripped breaker's probe, a job's ``job_timeout``, ``aclose(timeout=)``)
goes through :class:`Timers`, never through the event loop's own clock. With the default
:class:`~logosq_os_scheduler.MonotonicClock` a timer is the loop's; with a
:class:`~logosq_os_scheduler.ManualClock` it fires when the clock is moved past it (on the
scheduler's loop, at its next turn), so a test moves time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from ._clock import Clock, ManualClock

__all__ = ["ClockTimer", "Timer", "Timers"]

T = TypeVar("T")


class Timer(Protocol):
    """An armed timer."""

    def cancel(self) -> None:
        """Disarm it; nothing happens if it has fired."""


class ClockTimer:
    """A ManualClock timer whose callback runs on the scheduler's loop: the clock may be
    moved from any thread, and a callback must never run inside the mover's call."""

    __slots__ = ("timer", "cancelled")

    def __init__(self) -> None:
        self.timer: Timer | None = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        if self.timer is not None:
            self.timer.cancel()


class Timers:
    """Arms callbacks at times of ``clock`` on ``loop``.

    Args:
        clock: The scheduler's clock.
        loop: The loop the callbacks run on.
    """

    __slots__ = ("_clock", "_loop", "_manual", "_loop_thread")

    def __init__(self, clock: Clock, loop: asyncio.AbstractEventLoop) -> None:
        self._clock = clock
        self._loop = loop
        self._manual = clock if isinstance(clock, ManualClock) else None
        self._loop_thread = threading.get_ident()

    def call_at(self, when: float, fn: Callable[..., object], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the loop once the clock reads ``when`` or later."""
        manual = self._manual
        if manual is None:
            delay = when - self._clock.now()
            return self._loop.call_later(delay if delay > 0 else 0.0, fn, *args)
        handle = ClockTimer()
        loop = self._loop

        def run() -> None:
            if not handle.cancelled:
                fn(*args)

        def due() -> None:
            if handle.cancelled or loop.is_closed():
                return
            if threading.get_ident() == self._loop_thread:
                loop.call_soon(run)
            else:
                loop.call_soon_threadsafe(run)

        handle.timer = manual.call_at(when, due)
        return handle

    def call_later(self, delay: float, fn: Callable[..., object], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the loop ``delay`` seconds of the clock from now."""
        return self.call_at(self._clock.now() + delay, fn, *args)

    async def wait_for(self, awaitable: Awaitable[T], timeout: float) -> T:
        """Await ``awaitable`` for at most ``timeout`` seconds of the clock.

        Raises:
            TimeoutError: If the time ran out first (the awaitable is cancelled).
        """
        inner: asyncio.Future[T] = asyncio.ensure_future(awaitable, loop=self._loop)
        expired = False

        def expire() -> None:
            nonlocal expired
            if not inner.done():
                expired = True
                inner.cancel()

        timer = self.call_later(timeout, expire)
        try:
            return await inner
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if expired and (current is None or not current.cancelling()):
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()
