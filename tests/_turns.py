"""A MockBackend's job latency under a test's control.

Pass :meth:`Turns.sleep` as a MockBackend's ``sleep``: each job that begins executing waits
there until the test lets the oldest executing job end (:meth:`Turns.finish`), which moves a
:class:`~logosq_os_scheduler.ManualClock` one second on. Which job executes, waits at the
backend or is withdrawn is then decided by the test, never by timing.
"""

from __future__ import annotations

import asyncio

from logosq_os_scheduler import ManualClock


class Turns:
    """Job latency under the test's control (see the module docstring)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.executing: list[asyncio.Future[None]] = []
        self.begun = 0
        self._changed = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        self.executing.append(future)
        self.begun += 1
        self._changed.set()
        await future

    async def wait_begun(self, n: int) -> None:
        """Wait until ``n`` jobs in all have begun executing."""
        async with asyncio.timeout(10):  # a bound, not a pause
            while self.begun < n:
                self._changed.clear()
                await self._changed.wait()

    def finish(self) -> None:
        """One second later, the oldest executing job ends."""
        self.clock.advance(1.0)
        self.executing.pop(0).set_result(None)
